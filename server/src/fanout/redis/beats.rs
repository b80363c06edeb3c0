//! This node's beats: published to each shard from a thread of its own, on a connection of
//! its own, every [`BEAT`](super::BEAT), while the node's runtime shows life.
//!
//! Beats were a task on the node's runtime, published through the shard's publisher. In a
//! reconnect storm of 200,000 clients over 12 nodes on one 2-core host, each node's runtime
//! had thousands of sessions to close and reopen ahead of the beat's tick, and the publisher a
//! pipeline in flight ahead of the beat: live nodes went 6 s without a beat, the others took
//! them for dead and marked their users offline (about 300 times per storm,
//! benches/RESULTS.md). A thread that sleeps between beats is woken by the kernel on time, and
//! its connection waits for nothing of the node's.
//!
//! A beat says the node is alive, so the thread beats only while the runtime has shown life
//! (the runtime's heartbeat task stamps [`RedisFanout::runtime_pulse`] every beat) within
//! [`STALL_LIMIT`]: a node whose runtime is wedged stops beating then, and the others expire
//! it as a dead one.
//!
//! One beat at a time: the next is sent once Redis has answered the last (or after
//! [`STALL_LIMIT`] without an answer, on a new connection). When Redis itself stalls (it does
//! for seconds at the start of a reconnect storm of 200,000, with every node publishing its
//! users' presence), each node's beat waits in Redis with the send time of the stall's start,
//! and they all run when it resumes. Beats that timed out and were sent again instead piled up
//! in Redis, each node's in its own connection, and ran in any order after the stall: a node
//! that heard back a beat of its own sent late in the stall before its peers' beats of the same
//! moment took them all for dead (a node declaring all 11 peers silent at once, on most nodes
//! at once). A beat that fails (the shard is down) is dropped, and the connection made again
//! for the next one.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::RedisFanout;
use super::liveness::STALL_LIMIT;
use super::wire::{Header, MessageType, NODES_CHANNEL, message};

/// Starts shard `index`'s beat thread, beating every `every` until the fan-out stops.
pub(super) fn spawn(
    fanout: Arc<RedisFanout>,
    index: usize,
    client: redis::Client,
    every: Duration,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("confab-beat-{index}"))
        .spawn(move || run(&fanout, index, &client, every))
        .map(drop)
}

fn run(fanout: &RedisFanout, index: usize, client: &redis::Client, every: Duration) {
    let shard = &fanout.shards[index];
    let count = u32::try_from(fanout.shards.len()).ok();
    let mut conn: Option<redis::Connection> = None;
    let mut stalled = false;
    let mut next = std::time::Instant::now();
    while !fanout.stop.is_cancelled() {
        let stamp = fanout.liveness().beat_stamp(Instant::now());
        if fanout.runtime_alive(stamp) {
            if std::mem::take(&mut stalled) {
                tracing::info!(shard = index, "runtime alive again; beating");
            }
            let beat = Header {
                seq: stamp,
                shard: u32::try_from(index).ok(),
                shards: count,
                ..Header::new(&fanout.node, MessageType::Beat)
            };
            match publish(client, &mut conn, &message(&beat, ""), STALL_LIMIT) {
                Ok(()) => {
                    shard.metrics.published.increment(1);
                    fanout.liveness().beat_published(Instant::now());
                }
                Err(err) => {
                    tracing::debug!(shard = index, error = %err, "redis beat failed");
                    conn = None;
                }
            }
        } else if !std::mem::replace(&mut stalled, true) {
            tracing::warn!(
                shard = index,
                "runtime silent for {STALL_LIMIT:?}: not beating, so that the other nodes \
                 expire this one"
            );
        }
        next += every;
        let now = std::time::Instant::now();
        if next < now {
            next = now;
        }
        std::thread::sleep(next - now);
    }
}

/// Publishes one beat, connecting first if need be; `timeout` bounds the connect, the write
/// and the wait for the answer.
fn publish(
    client: &redis::Client,
    conn: &mut Option<redis::Connection>,
    beat: &[u8],
    timeout: Duration,
) -> redis::RedisResult<()> {
    let conn = match conn {
        Some(conn) => conn,
        None => {
            let made = client.get_connection_with_timeout(timeout)?;
            made.set_read_timeout(Some(timeout))?;
            made.set_write_timeout(Some(timeout))?;
            conn.insert(made)
        }
    };
    redis::cmd("PUBLISH")
        .arg(NODES_CHANNEL)
        .arg(beat)
        .query::<()>(conn)
}
