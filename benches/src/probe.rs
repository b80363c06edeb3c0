//! The server's resident memory and CPU time: from `/proc/<pid>` when the generator is told the
//! server's pid (`--server-pid`), else from the `process_*` lines of its `/metrics`.

use std::path::{Path, PathBuf};

use confab_server::metrics::{PROCESS_CPU_SECONDS, PROCESS_RESIDENT_MEMORY};

use crate::rest::Rest;

/// Clock ticks per second of the CPU times in `/proc/<pid>/stat` (`USER_HZ`, fixed at 100 in
/// Linux's user-space ABI, so no `sysconf` call is needed).
const USER_HZ: f64 = 100.0;

/// Resident memory and CPU time of a process, read from its `/proc/<pid>` directory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// Resident set size (`VmRSS`), in bytes.
    pub resident_bytes: u64,
    /// User plus system CPU time since the process started, in seconds.
    pub cpu_seconds: f64,
}

impl ProcessStats {
    /// Reads `proc_dir` (`/proc/self`, or `/proc/<pid>` of another process). `None` where
    /// there is no procfs (not Linux) or the process is gone.
    pub fn read(proc_dir: &Path) -> Option<ProcessStats> {
        let status = std::fs::read_to_string(proc_dir.join("status")).ok()?;
        let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
        Some(ProcessStats {
            resident_bytes: parse_vm_rss(&status)?,
            cpu_seconds: parse_cpu_seconds(&stat)?,
        })
    }
}

/// `VmRSS:  1234 kB` of `/proc/<pid>/status`, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `utime + stime` (fields 14 and 15) of `/proc/<pid>/stat`, in seconds. The command name in
/// field 2 may hold spaces and parentheses, so fields are counted after its closing `)`.
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// The kernel's socket figures (`/proc/net/sockstat`): sockets in use and the memory their
/// buffers hold, which a process's RSS does not show. Machine-wide (this network namespace), so
/// on one host the generator's ends of the connections count too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sockstat {
    /// `sockets: used`: sockets of every family.
    pub sockets_used: u64,
    /// `TCP: inuse`.
    pub tcp_inuse: u64,
    /// `TCP: alloc`.
    pub tcp_alloc: u64,
    /// `TCP: tw`.
    pub tcp_time_wait: u64,
    /// `TCP: mem`: pages of TCP socket buffers.
    pub tcp_mem_pages: u64,
}

impl Sockstat {
    /// Page size of `tcp_mem_pages` (4 KiB on the x86-64 and aarch64 Linux this runs on).
    pub const PAGE: u64 = 4096;

    /// Reads `/proc/net/sockstat`; `None` where there is none (not Linux).
    pub fn read() -> Option<Sockstat> {
        parse_sockstat(&std::fs::read_to_string("/proc/net/sockstat").ok()?)
    }
}

fn parse_sockstat(text: &str) -> Option<Sockstat> {
    // Lines of `PROTO: key value key value ...`.
    let field = |proto: &str, key: &str| -> Option<u64> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(proto)?.strip_prefix(':'))?;
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            let value = words.next()?;
            if word == key {
                return value.parse().ok();
            }
        }
        None
    };
    Some(Sockstat {
        sockets_used: field("sockets", "used")?,
        tcp_inuse: field("TCP", "inuse")?,
        tcp_alloc: field("TCP", "alloc")?,
        tcp_time_wait: field("TCP", "tw")?,
        tcp_mem_pages: field("TCP", "mem")?,
    })
}

/// Where server process figures come from.
pub enum Probe {
    Proc(PathBuf),
    Metrics(Rest),
}

impl Probe {
    pub fn new(server_pid: Option<u32>, rest: &Rest) -> Probe {
        match server_pid {
            Some(pid) => Probe::Proc(PathBuf::from(format!("/proc/{pid}"))),
            None => Probe::Metrics(rest.clone()),
        }
    }

    /// What the report calls the source.
    pub fn source(&self) -> &'static str {
        match self {
            Probe::Proc(_) => "proc",
            Probe::Metrics(_) => "metrics",
        }
    }

    /// A sample, or `None` when the figures cannot be read.
    pub async fn sample(&self) -> Option<ProcessStats> {
        match self {
            Probe::Proc(dir) => ProcessStats::read(dir),
            Probe::Metrics(rest) => parse_metrics(&rest.metrics().await.ok()?),
        }
    }
}

/// The generator's own figures (its share of the machine).
pub fn own() -> Option<ProcessStats> {
    ProcessStats::read(Path::new("/proc/self"))
}

fn parse_metrics(text: &str) -> Option<ProcessStats> {
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    };
    Some(ProcessStats {
        resident_bytes: value(PROCESS_RESIDENT_MEMORY)? as u64,
        cpu_seconds: value(PROCESS_CPU_SECONDS)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let status = "Name:\tconfab\nVmPeak:\t  9000 kB\nVmRSS:\t  5120 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(5120 * 1024));
        let stat = "4242 (con fab) (x) S 1 2 3 4 5 6 7 8 9 10 250 125 0 0 20 0 3 0 100 0";
        assert_eq!(parse_cpu_seconds(stat), Some(3.75));
        assert_eq!(parse_cpu_seconds("garbage"), None);
    }

    #[test]
    fn sockstat_parses() {
        let text = "sockets: used 39031\nTCP: inuse 39002 orphan 0 tw 12 alloc 39004 mem 2411\nUDP: inuse 0 mem 0\n";
        assert_eq!(
            parse_sockstat(text),
            Some(Sockstat {
                sockets_used: 39031,
                tcp_inuse: 39002,
                tcp_alloc: 39004,
                tcp_time_wait: 12,
                tcp_mem_pages: 2411,
            })
        );
        assert_eq!(parse_sockstat("UDP: inuse 0 mem 0\n"), None);
    }

    #[test]
    fn process_lines_of_metrics_parse() {
        let text = "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 1048576\nprocess_cpu_seconds_total 2.5\n";
        assert_eq!(
            parse_metrics(text),
            Some(ProcessStats {
                resident_bytes: 1 << 20,
                cpu_seconds: 2.5
            })
        );
        assert_eq!(parse_metrics("confab_connections_active 3\n"), None);
    }
}
