//! `confab-bench plot` (issue 16): saved reports drawn as SVG curves, so that a reader of
//! `RESULTS.md` sees how latency, throughput, CPU and memory move with the load, and Confab and
//! the µWebSockets.js peer on the same axes.
//!
//! Per traffic scenario (`fanout`, `chat`, …) it writes `<scenario>-latency-cdf.svg` (one curve
//! per report), `<scenario>-rate.svg` (deliveries/s and p99 against the offered rate) and
//! `<scenario>-cpu.svg` (server CPU per delivery against the rate, `floor` reports as
//! horizontal lines); for `idle`, `idle-memory.svg` (bytes per connection and RSS against
//! connections); for `scale`, `scale.svg` (the nodes' RSS and CPU, chat p99 and the reconnect
//! storm's time against connections). Reports of one label and size make one curve of a sweep.
//!
//! [`input`] reads the reports, [`figures`] decides what each plot shows, [`chart`] draws.

pub mod chart;
pub mod input;
mod scale;

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::cli::PlotArgs;
use chart::{Axis, Corner, Figure, GRAY, Panel, Series};
use input::{Input, SavedReport};

/// Reads the reports, writes the SVGs into `--out-dir` and returns their paths.
pub fn run(args: &PlotArgs) -> anyhow::Result<Vec<PathBuf>> {
    let inputs = input::load(&args.reports)?;
    let figures = figures(&inputs);
    if figures.is_empty() {
        bail!(
            "nothing to plot in {} report(s): plots need idle, scale or traffic reports \
             (fanout, chat, …)",
            inputs.len()
        );
    }
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let mut written = Vec::with_capacity(figures.len());
    for figure in &figures {
        let path = args.out_dir.join(&figure.file_name);
        let svg = chart::render(figure)?;
        std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Every figure the reports allow, in a fixed order.
pub fn figures(inputs: &[Input]) -> Vec<Figure> {
    let labels = Labels::of(inputs);
    let floors: Vec<&SavedReport> = inputs
        .iter()
        .map(|i| &i.report)
        .filter(|r| r.scenario == "floor")
        .collect();
    let mut figures = Vec::new();
    for scenario in traffic_scenarios(inputs) {
        let runs: Vec<&Input> = inputs
            .iter()
            .filter(|i| i.report.scenario == scenario && i.report.traffic.is_some())
            .collect();
        figures.extend(latency_cdf(&scenario, &runs, &labels));
        figures.push(rate_sweep(&scenario, &runs, &labels));
        figures.push(cpu_sweep(&scenario, &runs, &labels, &floors));
    }
    let idle: Vec<&Input> = inputs
        .iter()
        .filter(|i| i.report.scenario == "idle")
        .collect();
    if !idle.is_empty() {
        figures.push(idle_memory(&idle, &labels));
    }
    let scale: Vec<&Input> = inputs
        .iter()
        .filter(|i| i.report.scenario == "scale" && !i.report.steps.is_empty())
        .collect();
    if !scale.is_empty() {
        figures.push(scale::figure(&scale, &labels));
    }
    figures
}

/// Scenarios with traffic figures, sorted.
fn traffic_scenarios(inputs: &[Input]) -> BTreeSet<String> {
    inputs
        .iter()
        .filter(|i| i.report.traffic.is_some())
        .map(|i| i.report.scenario.clone())
        .collect()
}

/// The servers' labels in the order first named: each keeps one colour in every plot.
struct Labels(Vec<String>);

impl Labels {
    fn of(inputs: &[Input]) -> Labels {
        let mut labels: Vec<String> = Vec::new();
        for input in inputs.iter().filter(|i| i.report.scenario != "floor") {
            if !labels.contains(&input.label) {
                labels.push(input.label.clone());
            }
        }
        Labels(labels)
    }

    fn index(&self, label: &str) -> usize {
        self.0.iter().position(|l| l == label).unwrap_or(0)
    }
}

/// The offered rate in messages per second.
fn rate(report: &SavedReport) -> f64 {
    report
        .traffic
        .as_ref()
        .map_or(0.0, |t| t.target_rate_per_sec)
}

/// Whether the runs differ in size (then legends name it).
fn sizes_differ(runs: &[&Input]) -> bool {
    let sizes: BTreeSet<Option<(u64, &str)>> = runs.iter().map(|i| i.report.size()).collect();
    sizes.len() > 1
}

fn size_text(report: &SavedReport) -> String {
    report
        .size()
        .map_or_else(|| "size n/a".to_owned(), |(n, unit)| format!("{n} {unit}"))
}

/// One curve per run: the fraction of deliveries within a latency.
fn latency_cdf(scenario: &str, runs: &[&Input], labels: &Labels) -> Option<Figure> {
    let mut runs: Vec<&Input> = runs
        .iter()
        .copied()
        .filter(|i| {
            i.report
                .traffic
                .as_ref()
                .is_some_and(|t| !t.latency_cdf.is_empty())
        })
        .collect();
    if runs.is_empty() {
        return None;
    }
    runs.sort_by(|a, b| {
        let by_label = labels.index(&a.label).cmp(&labels.index(&b.label));
        by_label.then(rate(&a.report).total_cmp(&rate(&b.report)))
    });
    let with_size = sizes_differ(&runs);
    let series = runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            // One server's runs in shades of its colour, lighter as the rate rises.
            let same: Vec<usize> = (0..runs.len())
                .filter(|&j| runs[j].label == run.label)
                .collect();
            let rank = same.iter().position(|&j| j == i).unwrap_or(0);
            let lighter = if same.len() > 1 {
                0.6 * rank as f64 / (same.len() - 1) as f64
            } else {
                0.0
            };
            let mut name = format!("{} {} msg/s", run.label, chart::tick(rate(&run.report)));
            if with_size {
                name = format!("{name}, {}", size_text(&run.report));
            }
            let points = run
                .report
                .traffic
                .as_ref()
                .map(|t| t.latency_cdf.iter().map(|p| (p.ms, p.q)).collect())
                .unwrap_or_default();
            Series {
                name,
                color: chart::shade(chart::color(labels.index(&run.label)), lighter),
                points,
                dashed: false,
                markers: false,
            }
        })
        .collect();
    let y = Axis {
        bounds: Some((0.0, 1.0)),
        ..Axis::linear("fraction of deliveries")
    };
    Some(Figure {
        file_name: format!("{scenario}-latency-cdf.svg"),
        caption: format!("{scenario}: delivery latency (send to receipt)"),
        panels: vec![Panel {
            title: "cumulative distribution".to_owned(),
            x: Axis::log("latency (ms, log scale)"),
            y,
            series,
            legend: Corner::LowerRight,
        }],
    })
}

