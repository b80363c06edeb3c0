//! The `scale` report's figure (issue 17 part 1): the nodes' memory, CPU, chat latency and
//! reconnect-storm time against the number of connections, one curve per label.

use super::Labels;
use super::chart::{self, Axis, Corner, Figure, Panel, Series};
use super::input::{Input, SavedScaleStep};

/// One series per label of `runs`, a point per step with a value.
fn per_label(
    runs: &[&Input],
    labels: &Labels,
    suffix: &str,
    value: &dyn Fn(&SavedScaleStep) -> Option<f64>,
) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    for run in runs {
        let name = format!("{}{suffix}", run.label);
        let points = run
            .report
            .steps
            .iter()
            .filter_map(|s| Some((s.connections as f64, value(s)?)));
        match series.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.extend(points),
            None => series.push(Series {
                name,
                color: chart::color(labels.index(&run.label)),
                points: points.collect(),
                dashed: !suffix.is_empty(),
                markers: true,
            }),
        }
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    series
}

fn panel(title: &str, y: &str, series: Vec<Series>) -> Panel {
    Panel {
        title: title.to_owned(),
        x: Axis::linear("connections"),
        y: Axis::linear(y),
        series,
        legend: Corner::UpperLeft,
    }
}

/// `scale.svg`: four panels against connections.
pub fn figure(runs: &[&Input], labels: &Labels) -> Figure {
    let mib = |bytes: u64| bytes as f64 / 1_048_576.0;
    let mut latency = per_label(runs, labels, "", &|s| Some(s.chat.latency.p99_ms));
    latency.extend(per_label(runs, labels, " (ack)", &|s| {
        Some(s.chat.ack_latency.p99_ms)
    }));
    Figure {
        file_name: "scale.svg".to_owned(),
        caption: "scale: one host, nodes in cluster mode, against connections".to_owned(),
        panels: vec![
            panel(
                "nodes' RSS with every connection open",
                "RSS of all nodes (MiB)",
                per_label(runs, labels, "", &|s| {
                    Some(mib(s.connect.nodes_rss_idle_bytes))
                }),
            ),
            panel(
                "nodes' CPU during the chat load",
                "CPU cores (all nodes)",
                per_label(runs, labels, "", &|s| Some(s.chat.nodes_cpu_cores)),
            ),
            panel("chat: p99 delivery and ack latency", "p99 (ms)", latency),
            panel(
                "reconnect storm: until every client resumed",
                "seconds",
                per_label(runs, labels, "", &|s| Some(s.storm.secs_to_all_resumed)),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::super::input::{Input, parse};
    use super::super::{chart, figures};

    #[test]
    fn a_scale_report_draws_one_figure_of_four_panels() {
        let step = |n: u64, p99: f64| {
            format!(
                r#"{{"connections":{n},"connect":{{"nodes_rss_idle_bytes":{}}},"chat":{{"latency":{{"p99_ms":{p99}}},"ack_latency":{{"p99_ms":1.0}},"nodes_cpu_cores":0.5}},"storm":{{"secs_to_all_resumed":2.5}}}}"#,
                n * 4096
            )
        };
        let json = format!(
            r#"{{"scenario":"scale","steps":[{},{}]}}"#,
            step(10_000, 3.0),
            step(20_000, 4.0)
        );
        let input = Input {
            label: "confab".to_owned(),
            path: "scale.json".into(),
            report: parse(&json).expect("parses"),
        };
        let figures = figures(&[input]);
        assert_eq!(figures.len(), 1);
        let figure = &figures[0];
        assert_eq!(figure.file_name, "scale.svg");
        assert_eq!(figure.panels.len(), 4);
        assert_eq!(figure.panels[2].series.len(), 2, "delivery and ack p99");
        assert_eq!(
            figure.panels[0].series[0].points,
            [
                (10_000.0, 40_960_000.0 / 1_048_576.0),
                (20_000.0, 81_920_000.0 / 1_048_576.0)
            ]
        );
        let svg = chart::render(figure).expect("renders");
        assert!(svg.contains("reconnect storm"), "{svg}");
    }
}
