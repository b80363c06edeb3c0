//! What a session's socket carries, counted on the hottest path of the server: WebSocket frames
//! and their payload bytes in and out, and the commit-to-delivery latency of durable events.
//!
//! Nothing here allocates or formats a label per frame. The counters are `metrics` handles
//! obtained once (an atomic add each), and a session adds its queued writes once per batch. The
//! latency is recorded for every delivery, so it is a fixed-bucket histogram of relaxed atomics
//! rendered at scrape: the exporter's own histograms keep every sample until the next scrape,
//! which at a fan-out's rate of deliveries is memory without bound when nobody scrapes.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, counter};

use super::{FANOUT_LATENCY, LATENCY_BUCKETS, WS_BYTES_TOTAL, WS_FRAMES_TOTAL};

/// The counters and the histogram of one server's sessions (in [`crate::state::Services`]).
#[derive(Debug)]
pub struct WireStats {
    frames_in: Counter,
    frames_out: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    fanout_latency: AtomicHistogram,
}

impl Default for WireStats {
    fn default() -> Self {
        WireStats::new()
    }
}

impl WireStats {
    /// Handles on the installed recorder (no-ops without one).
    pub fn new() -> WireStats {
        WireStats {
            frames_in: counter!(WS_FRAMES_TOTAL, "direction" => "in"),
            frames_out: counter!(WS_FRAMES_TOTAL, "direction" => "out"),
            bytes_in: counter!(WS_BYTES_TOTAL, "direction" => "in"),
            bytes_out: counter!(WS_BYTES_TOTAL, "direction" => "out"),
            fanout_latency: AtomicHistogram::default(),
        }
    }

    /// A data frame of `bytes` payload bytes read from a client.
    pub fn received(&self, bytes: usize) {
        self.frames_in.increment(1);
        self.bytes_in.increment(bytes as u64);
    }

    /// `frames` data frames of `bytes` payload bytes in all written to a client.
    pub fn sent(&self, frames: u64, bytes: u64) {
        if frames > 0 {
            self.frames_out.increment(frames);
            self.bytes_out.increment(bytes);
        }
    }

    /// A durable event committed `elapsed` ago is being written to a subscriber.
    pub fn delivered_after(&self, elapsed: Duration) {
        self.fanout_latency.record(elapsed);
    }

    /// Appends the latency histogram in the Prometheus text format (with its `# HELP`).
    pub fn render(&self, out: &mut String) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        self.fanout_latency.render(FANOUT_LATENCY, out);
    }
}

/// A Prometheus histogram over [`LATENCY_BUCKETS`]: a count per bucket (not cumulative, so a
/// record is one add there and one to the sum) and the sum in nanoseconds.
#[derive(Debug, Default)]
struct AtomicHistogram {
    /// One per bound of [`LATENCY_BUCKETS`], then the `+Inf` bucket.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    fn record(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let seconds = elapsed.as_secs_f64();
        let index = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn render(&self, name: &str, out: &mut String) {
        let help = super::ALL
            .iter()
            .find(|metric| metric.name == name)
            .map_or("", |metric| metric.help);
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        // Each bucket read once, so the cumulative counts never decrease within a scrape.
        let mut cumulative = 0u64;
        for (index, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            match LATENCY_BUCKETS.get(index) {
                Some(bound) => writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}"),
                None => writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}"),
            }
            .unwrap_or(());
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_renders_cumulative_buckets() {
        let histogram = AtomicHistogram::default();
        histogram.record(Duration::from_micros(100));
        histogram.record(Duration::from_millis(3));
        histogram.record(Duration::from_secs(60));
        let mut text = String::new();
        histogram.render("h_seconds", &mut text);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.contains(&"h_seconds_bucket{le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(
            lines.contains(&"h_seconds_bucket{le=\"0.005\"} 2"),
            "{text}"
        );
        assert!(lines.contains(&"h_seconds_bucket{le=\"5\"} 2"), "{text}");
        assert!(lines.contains(&"h_seconds_bucket{le=\"+Inf\"} 3"), "{text}");
        assert!(lines.contains(&"h_seconds_count 3"), "{text}");
        assert!(lines.contains(&"h_seconds_sum 60.0031"), "{text}");
    }
}