/// The runs grouped into curves: one per label and size, points sorted by rate.
fn sweep_curves<'a>(runs: &[&'a Input], labels: &Labels) -> Vec<(String, usize, Vec<&'a Input>)> {
    let with_size = sizes_differ(runs);
    let mut curves: Vec<(String, usize, Vec<&Input>)> = Vec::new();
    for run in runs {
        let name = if with_size {
            format!("{}, {}", run.label, size_text(&run.report))
        } else {
            run.label.clone()
        };
        match curves.iter_mut().find(|c| c.0 == name) {
            Some(curve) => curve.2.push(run),
            None => curves.push((name, labels.index(&run.label), vec![run])),
        }
    }
    for curve in &mut curves {
        curve
            .2
            .sort_by(|a, b| rate(&a.report).total_cmp(&rate(&b.report)));
    }
    curves.sort_by_key(|c| c.1);
    curves
}

/// A sweep panel: `value` of each run against its offered rate.
fn sweep_series(
    runs: &[&Input],
    labels: &Labels,
    value: impl Fn(&SavedReport) -> Option<f64>,
) -> Vec<Series> {
    sweep_curves(runs, labels)
        .into_iter()
        .map(|(name, color, runs)| Series {
            name,
            color: chart::color(color),
            points: runs
                .iter()
                .filter_map(|r| Some((rate(&r.report), value(&r.report)?)))
                .collect(),
            dashed: false,
            markers: true,
        })
        .collect()
}

/// What the runs asked for: rate × receivers per message, one dashed line per size.
fn offered_series(runs: &[&Input]) -> Vec<Series> {
    let with_size = sizes_differ(runs);
    let mut by_size: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for run in runs {
        let Some(t) = run.report.traffic.as_ref().filter(|t| t.acked > 0) else {
            continue;
        };
        let point = (
            t.target_rate_per_sec,
            t.target_rate_per_sec * t.expected as f64 / t.acked as f64,
        );
        let name = if with_size {
            format!("offered, {}", size_text(&run.report))
        } else {
            "offered (rate × receivers)".to_owned()
        };
        match by_size.iter_mut().find(|(n, _)| *n == name) {
            Some((_, points)) => points.push(point),
            None => by_size.push((name, vec![point])),
        }
    }
    by_size
        .into_iter()
        .map(|(name, mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            points.dedup_by(|a, b| a.0 == b.0);
            Series {
                name,
                color: GRAY,
                points,
                dashed: true,
                markers: false,
            }
        })
        .collect()
}

