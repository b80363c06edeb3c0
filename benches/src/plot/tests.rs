//! The plots from fixture reports: which figures and series, and SVG files that parse as XML.
//! Everything is written under temp dirs.

use std::path::Path;

use quick_xml::Reader;
use quick_xml::events::Event;
use serde_json::{Value, json};

use super::*;

/// A traffic report as `confab-bench` prints it (the fields the plots read, and a few others).
fn traffic(scenario: &str, size: u64, rate: f64, p99_ms: f64, cpu_us: f64) -> Value {
    let receivers = if scenario == "fanout" { size } else { 4 };
    let acked = (rate * 5.0) as u64;
    let cdf: Vec<Value> = [
        (0.0, 0.2),
        (0.5, 1.0),
        (0.9, p99_ms / 2.0),
        (0.99, p99_ms),
        (1.0, p99_ms * 1.5),
    ]
    .into_iter()
    .map(|(q, ms)| json!({"q": q, "ms": ms}))
    .collect();
    let params = if scenario == "fanout" {
        json!({"members": size, "rate": rate})
    } else {
        json!({"connections": size, "conversations": size / 5, "rate": rate})
    };
    json!({
        "scenario": scenario,
        "params": params,
        "connections": {"target": size, "ok": size, "failed": 0},
        "traffic": {
            "window_secs": 5.0,
            "target_rate_per_sec": rate,
            "sent": acked, "acked": acked, "expected": acked * receivers,
            "deliveries_per_sec": rate * receivers as f64 * 0.98,
            "latency": {"count": acked * receivers, "p50_ms": 1.0, "p90_ms": p99_ms / 2.0,
                        "p99_ms": p99_ms, "p999_ms": p99_ms, "max_ms": p99_ms * 1.5},
            "latency_cdf": cdf,
        },
        "server": {"source": "proc", "cpu_us_per_delivery": cpu_us, "bytes_per_connection": null},
        "client": {},
    })
}

fn idle(connections: u64, bytes_per_connection: f64) -> Value {
    json!({
        "scenario": "idle",
        "params": {"connections": connections, "conversations": connections / 10, "hold_secs": 3.0},
        "connections": {"target": connections, "ok": connections, "failed": 0},
        "traffic": null,
        "server": {"source": "proc", "rss_idle_bytes": 20_000_000 + connections * 4_000,
                   "bytes_per_connection": bytes_per_connection},
    })
}

fn floor() -> Value {
    json!({"scenario": "floor", "params": {"connections": 1000, "rounds": 100, "gap_ms": 40, "bytes": 200},
           "writes": 100_000, "wall_secs": 4.0, "writer_cpu_seconds": 0.2, "cpu_us_per_write": 2.0})
}

/// Two servers' sweeps, as `benches/sweep.sh` saves them (`<dir>/<server>/<name>.json`).
fn fixture(dir: &Path) {
    let write = |server: &str, name: &str, report: Value| {
        let sub = dir.join(server);
        std::fs::create_dir_all(&sub).expect("mkdir");
        // The whole stdout of a run, summary lines first, as a user may save it.
        let text = format!("== confab-bench ==\nparams: …\n{report}\n");
        std::fs::write(sub.join(format!("{name}.json")), text).expect("write fixture");
    };
    for (server, cpu, p99) in [("confab", 7.0, 10.0), ("uws", 4.0, 6.0)] {
        // Out of rate order on purpose: curves are sorted by rate.
        for rate in [50.0, 10.0, 25.0] {
            let report = traffic("fanout", 1000, rate, p99 * rate / 25.0, cpu - rate / 50.0);
            write(server, &format!("fanout-{rate}"), report);
        }
        write(
            server,
            "chat-500",
            traffic("chat", 2000, 500.0, p99 / 4.0, cpu * 2.0),
        );
        for (connections, bytes) in [(1000, 5000.0), (5000, 4200.0), (10_000, 4100.0)] {
            let bytes = if server == "uws" { bytes / 3.0 } else { bytes };
            write(
                server,
                &format!("idle-{connections}"),
                idle(connections, bytes),
            );
        }
    }
    std::fs::write(dir.join("floor.json"), floor().to_string()).expect("write floor");
}

fn inputs(dir: &Path) -> Vec<Input> {
    let args = [
        dir.join("confab").display().to_string(),
        dir.join("uws").display().to_string(),
        dir.join("floor.json").display().to_string(),
    ];
    input::load(&args).expect("fixture loads")
}

