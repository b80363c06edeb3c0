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

/// Sets up the chat load (conversations, members, one sending connection per member).
pub async fn spec(
    env: &Env,
    name: &'static str,
    args: &ChatArgs,
    params: serde_json::Value,
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
    let spec = spec(env, "chat", &args, params).await?;
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
}
