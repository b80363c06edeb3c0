//! `fanout`: one conversation of 2,000 members (one joined connection each) and one sender at a
//! fixed rate, so deliveries/s = rate × members.
//!
//! The sender is the owner's extra connection, not joined: it only sends, and every delivery
//! counted is to a member's receiving connection.

use crate::cli::FanoutArgs;
use crate::load::ConnPlan;
use crate::report::Report;

use super::{Env, TrafficSpec, run_traffic};

pub async fn run(env: &Env, args: FanoutArgs) -> anyhow::Result<Report> {
    let members = args.members.max(1);
    let tokens = env.tokens(members)?;
    let group: Vec<usize> = (0..members).collect();
    let conversations = env.create_groups("fanout", &[group], &tokens).await?;
    let mut plans: Vec<ConnPlan> = (0..members)
        .map(|user| ConnPlan {
            user,
            conversation: 0,
            join: true,
            sends: false,
            node: 0,
        })
        .collect();
    plans.extend((0..args.senders.max(1)).map(|_| ConnPlan {
        user: 0,
        conversation: 0,
        join: false,
        sends: true,
        node: 0,
    }));
    let spec = TrafficSpec {
        name: "fanout",
        params: serde_json::to_value(&args)?,
        tokens,
        conversations,
        plans,
        rate: args.rate,
        traffic: args.traffic,
        random_sender: false,
        side: None,
    };
    run_traffic(env, spec).await
}
