//! The server's resident memory and CPU time: from `/proc/<pid>` when the generator is told the
//! server's pid (`--server-pid`), else from the `process_*` lines of its `/metrics`.

use std::path::PathBuf;

use confab_server::metrics::{PROCESS_CPU_SECONDS, PROCESS_RESIDENT_MEMORY, ProcessStats};

use crate::rest::Rest;

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
    ProcessStats::read(std::path::Path::new("/proc/self"))
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
