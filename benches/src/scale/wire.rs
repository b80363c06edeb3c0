//! What the coordinator and its workers say to each other: one JSON object per line, the
//! [`WorkerPlan`] and then [`Command`]s down the worker's stdin, one [`Reply`] per command up its
//! stdout. Histograms travel as their recorded buckets ([`Buckets`]) and are merged on arrival.

use std::net::Ipv4Addr;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::stats::{Percentiles, new_histogram};

/// Everything a worker needs to open its share of the connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerPlan {
    /// The worker's number (0-based), for its log lines.
    pub worker: usize,
    /// The HS256 secret the nodes verify tokens with, and the tenant to mint them in.
    pub secret: String,
    pub tenant: String,
    /// Global connection numbers `first..first + count` are this worker's; connection `i` is
    /// user `u<i>`, a member of conversation `i % conversations.len()`, on node
    /// [`crate::scenario::chat::node_of`].
    pub first: usize,
    pub count: usize,
    /// Conversation ids by index.
    pub conversations: Vec<String>,
    /// The nodes' base URLs by index.
    pub nodes: Vec<String>,
    /// Loopback addresses this worker binds its sockets to, in turn.
    pub sources: Vec<Ipv4Addr>,
    /// Connections being opened at once (first connect and reconnect storm alike).
    pub concurrency: usize,
    /// Bytes of each message body.
    pub body_bytes: usize,
}

/// A phase the coordinator asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Open every connection and join its conversation; answered by [`Reply::Connected`].
    Connect,
    /// Send `rate` messages per second for `warmup_secs + secs` (latency counts after the
    /// warm-up), then wait up to `drain_secs` for the acks; answered by [`Reply::Chat`].
    Chat {
        rate: f64,
        warmup_secs: f64,
        secs: f64,
        drain_secs: f64,
    },
    /// Drop every connection at once, reconnect each after a random pause of up to
    /// `jitter_ms` and rejoin with `since`, while sending at `rate`; answered by
    /// [`Reply::Storm`] once all have resumed (or `timeout_secs` passed) and the acks are in.
    Storm {
        jitter_ms: u64,
        rate: f64,
        timeout_secs: f64,
        drain_secs: f64,
    },
    /// Report the highest seq seen per conversation (acked or received); [`Reply::Heads`].
    Heads,
    /// Wait up to `wait_secs` until every connection has seen its conversation's head
    /// (`heads`, by conversation index), then count what is missing; [`Reply::Settled`].
    Settle { heads: Vec<u64>, wait_secs: f64 },
    /// Close every connection and exit.
    Exit,
}

/// A worker's answer to one [`Command`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Connected(ConnectOutcome),
    Chat(ChatOutcome),
    Storm(StormOutcome),
    Heads {
        heads: Vec<u64>,
    },
    Settled(SettleOutcome),
    /// The command failed; the text says why.
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectOutcome {
    pub ok: usize,
    pub failed: usize,
    /// From the command to the last connection joined.
    pub secs: f64,
    /// TCP connect + upgrade + `welcome` + `joined`, per connection.
    pub open: Buckets,
    pub error_samples: Vec<String>,
}

/// Message counts of a sending phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sent {
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
    /// Messages the pacer could not queue (the sender's queue was full).
    pub skipped: u64,
    pub error_samples: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatOutcome {
    pub sent: Sent,
    /// Messages received in the phase.
    pub delivered: u64,
    /// Delivery latency (send to receipt) of messages sent after the warm-up.
    pub latency: Buckets,
    /// Send to durable ack, same messages.
    pub ack_latency: Buckets,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StormOutcome {
    pub resumed: usize,
    /// Connections that had not resumed when the storm timed out.
    pub not_resumed: usize,
    /// Reconnect attempts that failed (each retried after a pause).
    pub failed_attempts: u64,
    /// From the command to the last connection rejoined.
    pub secs_to_all_resumed: f64,
    /// Disconnect to rejoined, per connection (the jitter included).
    pub resume: Buckets,
    /// `joined.recovered: false` (more missed than the replay cap).
    pub not_recovered: u64,
    pub sent: Sent,
    pub error_samples: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SettleOutcome {
    /// Connections whose last seq is short of their conversation's head after the wait.
    pub behind: usize,
    /// Events missing: short of the head, plus gaps skipped within a stream.
    pub lost: u64,
    /// The part of `lost` that was skipped within a stream (a seq past the next one).
    pub gaps: u64,
    /// Message frames that came before `joined` (skipped while opening).
    pub before_joined: u64,
    /// Events received twice (a seq not above the last one seen).
    pub duplicates: u64,
    /// Connections that ended without being asked to (close or reset), over the whole run.
    pub unexpected_disconnects: u64,
}

/// A latency histogram's recorded buckets in microseconds: `(value, count)` pairs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Buckets(pub Vec<(u64, u64)>);

impl Buckets {
    pub fn of(histogram: &Histogram<u64>) -> Buckets {
        Buckets(
            histogram
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    /// Adds these buckets to `histogram`.
    pub fn add_to(&self, histogram: &mut Histogram<u64>) {
        for &(value, count) in &self.0 {
            histogram.saturating_record_n(value.max(1), count);
        }
    }
}

/// Several workers' buckets as one histogram's percentiles.
pub fn merged<'a>(buckets: impl IntoIterator<Item = &'a Buckets>) -> Percentiles {
    let mut histogram = new_histogram();
    for b in buckets {
        b.add_to(&mut histogram);
    }
    Percentiles::of(&histogram)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::record;
    use std::time::Duration;

    #[test]
    fn buckets_merge_to_the_same_percentiles() {
        let (mut a, mut b, mut both) = (new_histogram(), new_histogram(), new_histogram());
        for ms in 1..=100u64 {
            let target = if ms % 2 == 0 { &mut a } else { &mut b };
            record(target, Duration::from_millis(ms));
            record(&mut both, Duration::from_millis(ms));
        }
        let sent: Vec<Buckets> = [&a, &b]
            .iter()
            .map(|h| serde_json::to_string(&Buckets::of(h)).expect("encode"))
            .map(|line| serde_json::from_str(&line).expect("decode"))
            .collect();
        assert_eq!(merged(&sent), Percentiles::of(&both));
    }

    #[test]
    fn commands_are_tagged_lines() {
        let line = serde_json::to_string(&Command::Heads).expect("encode");
        assert_eq!(line, r#"{"cmd":"heads"}"#);
        let back: Command = serde_json::from_str(r#"{"cmd":"exit"}"#).expect("decode");
        assert!(matches!(back, Command::Exit));
    }
}