fn rate_axis() -> Axis {
    Axis::linear("offered rate (messages/s)")
}

/// Deliveries/s and p99 against the offered rate.
fn rate_sweep(scenario: &str, runs: &[&Input], labels: &Labels) -> Figure {
    let mut delivered = offered_series(runs);
    delivered.extend(sweep_series(runs, labels, |r| {
        Some(r.traffic.as_ref()?.deliveries_per_sec)
    }));
    let p99 = sweep_series(runs, labels, |r| {
        r.traffic
            .as_ref()
            .filter(|t| t.latency.count > 0)
            .map(|t| t.latency.p99_ms)
    });
    Figure {
        file_name: format!("{scenario}-rate.svg"),
        caption: format!("{scenario}: throughput and tail latency against the offered rate"),
        panels: vec![
            Panel {
                title: "deliveries/s (over the measured window)".to_owned(),
                x: rate_axis(),
                y: Axis::linear("deliveries/s"),
                series: delivered,
                legend: Corner::UpperLeft,
            },
            Panel {
                title: "delivery latency p99".to_owned(),
                x: rate_axis(),
                y: Axis::log_if_wide("p99 (ms)", &p99, 1),
                series: p99,
                legend: Corner::UpperLeft,
            },
        ],
    }
}

/// Server CPU per delivery against the offered rate, with each `floor` as a line.
fn cpu_sweep(scenario: &str, runs: &[&Input], labels: &Labels, floors: &[&SavedReport]) -> Figure {
    let mut series = sweep_series(runs, labels, |r| r.server.as_ref()?.cpu_us_per_delivery);
    let rates: Vec<f64> = runs.iter().map(|r| rate(&r.report)).collect();
    let (low, high) = rates
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
            (lo.min(r), hi.max(r))
        });
    for floor in floors {
        let Some(us) = floor.cpu_us_per_write else {
            continue;
        };
        let name = match floor.floor_params() {
            Some((sockets, gap)) => {
                format!("floor: one loopback write ({sockets} sockets, {gap} ms apart)")
            }
            None => "floor: one loopback write".to_owned(),
        };
        series.push(Series {
            name,
            color: GRAY,
            points: vec![(low, us), (high, us)],
            dashed: true,
            markers: false,
        });
    }
    Figure {
        file_name: format!("{scenario}-cpu.svg"),
        caption: format!("{scenario}: server CPU per delivery against the offered rate"),
        panels: vec![Panel {
            title: "server CPU time / deliveries (measured window)".to_owned(),
            x: rate_axis(),
            y: Axis::linear("CPU per delivery (µs)"),
            series,
            legend: Corner::UpperRight,
        }],
    }
}

/// Idle memory: bytes per connection and RSS against connections.
fn idle_memory(runs: &[&Input], labels: &Labels) -> Figure {
    let per_label = |value: &dyn Fn(&SavedReport) -> Option<f64>| -> Vec<Series> {
        let mut series: Vec<Series> = Vec::new();
        for run in runs {
            let Some(((connections, _), y)) = run.report.size().zip(value(&run.report)) else {
                continue;
            };
            let index = labels.index(&run.label);
            match series.iter_mut().find(|s| s.name == run.label) {
                Some(s) => s.points.push((connections as f64, y)),
                None => series.push(Series {
                    name: run.label.clone(),
                    color: chart::color(index),
                    points: vec![(connections as f64, y)],
                    dashed: false,
                    markers: true,
                }),
            }
        }
        for s in &mut series {
            s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        series
    };
    let connections = || Axis::linear("idle joined connections");
    Figure {
        file_name: "idle-memory.svg".to_owned(),
        caption: "idle: server memory against connections".to_owned(),
        panels: vec![
            Panel {
                title: "RSS growth per connection".to_owned(),
                x: connections(),
                y: Axis::linear("bytes per connection"),
                series: per_label(&|r| r.server.as_ref()?.bytes_per_connection),
                legend: Corner::UpperRight,
            },
            Panel {
                title: "RSS with the connections open".to_owned(),
                x: connections(),
                y: Axis::linear("RSS (MiB)"),
                series: per_label(&|r| Some(r.server.as_ref()?.rss_idle_bytes? as f64 / 1048576.0)),
                legend: Corner::UpperLeft,
            },
        ],
    }
}

#[cfg(test)]
mod tests;
