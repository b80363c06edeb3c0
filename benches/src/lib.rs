//! Confab's load generator and micro-benchmarks.
//!
//! The `confab-bench` binary drives a running server over real sockets (loopback only) and
//! prints a summary plus one JSON line; the criterion benches in `benches/` measure the pieces in
//! process. Results and the commands that produced them are in `RESULTS.md`.
//!
//! Layout:
//! - [`cli`]: the command line; [`scenario`]: `idle`, `fanout`, `chat`, `storm`, `history`,
//!   `cluster`, `media`; [`floor`]: the kernel's price of one loopback write, no server;
//!   [`search`]: confab's search index against SQLite FTS5, in process, no server; [`plot`]:
//!   saved reports drawn as SVG curves, no server; [`scale`]: C200K on one host, its own nodes
//!   and generator processes (issue 17 part 1).
//! - [`conn`]: opening WebSocket connections; [`load`]: the live connections, the pacer and the
//!   wire format of generated messages.
//! - [`stats`]: HDR histograms and the per-message ledger (loss, duplicates); [`report`]: the
//!   summary and the JSON line.
//! - [`rest`]: setup and paging over REST; [`tokens`]: minted or file-provided identities;
//!   [`probe`]: the server's RSS and CPU time (from `/proc/<pid>` or `/metrics`).

// Functions stay short enough to read at once (threshold in clippy.toml); tests may not.
#![warn(clippy::too_many_lines)]

pub mod cli;
pub mod conn;
pub mod floor;
pub mod load;
pub mod plot;
pub mod probe;
pub mod report;
pub mod rest;
pub mod scale;
pub mod scenario;
pub mod search;
pub mod stages;
pub mod stats;
pub mod tokens;

/// Raises this process's open-file limit to its hard limit (and the hard limit too, when
/// allowed), so that thousands of sockets fit. Returns the soft limit now in force.
pub fn raise_open_files(wanted: u64) -> u64 {
    use rlimit::Resource;
    let Ok((soft, hard)) = Resource::NOFILE.get() else {
        return 0;
    };
    if soft >= wanted {
        return soft;
    }
    // Raising the hard limit needs CAP_SYS_RESOURCE; fall back to the current hard limit.
    if hard < wanted && Resource::NOFILE.set(wanted, wanted).is_ok() {
        return wanted;
    }
    let target = wanted.min(hard);
    match Resource::NOFILE.set(target, hard) {
        Ok(()) => target,
        Err(_) => soft,
    }
}