fn figure<'a>(figures: &'a [Figure], name: &str) -> &'a Figure {
    figures
        .iter()
        .find(|f| f.file_name == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

fn names(panel: &Panel) -> Vec<&str> {
    panel.series.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn a_sweep_of_two_servers_makes_these_figures() {
    let dir = tempfile::tempdir().expect("temp dir");
    fixture(dir.path());
    let figures = figures(&inputs(dir.path()));
    let files: Vec<&str> = figures.iter().map(|f| f.file_name.as_str()).collect();
    assert_eq!(
        files,
        [
            "chat-latency-cdf.svg",
            "chat-rate.svg",
            "chat-cpu.svg",
            "fanout-latency-cdf.svg",
            "fanout-rate.svg",
            "fanout-cpu.svg",
            "idle-memory.svg",
        ]
    );

    let cdf = &figure(&figures, "fanout-latency-cdf.svg").panels[0];
    assert_eq!(
        names(cdf),
        [
            "confab 10 msg/s",
            "confab 25 msg/s",
            "confab 50 msg/s",
            "uws 10 msg/s",
            "uws 25 msg/s",
            "uws 50 msg/s"
        ]
    );
    for series in &cdf.series {
        let monotone = series
            .points
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1);
        assert!(monotone, "{}: {:?}", series.name, series.points);
        assert_eq!(series.points.last().map(|p| p.1), Some(1.0));
    }
    assert_ne!(
        cdf.series[0].color, cdf.series[3].color,
        "one colour per server"
    );

    let rate = &figure(&figures, "fanout-rate.svg").panels;
    assert_eq!(
        names(&rate[0]),
        ["offered (rate × receivers)", "confab", "uws"]
    );
    assert_eq!(
        rate[0].series[0].points,
        [(10.0, 10_000.0), (25.0, 25_000.0), (50.0, 50_000.0)]
    );
    let confab_p99: Vec<(f64, f64)> = rate[1].series[0].points.clone();
    assert_eq!(confab_p99, [(10.0, 4.0), (25.0, 10.0), (50.0, 20.0)]);

    let cpu = &figure(&figures, "fanout-cpu.svg").panels[0];
    assert_eq!(
        names(cpu),
        [
            "confab",
            "uws",
            "floor: one loopback write (1000 sockets, 40 ms apart)"
        ]
    );
    assert_eq!(
        cpu.series[2].points,
        [(10.0, 2.0), (50.0, 2.0)],
        "across the rates"
    );
    assert!(cpu.series[2].dashed);

    let idle = &figure(&figures, "idle-memory.svg").panels;
    assert_eq!(names(&idle[0]), ["confab", "uws"]);
    assert_eq!(
        idle[0].series[0].points,
        [(1000.0, 5000.0), (5000.0, 4200.0), (10_000.0, 4100.0)]
    );
}

/// Element names and text of an SVG; panics unless it is well-formed XML.
fn parse_svg(svg: &str) -> (Vec<String>, String) {
    let mut reader = Reader::from_str(svg);
    let (mut elements, mut text) = (Vec::new(), String::new());
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) => {
                elements.push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
            }
            Ok(Event::Text(t)) => {
                text.push_str(&t.decode().expect("utf-8 text"));
                text.push('\n');
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(err) => panic!("not well-formed at {}: {err}", reader.buffer_position()),
        }
    }
    (elements, text)
}

#[test]
fn plot_writes_well_formed_svgs_with_every_series() {
    let dir = tempfile::tempdir().expect("temp dir");
    fixture(dir.path());
    let out = dir.path().join("plots");
    let args = PlotArgs {
        reports: vec![
            format!("confab={}", dir.path().join("confab").display()),
            format!("µWS={}", dir.path().join("uws").display()),
            dir.path().join("floor.json").display().to_string(),
        ],
        out_dir: out.clone(),
    };
    let written = run(&args).expect("plots written");
    assert_eq!(written.len(), 7);
    for path in &written {
        assert!(path.starts_with(&out), "{}", path.display());
        let svg = std::fs::read_to_string(path).expect("read svg");
        let (elements, text) = parse_svg(&svg);
        assert_eq!(
            elements.first().map(String::as_str),
            Some("svg"),
            "{}",
            path.display()
        );
        assert!(
            elements.iter().any(|e| e == "polyline"),
            "{}: no lines",
            path.display()
        );
        assert!(
            text.contains("confab") && text.contains("µWS"),
            "{}:\n{text}",
            path.display()
        );
    }
    let (_, cpu) = parse_svg(&std::fs::read_to_string(out.join("fanout-cpu.svg")).expect("read"));
    assert!(cpu.contains("floor: one loopback write"), "{cpu}");
    assert!(cpu.contains("CPU per delivery"), "{cpu}");
}

#[test]
fn reports_without_figures_to_plot_are_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("floor.json");
    std::fs::write(&file, floor().to_string()).expect("write");
    let args = PlotArgs {
        reports: vec![file.display().to_string()],
        out_dir: dir.path().join("plots"),
    };
    let err = run(&args).expect_err("a floor alone has nothing to plot");
    assert!(err.to_string().contains("nothing to plot"), "{err}");
    assert!(
        !dir.path().join("plots").exists(),
        "no directory made for nothing"
    );
}
