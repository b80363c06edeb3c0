//! `confab-bench floor`: what the kernel charges for one small write to a loopback TCP socket,
//! with no server involved. The number bounds the server's CPU per delivery whenever each
//! delivery is one write (deliveries too far apart to share a write): on loopback the sender's
//! `send()` also runs the receiving socket's TCP processing and the reader's wake-up.
//!
//! This thread writes `bytes` to each of `connections` sockets in turn, waits `gap_ms`, and
//! repeats `rounds` times, like a server fanning one message out to every member of a
//! conversation; the other ends are read by a tokio runtime on another thread (epoll, as a
//! client's event loop reads). The writing thread's CPU time comes from `/proc/thread-self`.
//!
//! It then measures the disk's own floor under a durable ack: `syncs` commits, each writing
//! `sync_bytes` at the next offset of a file laid out beforehand (SQLite's log is rewritten in
//! place once a checkpoint has restarted it) and waiting for `fdatasync`, `sync_gap_us` apart.
//! No server acknowledges a message it has synced faster than that wait.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use std::os::unix::fs::FileExt;

use crate::probe::ProcessStats;
use crate::stats::{Percentiles, new_histogram, record};
use anyhow::{Context, bail};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::cli::FloorArgs;

/// Longest the readers may take past the writes' own duration.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize)]
pub struct FloorReport {
    pub scenario: &'static str,
    pub params: FloorArgs,
    pub writes: u64,
    pub wall_secs: f64,
    /// CPU time of the writing thread over all rounds (user + system).
    pub writer_cpu_seconds: f64,
    pub cpu_us_per_write: f64,
    /// Time of each commit's `fdatasync` (`None` with `--syncs 0`).
    pub sync: Option<Percentiles>,
}

impl FloorReport {
    pub fn print(&self) {
        println!("== confab-bench floor ==");
        println!(
            "{} writes of {} B to {} loopback sockets ({} rounds, {} ms apart) in {:.2} s",
            self.writes,
            self.params.bytes,
            self.params.connections,
            self.params.rounds,
            self.params.gap_ms,
            self.wall_secs
        );
        println!(
            "writer thread: cpu {:.2} s, {:.2} µs per write",
            self.writer_cpu_seconds, self.cpu_us_per_write
        );
        if let Some(sync) = &self.sync {
            println!(
                "disk: write {} B + fdatasync, every {} µs: {sync}",
                self.params.sync_bytes, self.params.sync_gap_us
            );
        }
        match serde_json::to_string(self) {
            Ok(line) => println!("{line}"),
            Err(err) => eprintln!("cannot encode the report: {err}"),
        }
    }
}

/// Runs the measurement on the calling thread (not inside an async runtime).
pub fn run(args: &FloorArgs) -> anyhow::Result<FloorReport> {
    if args.connections == 0 || args.rounds == 0 || args.bytes == 0 {
        bail!("--connections, --rounds and --bytes must be at least 1");
    }
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen on loopback")?;
    let addr = listener.local_addr()?;
    let mut writers = Vec::with_capacity(args.connections);
    let mut readers = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let client = TcpStream::connect(addr).context("cannot connect on loopback")?;
        let (server, _) = listener.accept()?;
        server.set_nodelay(true)?;
        client.set_nonblocking(true)?;
        writers.push(server);
        readers.push(client);
    }
    let per_reader = u64::from(args.rounds) * args.bytes as u64;
    let gap = Duration::from_millis(args.gap_ms);
    let limit = gap.saturating_mul(args.rounds) + DRAIN_TIMEOUT;
    let drained = std::thread::spawn(move || read_all(readers, per_reader, limit));

    let payload = vec![b'x'; args.bytes];
    let thread = Path::new("/proc/thread-self");
    let before = ProcessStats::read(thread).context("no /proc/thread-self")?;
    let started = Instant::now();
    for _ in 0..args.rounds {
        for socket in &mut writers {
            socket.write_all(&payload)?;
        }
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
    }
    let after = ProcessStats::read(thread).context("no /proc/thread-self")?;
    let wall = started.elapsed();
    match drained.join() {
        Ok(result) => result?,
        Err(_) => bail!("the reader thread panicked"),
    }
    let writes = u64::from(args.rounds) * args.connections as u64;
    let cpu = after.cpu_seconds - before.cpu_seconds;
    let sync = (args.syncs > 0).then(|| sync_floor(args)).transpose()?;
    Ok(FloorReport {
        scenario: "floor",
        params: args.clone(),
        writes,
        wall_secs: wall.as_secs_f64(),
        writer_cpu_seconds: cpu,
        cpu_us_per_write: cpu * 1e6 / writes as f64,
        sync,
    })
}

/// The disk's commit floor: see the module's documentation.
fn sync_floor(args: &FloorArgs) -> anyhow::Result<Percentiles> {
    let dir = args.sync_dir.clone().unwrap_or_else(std::env::temp_dir);
    let file = tempfile::tempfile_in(&dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let block = vec![b'x'; args.sync_bytes.max(1)];
    // Laid out and synced first: the commits then rewrite blocks the file already has.
    for i in 0..u64::from(args.syncs) {
        file.write_all_at(&block, i * block.len() as u64)?;
    }
    file.sync_all()?;
    let gap = Duration::from_micros(args.sync_gap_us);
    let mut histogram = new_histogram();
    for i in 0..u64::from(args.syncs) {
        file.write_all_at(&block, i * block.len() as u64)?;
        let started = Instant::now();
        file.sync_data()?;
        record(&mut histogram, started.elapsed());
        std::thread::sleep(gap);
    }
    Ok(Percentiles::of(&histogram))
}

/// Reads `expected` bytes from every socket within `limit`, on a runtime of its own.
fn read_all(sockets: Vec<TcpStream>, expected: u64, limit: Duration) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for socket in sockets {
            let mut socket = tokio::net::TcpStream::from_std(socket)?;
            tasks.spawn(async move {
                let mut buf = [0u8; 4096];
                let mut got = 0u64;
                while got < expected {
                    match socket.read(&mut buf).await? {
                        0 => bail!("a socket closed after {got} of {expected} bytes"),
                        n => got += n as u64,
                    }
                }
                anyhow::Ok(())
            });
        }
        tokio::time::timeout(limit, async {
            while let Some(done) = tasks.join_next().await {
                done??;
            }
            anyhow::Ok(())
        })
        .await
        .context("the readers did not get every byte in time")?
    })
}
