//! Drawing: a [`Figure`] (panels side by side, each with its series) rendered to SVG text with
//! plotters. Only this module knows plotters; [`super::figures`] decides what is drawn.

use anyhow::anyhow;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;

/// One SVG file.
#[derive(Debug, Clone)]
pub struct Figure {
    pub file_name: String,
    pub caption: String,
    pub panels: Vec<Panel>,
}

/// One chart of a figure.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    /// Where the legend goes: the corner the curves leave empty.
    pub legend: Corner,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Corner {
    UpperLeft,
    UpperRight,
    LowerRight,
}

#[derive(Debug, Clone)]
pub struct Axis {
    pub label: String,
    pub log: bool,
    /// Linear axes start at zero (else at the smallest value); log axes never do.
    pub from_zero: bool,
    /// Fixed bounds instead of the data's.
    pub bounds: Option<(f64, f64)>,
}

impl Axis {
    pub fn linear(label: impl Into<String>) -> Axis {
        Axis {
            label: label.into(),
            log: false,
            from_zero: true,
            bounds: None,
        }
    }

    /// A log axis when `series` span more than a factor of 20 on it (`dim` 0: x, 1: y), else
    /// a linear one from zero: a log axis over a narrow span shows hardly any ticks. The label
    /// says which.
    pub fn log_if_wide(label: impl Into<String>, series: &[Series], dim: usize) -> Axis {
        let values = series
            .iter()
            .flat_map(|s| &s.points)
            .map(|p| if dim == 0 { p.0 } else { p.1 });
        let positive = values.filter(|v| v.is_finite() && *v > 0.0);
        let (low, high) = positive.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let label = label.into();
        if high / low > 20.0 {
            Axis::log(format!("{label}, log scale"))
        } else {
            Axis::linear(label)
        }
    }

    pub fn log(label: impl Into<String>) -> Axis {
        Axis {
            log: true,
            from_zero: false,
            ..Axis::linear(label)
        }
    }
}

/// A line through points, in the order given.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
    /// Reference lines (the floor, the offered load) are dashed and have no markers.
    pub dashed: bool,
    /// Circles on the points (sweeps: each point is one run).
    pub markers: bool,
}

/// Colours of the servers, in the order they are named (the first is usually Confab).
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Reference lines.
pub const GRAY: RGBColor = RGBColor(110, 110, 110);

