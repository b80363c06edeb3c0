//! The coordinator's side of the worker processes ([`Workers`]: spawned, fed a plan, sent
//! commands, their replies read) and the host figures it samples around each phase
//! ([`Sample`]: every node's and worker's RSS and CPU from `/proc`, the kernel's TCP sockets).

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, bail};
use futures_util::future::try_join_all;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::wire::{Command, Reply, WorkerPlan};
use crate::probe::ProcessStats;

/// The hidden subcommand a worker runs.
pub const WORKER_SUBCOMMAND: &str = "scale-worker";

/// One worker process.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.write_all(b"\n").await?;
        self.stdin.flush().await?;
        Ok(())
    }

    async fn reply(&mut self) -> anyhow::Result<Reply> {
        let line = self
            .stdout
            .next_line()
            .await?
            .context("a worker exited without answering (see its stderr)")?;
        let reply: Reply = serde_json::from_str(&line).context("malformed worker reply")?;
        if let Reply::Failed { error } = &reply {
            bail!("a worker failed: {error}");
        }
        Ok(reply)
    }
}

/// The worker processes of one step; killed when dropped.
pub struct Workers {
    workers: Vec<Worker>,
}

impl Workers {
    /// Starts one `confab-bench scale-worker` per plan (this same binary) and hands each its
    /// plan.
    pub async fn start(plans: Vec<WorkerPlan>) -> anyhow::Result<Workers> {
        let exe: PathBuf = std::env::current_exe().context("the path of confab-bench")?;
        let mut workers = Vec::with_capacity(plans.len());
        for plan in plans {
            let mut child = tokio::process::Command::new(&exe)
                .arg(WORKER_SUBCOMMAND)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("start {}", exe.display()))?;
            let stdin = child.stdin.take().context("worker stdin")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            let mut worker = Worker {
                child,
                stdin,
                stdout: BufReader::new(stdout).lines(),
            };
            worker.send(&serde_json::to_string(&plan)?).await?;
            workers.push(worker);
        }
        Ok(Workers { workers })
    }

    /// Sends `command` to every worker and returns their replies, in worker order.
    pub async fn all(&mut self, command: &Command) -> anyhow::Result<Vec<Reply>> {
        self.each(|_| command.clone()).await
    }

    /// Sends each worker its own command and returns the replies, in worker order.
    pub async fn each(&mut self, command: impl Fn(usize) -> Command) -> anyhow::Result<Vec<Reply>> {
        try_join_all(self.workers.iter_mut().enumerate().map(|(i, w)| {
            let line = serde_json::to_string(&command(i));
            async move {
                w.send(&line?).await?;
                w.reply().await
            }
        }))
        .await
    }

    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(|w| w.child.id()).collect()
    }

    /// Tells every worker to close its connections and exit, and waits (bounded) for them.
    pub async fn exit(mut self) {
        let line = serde_json::to_string(&Command::Exit).unwrap_or_default();
        for worker in &mut self.workers {
            let _ = worker.send(&line).await;
        }
        for worker in &mut self.workers {
            let waited =
                tokio::time::timeout(std::time::Duration::from_secs(20), worker.child.wait());
            if waited.await.is_err() {
                let _ = worker.child.kill().await;
            }
        }
    }
}

/// RSS and CPU of a set of processes, summed, and each one's RSS.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Group {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    pub rss_by_process: Vec<u64>,
}

impl Group {
    fn of(pids: &[u32]) -> Group {
        let mut group = Group::default();
        for pid in pids {
            let stats = ProcessStats::read(&PathBuf::from(format!("/proc/{pid}")));
            let rss = stats.map_or(0, |s| s.resident_bytes);
            group.rss_bytes += rss;
            group.cpu_seconds += stats.map_or(0.0, |s| s.cpu_seconds);
            group.rss_by_process.push(rss);
        }
        group
    }
}

/// The host at one instant.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: std::time::Instant,
    pub nodes: Group,
    pub workers: Group,
    /// `/proc/net/sockstat`'s `TCP:` line.
    pub tcp: String,
}

impl Sample {
    pub fn take(nodes: &[u32], workers: &[u32]) -> Sample {
        let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
        Sample {
            at: std::time::Instant::now(),
            nodes: Group::of(nodes),
            workers: Group::of(workers),
            tcp: sockstat
                .lines()
                .find(|l| l.starts_with("TCP:"))
                .unwrap_or_default()
                .to_owned(),
        }
    }

    /// CPU cores the nodes and the workers used from `earlier` to this sample.
    pub fn cores_since(&self, earlier: &Sample) -> [f64; 2] {
        let secs = self.secs_since(earlier);
        [
            (self.nodes.cpu_seconds - earlier.nodes.cpu_seconds) / secs,
            (self.workers.cpu_seconds - earlier.workers.cpu_seconds) / secs,
        ]
    }

    pub fn secs_since(&self, earlier: &Sample) -> f64 {
        (self.at - earlier.at).as_secs_f64().max(1e-9)
    }
}

/// `/proc/loadavg`'s three load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
