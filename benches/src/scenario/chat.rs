//! `chat`: many small conversations (5,000 connections in 1,000 conversations of 5 by default),
//! messages from random members at a fixed total rate.

use crate::cli::ChatArgs;
use crate::load::ConnPlan;
use crate::report::Report;

use super::{Env, TrafficSpec, run_traffic};

/// Users `0..connections`, user `i` in conversation `i % conversations`, one connection each.
pub fn groups(connections: usize, conversations: usize) -> Vec<Vec<usize>> {
    let conversations = conversations.clamp(1, connections.max(1));
    (0..conversations)
        .map(|c| (c..connections).step_by(conversations).collect())
        .collect()
}

/// The node of user `user` when each conversation's members alternate over `nodes` nodes
/// (`conversations` as in [`groups`]). Each conversation starts one node further than the
/// previous, so conversations of odd size still spread the users evenly.
pub fn node_of(user: usize, conversations: usize, nodes: u8) -> u8 {
    let conversations = conversations.max(1);
    let position = user / conversations;
    let conversation = user % conversations;
    u8::try_from((position + conversation) % usize::from(nodes.max(1))).unwrap_or(0)
}

/// Sets up the chat load (conversations, members, one sending connection per member), with each
/// conversation's members alternating over `nodes` nodes.
pub async fn spec(
    env: &Env,
    name: &'static str,
    args: &ChatArgs,
    params: serde_json::Value,
    nodes: u8,
) -> anyhow::Result<TrafficSpec> {
    let groups = groups(args.connections, args.conversations);
    let tokens = env.tokens(args.connections)?;
    let conversations = env.create_groups(name, &groups, &tokens).await?;
    let plans = (0..args.connections)
        .map(|i| ConnPlan {
            user: i,
            conversation: i % groups.len(),
            join: true,
            sends: true,
            node: node_of(i, groups.len(), nodes),
        })
        .collect();
    Ok(TrafficSpec {
        name,
        params,
        tokens,
        conversations,
        plans,
        rate: args.rate,
        traffic: args.traffic.clone(),
        random_sender: true,
        side: None,
    })
}

pub async fn run(env: &Env, args: ChatArgs) -> anyhow::Result<Report> {
    let params = serde_json::to_value(&args)?;
    let spec = spec(env, "chat", &args, params, 1).await?;
    run_traffic(env, spec).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_spread_users_evenly() {
        let groups = super::groups(10, 3);
        assert_eq!(groups, vec![vec![0, 3, 6, 9], vec![1, 4, 7], vec![2, 5, 8]]);
        assert_eq!(super::groups(2, 5).len(), 2);
    }

    #[test]
    fn members_alternate_between_nodes() {
        let groups = super::groups(10, 2);
        let nodes: Vec<Vec<u8>> = groups
            .iter()
            .map(|g| g.iter().map(|&u| super::node_of(u, 2, 2)).collect())
            .collect();
        assert_eq!(nodes, vec![vec![0, 1, 0, 1, 0], vec![1, 0, 1, 0, 1]]);
        assert!((0..10).all(|u| super::node_of(u, 2, 1) == 0));
    }
}