/// The colour of the `index`th server.
pub fn color(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

/// `color` lightened towards white by `amount` (0 = unchanged, 1 = white): one server's runs
/// at several rates.
pub fn shade(color: RGBColor, amount: f64) -> RGBColor {
    let amount = amount.clamp(0.0, 1.0);
    let mix = |c: u8| (f64::from(c) + (255.0 - f64::from(c)) * amount).round() as u8;
    RGBColor(mix(color.0), mix(color.1), mix(color.2))
}

const PANEL_WIDTH: u32 = 640;
const HEIGHT: u32 = 480;

/// The figure as SVG text.
pub fn render(figure: &Figure) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let panels = u32::try_from(figure.panels.len().max(1)).unwrap_or(1);
        let root =
            SVGBackend::with_string(&mut svg, (PANEL_WIDTH * panels, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let root = root
            .titled(&figure.caption, ("sans-serif", 20))
            .map_err(drawing)?;
        let areas = root.split_evenly((1, figure.panels.len().max(1)));
        for (panel, area) in figure.panels.iter().zip(&areas) {
            draw_panel(panel, area)?;
        }
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

/// plotters' errors borrow nothing but are not all `Sync`: keep their text.
fn drawing(err: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("cannot draw the plot: {err}")
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Picks the coordinate types for the panel's axes (linear or log each).
fn draw_panel(panel: &Panel, area: &Area) -> anyhow::Result<()> {
    let (x, y) = (range(&panel.x, panel, 0), range(&panel.y, panel, 1));
    match (panel.x.log, panel.y.log) {
        (false, false) => draw_on(panel, area, x.0..x.1, y.0..y.1),
        (true, false) => draw_on(panel, area, (x.0..x.1).log_scale(), y.0..y.1),
        (false, true) => draw_on(panel, area, x.0..x.1, (y.0..y.1).log_scale()),
        (true, true) => draw_on(panel, area, (x.0..x.1).log_scale(), (y.0..y.1).log_scale()),
    }
}

fn draw_on<X, Y>(panel: &Panel, area: &Area, x: X, y: Y) -> anyhow::Result<()>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc(panel.x.label.as_str())
        .y_desc(panel.y.label.as_str())
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(drawing)?;
    for series in &panel.series {
        let points = plottable(series, panel);
        let color = series.color;
        if series.dashed {
            let style = color.stroke_width(2);
            chart
                .draw_series(DashedLineSeries::new(points, 8, 5, style))
                .map_err(drawing)?
                .label(series.name.as_str())
                .legend(move |(x, y)| {
                    DashedPathElement::new(vec![(x, y), (x + 24, y)], 5, 3, style)
                });
        } else {
            let size = if series.markers { 3 } else { 0 };
            chart
                .draw_series(
                    LineSeries::new(points, color.filled().stroke_width(2)).point_size(size),
                )
                .map_err(drawing)?
                .label(series.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
                });
        }
    }
    chart
        .configure_series_labels()
        .position(match panel.legend {
            Corner::UpperLeft => SeriesLabelPosition::UpperLeft,
            Corner::UpperRight => SeriesLabelPosition::UpperRight,
            Corner::LowerRight => SeriesLabelPosition::LowerRight,
        })
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(drawing)?;
    Ok(())
}

/// The points of `series` that its panel's axes can show (finite; positive on a log axis).
fn plottable(series: &Series, panel: &Panel) -> Vec<(f64, f64)> {
    let fits = |v: f64, axis: &Axis| v.is_finite() && (!axis.log || v > 0.0);
    series
        .points
        .iter()
        .copied()
        .filter(|&(x, y)| fits(x, &panel.x) && fits(y, &panel.y))
        .collect()
}

/// The bounds of one axis (`dim` 0: x, 1: y): fixed, or the data's with some room.
fn range(axis: &Axis, panel: &Panel, dim: usize) -> (f64, f64) {
    if let Some(bounds) = axis.bounds {
        return bounds;
    }
    let values = panel
        .series
        .iter()
        .flat_map(|s| plottable(s, panel))
        .map(|p| if dim == 0 { p.0 } else { p.1 });
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !low.is_finite() || !high.is_finite() {
        return if axis.log { (0.1, 10.0) } else { (0.0, 1.0) };
    }
    if axis.log {
        return (low / 1.5, high * 1.5);
    }
    let low = if axis.from_zero { low.min(0.0) } else { low };
    let span = (high - low).max(high.abs() * 0.1).max(1e-9);
    let pad = span * 0.08;
    let low = if axis.from_zero && low >= 0.0 {
        low
    } else {
        low - pad
    };
    (low, high + pad)
}

/// A short tick label: 100k, 2.5M, 0.25, 12.
pub fn tick(value: f64) -> String {
    let abs = value.abs();
    let (scaled, suffix) = if abs >= 1e6 {
        (value / 1e6, "M")
    } else if abs >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let digits = if scaled.abs() >= 100.0 || scaled == scaled.round() {
        0
    } else if scaled.abs() >= 10.0 {
        1
    } else if scaled.abs() >= 0.1 {
        2
    } else {
        3
    };
    let text = format!("{scaled:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    format!("{text}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short() {
        let ticks: Vec<String> = [
            0.0, 0.005, 0.25, 1.5, 12.0, 12.5, 250.0, 2_500.0, 100_000.0, 2.5e6,
        ]
        .into_iter()
        .map(tick)
        .collect();
        assert_eq!(
            ticks,
            [
                "0", "0.005", "0.25", "1.5", "12", "12.5", "250", "2.5k", "100k", "2.5M"
            ]
        );
    }

    #[test]
    fn ranges_leave_room_and_log_axes_skip_zero() {
        let panel = Panel {
            title: "t".into(),
            x: Axis::log("x"),
            y: Axis::linear("y"),
            series: vec![Series {
                name: "s".into(),
                color: color(0),
                points: vec![(0.0, 5.0), (1.0, 10.0), (100.0, 20.0), (f64::NAN, 1.0)],
                dashed: false,
                markers: true,
            }],
            legend: Corner::UpperLeft,
        };
        assert_eq!(plottable(&panel.series[0], &panel).len(), 2);
        let (x0, x1) = range(&panel.x, &panel, 0);
        assert!(x0 > 0.0 && x0 < 1.0 && x1 > 100.0, "{x0}..{x1}");
        let (y0, y1) = range(&panel.y, &panel, 1);
        assert!(y0 == 0.0 && y1 > 20.0, "{y0}..{y1}");
        assert_eq!(shade(RGBColor(0, 100, 255), 1.0), RGBColor(255, 255, 255));
        assert!(Axis::log_if_wide("x", &panel.series, 0).log, "1 to 100");
        assert!(!Axis::log_if_wide("y", &panel.series, 1).log, "5 to 20");
    }
}
