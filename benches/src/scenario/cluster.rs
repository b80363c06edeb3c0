//! `cluster`: the `chat` load over two nodes joined by Redis. Each conversation's members
//! alternate between the nodes, so every message reaches some receivers on its sender's node
//! (delivered locally) and some on the other (through Redis); the report splits delivery latency
//! by path and gives each node's RSS and CPU.

use crate::cli::ClusterArgs;
use crate::report::Report;

use super::{Env, chat, run_traffic};

/// Nodes the load is spread over: `--url` and `--url2`.
const NODES: u8 = 2;

pub async fn run(env: &Env, args: ClusterArgs) -> anyhow::Result<Report> {
    let params = serde_json::to_value(&args)?;
    let spec = chat::spec(env, "cluster", &args.chat, params, NODES).await?;
    run_traffic(env, spec).await
}
