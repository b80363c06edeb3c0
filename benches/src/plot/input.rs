//! Saved reports read back for plotting. A file is input: every figure a plot needs is optional
//! here, and a report without one is left out of that plot rather than failing the command.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::stats::CdfPoint;

/// The figures of one report that the plots use; reports of other scenarios, or of older
/// versions of the bench (no `latency_cdf`), parse with those figures absent.
#[derive(Debug, Clone, Deserialize)]
pub struct SavedReport {
    pub scenario: String,
    #[serde(default)]
    pub params: serde_json::Value,
    #[serde(default)]
    pub connections: Option<SavedConnections>,
    #[serde(default)]
    pub traffic: Option<SavedTraffic>,
    #[serde(default)]
    pub server: Option<SavedServer>,
    /// `floor` reports: the kernel's CPU per loopback write.
    #[serde(default)]
    pub cpu_us_per_write: Option<f64>,
    /// `scale` reports: one entry per connection count.
    #[serde(default)]
    pub steps: Vec<SavedScaleStep>,
}

/// The figures of one `scale` step that its plot uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SavedScaleStep {
    pub connections: u64,
    pub connect: SavedScaleConnect,
    pub chat: SavedScaleChat,
    pub storm: SavedScaleStorm,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SavedScaleConnect {
    pub nodes_rss_idle_bytes: u64,
    pub bytes_per_connection: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SavedScaleChat {
    pub latency: SavedP99,
    pub ack_latency: SavedP99,
    pub nodes_cpu_cores: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SavedP99 {
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SavedScaleStorm {
    pub secs_to_all_resumed: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SavedConnections {
    pub ok: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SavedTraffic {
    pub target_rate_per_sec: f64,
    pub deliveries_per_sec: f64,
    /// Acknowledged messages and the deliveries they should have made (receivers per message).
    #[serde(default)]
    pub acked: u64,
    #[serde(default)]
    pub expected: u64,
    pub latency: SavedPercentiles,
    #[serde(default)]
    pub latency_cdf: Vec<CdfPoint>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SavedPercentiles {
    pub count: u64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SavedServer {
    pub rss_idle_bytes: Option<u64>,
    pub bytes_per_connection: Option<f64>,
    pub cpu_us_per_delivery: Option<f64>,
}

/// A report with the name of the server it measured.
#[derive(Debug, Clone)]
pub struct Input {
    pub label: String,
    pub path: PathBuf,
    pub report: SavedReport,
}

impl SavedReport {
    /// How big the run was and in what unit: members of a fan-out, connections otherwise.
    pub fn size(&self) -> Option<(u64, &'static str)> {
        let param = |name: &str| self.params.get(name).and_then(serde_json::Value::as_u64);
        match self.scenario.as_str() {
            "fanout" => Some((param("members")?, "members")),
            "idle" => Some((self.connections.as_ref()?.ok, "connections")),
            _ => Some((param("connections")?, "connections")),
        }
    }

    /// `floor`'s parameters: sockets and milliseconds between rounds.
    pub fn floor_params(&self) -> Option<(u64, u64)> {
        let param = |name: &str| self.params.get(name).and_then(serde_json::Value::as_u64);
        Some((param("connections")?, param("gap_ms")?))
    }
}

/// Reads every report that `args` (`[LABEL=]PATH` each) names, in order; a directory gives its
/// `*.json` files sorted by name.
pub fn load(args: &[String]) -> anyhow::Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for arg in args {
        let (label, path) = split_label(arg);
        for file in files_of(&path)? {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let report = parse(&text).with_context(|| format!("in {}", file.display()))?;
            let label = label.clone().unwrap_or_else(|| default_label(&file));
            inputs.push(Input {
                label,
                path: file,
                report,
            });
        }
    }
    Ok(inputs)
}

/// `LABEL=PATH` → the label and the path; anything else is a path. A `=` after a `/` belongs
/// to the path.
fn split_label(arg: &str) -> (Option<String>, PathBuf) {
    match arg.split_once('=') {
        Some((label, path)) if !label.is_empty() && !label.contains('/') => {
            (Some(label.to_owned()), PathBuf::from(path))
        }
        _ => (None, PathBuf::from(arg)),
    }
}

/// The name of the directory `file` is in (`confab/fanout-25.json` → `confab`).
fn default_label(file: &Path) -> String {
    file.canonicalize()
        .ok()
        .as_deref()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map_or_else(|| "report".to_owned(), |n| n.to_string_lossy().into_owned())
}

fn files_of(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?
    {
        let file = entry?.path();
        if file.extension().is_some_and(|e| e == "json") && file.is_file() {
            files.push(file);
        }
    }
    if files.is_empty() {
        bail!("no *.json reports in {}", path.display());
    }
    files.sort();
    Ok(files)
}

/// A report from a file's text: the whole text as JSON, or else its last line that is (what
/// `confab-bench` prints last on stdout).
pub fn parse(text: &str) -> anyhow::Result<SavedReport> {
    if let Ok(report) = serde_json::from_str(text.trim()) {
        return Ok(report);
    }
    let line = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .context("no JSON report (a line starting with `{`)")?;
    serde_json::from_str(line).context("the report's JSON line does not parse")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_the_argument_or_the_directory() {
        assert_eq!(
            split_label("uws=/tmp/a=b/x.json"),
            (Some("uws".to_owned()), PathBuf::from("/tmp/a=b/x.json"))
        );
        assert_eq!(split_label("/tmp/a=b"), (None, PathBuf::from("/tmp/a=b")));
        let dir = tempfile::tempdir().expect("temp dir");
        let sub = dir.path().join("confab");
        std::fs::create_dir(&sub).expect("mkdir");
        std::fs::write(sub.join("b.json"), r#"{"scenario":"idle"}"#).expect("write");
        std::fs::write(sub.join("a.json"), "summary\n{\"scenario\":\"chat\"}\n").expect("write");
        std::fs::write(sub.join("notes.txt"), "not a report").expect("write");
        let inputs = load(&[sub.display().to_string()]).expect("load");
        let seen: Vec<(&str, &str)> = inputs
            .iter()
            .map(|i| (i.label.as_str(), i.report.scenario.as_str()))
            .collect();
        assert_eq!(seen, [("confab", "chat"), ("confab", "idle")]);
    }

    #[test]
    fn bad_files_are_errors_not_panics() {
        assert!(parse("").is_err());
        assert!(parse("== confab-bench fanout ==\n{\"scenario\": 3}").is_err());
        assert!(parse("{\"traffic\": {}}").is_err());
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(
            load(&[dir.path().display().to_string()]).is_err(),
            "empty dir"
        );
        assert!(load(&[dir.path().join("missing.json").display().to_string()]).is_err());
        let report = parse(r#"{"scenario":"chat","traffic":null,"server":{}}"#).expect("parses");
        assert!(report.traffic.is_none() && report.size().is_none());
    }
}
