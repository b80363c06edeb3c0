//! Where a message's time goes inside the server, beside the client's end-to-end figures: the
//! server's own latency histograms (`/metrics`) read at the start and the end of the measured
//! window, their difference turned into p50/p99 per stage.
//!
//! - `arrival → ack`: from the `send` frame's arrival to its ack (parse, the writer's queue,
//!   the commit): `confab_ack_latency_seconds`.
//! - `store commit`: the commit alone (to durable), `confab_store_commit_duration_seconds`.
//! - `commit → socket`: from a durable event's commit to its write to a receiver's socket (the
//!   hub, the session's queue and wake-up, the write): `confab_fanout_latency_seconds`.
//!
//! What the client measures beyond these is the network and the client's own scheduling. The
//! quantiles are interpolated within Prometheus buckets (as `histogram_quantile` does), so they
//! are as fine as the server's buckets: 0.1 ms at the bottom.
//!
//! A server without these metrics (a peer such as µWebSockets.js) has no stages.

use serde::Serialize;

/// The stages read, by metric.
const STAGES: [(&str, &str); 3] = [
    ("arrival → ack", "confab_ack_latency_seconds"),
    ("store commit", "confab_store_commit_duration_seconds"),
    ("commit → socket", "confab_fanout_latency_seconds"),
];

/// One stage's latency over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub stage: &'static str,
    pub metric: &'static str,
    /// Observations in the window.
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A histogram as scraped: cumulative counts by upper bound (`le`), summed over label sets,
/// in increasing bound order, `+Inf` last.
#[derive(Debug, Clone, PartialEq)]
struct Buckets(Vec<(f64, f64)>);

/// The buckets of `metric` in the Prometheus text `text`, if it has any.
fn buckets(text: &str, metric: &str) -> Option<Buckets> {
    let prefix = format!("{metric}_bucket{{");
    let mut by_bound: Vec<(f64, f64)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Some(bound) = labels.split(',').find_map(|label| {
            let quoted = label.trim().strip_prefix("le=\"")?.strip_suffix('"')?;
            match quoted {
                "+Inf" => Some(f64::INFINITY),
                _ => quoted.parse::<f64>().ok(),
            }
        }) else {
            continue;
        };
        let Ok(count) = value.trim().parse::<f64>() else {
            continue;
        };
        match by_bound.iter_mut().find(|(b, _)| *b == bound) {
            Some((_, total)) => *total += count,
            None => by_bound.push((bound, count)),
        }
    }
    if by_bound.is_empty() {
        return None;
    }
    by_bound.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(Buckets(by_bound))
}

impl Buckets {
    /// What was observed between `self` (earlier) and `later`.
    fn since(&self, later: &Buckets) -> Buckets {
        Buckets(
            later
                .0
                .iter()
                .map(|&(bound, count)| {
                    let before = self
                        .0
                        .iter()
                        .find(|(b, _)| *b == bound)
                        .map_or(0.0, |(_, c)| *c);
                    (bound, (count - before).max(0.0))
                })
                .collect(),
        )
    }

    fn count(&self) -> f64 {
        self.0.last().map_or(0.0, |(_, c)| *c)
    }

    /// The `q` quantile in seconds, linear within its bucket (the lowest bucket from 0); one in
    /// the `+Inf` bucket is the highest finite bound.
    fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(bound, count) in &self.0 {
            if count >= rank {
                if bound.is_infinite() {
                    return Some(lower.0);
                }
                let within = count - lower.1;
                let share = if within > 0.0 {
                    (rank - lower.1) / within
                } else {
                    1.0
                };
                return Some(lower.0 + (bound - lower.0) * share);
            }
            lower = (bound, count);
        }
        Some(lower.0)
    }
}

/// The stages observed between two scrapes of `/metrics` (none without the metrics).
pub fn between(before: &str, after: &str) -> Vec<Stage> {
    STAGES
        .iter()
        .filter_map(|&(stage, metric)| {
            let window = buckets(before, metric)
                .unwrap_or(Buckets(Vec::new()))
                .since(&buckets(after, metric)?);
            Some(Stage {
                stage,
                metric,
                count: window.count() as u64,
                p50_ms: window.quantile(0.5)? * 1e3,
                p99_ms: window.quantile(0.99)? * 1e3,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# TYPE confab_ack_latency_seconds histogram
confab_ack_latency_seconds_bucket{le=\"0.0001\"} 0
confab_ack_latency_seconds_bucket{le=\"0.001\"} 10
confab_ack_latency_seconds_bucket{le=\"0.01\"} 10
confab_ack_latency_seconds_bucket{le=\"+Inf\"} 10
confab_ack_latency_seconds_sum 0.005
confab_ack_latency_seconds_count 10
confab_store_commit_duration_seconds_bucket{backend=\"sqlite\",le=\"0.001\"} 4
confab_store_commit_duration_seconds_bucket{backend=\"sqlite\",le=\"+Inf\"} 4
";

    const AFTER: &str = "\
confab_ack_latency_seconds_bucket{le=\"0.0001\"} 0
confab_ack_latency_seconds_bucket{le=\"0.001\"} 110
confab_ack_latency_seconds_bucket{le=\"0.01\"} 210
confab_ack_latency_seconds_bucket{le=\"+Inf\"} 210
confab_store_commit_duration_seconds_bucket{backend=\"sqlite\",le=\"0.001\"} 8
confab_store_commit_duration_seconds_bucket{backend=\"sqlite\",le=\"+Inf\"} 9
confab_store_commit_duration_seconds_bucket{backend=\"other\",le=\"0.001\"} 1
confab_store_commit_duration_seconds_bucket{backend=\"other\",le=\"+Inf\"} 1
";

    #[test]
    fn the_window_is_the_difference_and_quantiles_interpolate() {
        let stages = between(BEFORE, AFTER);
        assert_eq!(stages.len(), 2, "no fan-out histogram in either scrape");
        let ack = &stages[0];
        // 200 in the window: 100 under 1 ms, 100 between 1 and 10 ms.
        assert_eq!(ack.count, 200);
        assert!((ack.p50_ms - 1.0).abs() < 1e-9, "{ack:?}");
        // Rank 198 of 200: 98 % of the way from 1 to 10 ms.
        assert!((ack.p99_ms - (1.0 + 9.0 * 0.98)).abs() < 1e-9, "{ack:?}");
        let commit = &stages[1];
        // Two label sets summed: 5 new, 1 of them past the last finite bound.
        assert_eq!(commit.count, 6);
        assert!(
            (commit.p99_ms - 1.0).abs() < 1e-9,
            "+Inf reads as the last bound"
        );
    }

    #[test]
    fn no_metrics_no_stages() {
        assert!(between("", "").is_empty());
        assert!(
            between(
                "garbage\n{}",
                "confab_ack_latency_seconds_bucket{le=\"x\"} y"
            )
            .is_empty()
        );
        // Nothing observed in the window: no quantile to give.
        assert!(between(AFTER, AFTER).is_empty());
    }
}
