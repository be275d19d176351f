//! Standalone SVG plots: line and scatter charts, histograms and bar charts.
//!
//! Every plot renders to a complete `<svg>` document (with `xmlns` and a `viewBox`, so it scales
//! when embedded in HTML and opens on its own in a browser). The output is deterministic —
//! the same input gives byte-identical SVG — so plots can be diffed and tested.
//!
//! Input numbers are taken as they come from experiments: non-finite values (NaN, ±inf) are
//! skipped rather than allowed to poison an axis range, empty inputs draw an empty frame, and
//! degenerate ranges (a single point, all-equal values) are padded. Nothing here panics on data.

use crate::escape;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// Series colours, in the order series get them: the Okabe–Ito palette, chosen because its
/// colours stay distinguishable under the common forms of colour blindness and in greyscale
/// print. Yellow comes last because it is faint on white. Series past the eighth reuse the
/// colours with a dashed line and a different marker shape.
pub const PALETTE: [&str; 8] = [
    "#0072B2", // blue
    "#E69F00", // orange
    "#009E73", // bluish green
    "#D55E00", // vermillion
    "#CC79A7", // reddish purple
    "#56B4E9", // sky blue
    "#000000", // black
    "#F0E442", // yellow
];

/// Colour for series `i` (wraps around the [`PALETTE`]).
pub fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// The font stack: DejaVu Sans is on most Linux systems (and what rasterisers there fall back
/// to), the others cover macOS and Windows viewers.
const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
const AXIS_COLOR: &str = "#333333";
const GRID_COLOR: &str = "#e3e3e3";
const MUTED_TEXT: &str = "#555555";

/// One data point. `label` is drawn next to the marker (for labelled scatters such as roles on
/// PC1×PC2); `y_err` draws an error bar from `lo` to `hi` — absolute y values such as the
/// ends of a confidence interval, not distances from `y`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub label: Option<String>,
    pub y_err: Option<(f64, f64)>,
}

impl Point {
    /// A plain point without label or error bar.
    pub fn new(x: f64, y: f64) -> Self {
        Point {
            x,
            y,
            label: None,
            y_err: None,
        }
    }

    /// Adds a text label drawn next to the marker.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Adds an error bar spanning the absolute y values `lo..hi`.
    pub fn with_err(mut self, lo: f64, hi: f64) -> Self {
        self.y_err = Some((lo, hi));
        self
    }

    fn is_finite(&self) -> bool {
        self.x.is_finite() && self.y.is_finite()
    }
}

/// How a series is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeriesKind {
    /// Points joined in the given order; a non-finite point breaks the line (a visible gap
    /// rather than a silent jump over missing data).
    #[default]
    Line,
    /// Markers only (scatter).
    Markers,
    /// Both.
    LineMarkers,
}

/// A named sequence of points drawn in one colour.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub label: String,
    pub points: Vec<Point>,
    pub kind: SeriesKind,
}

impl Series {
    /// A series of any kind.
    pub fn new(label: impl Into<String>, kind: SeriesKind, points: Vec<Point>) -> Self {
        Series {
            label: label.into(),
            points,
            kind,
        }
    }

    /// A line through `(x, y)` pairs.
    pub fn line(label: impl Into<String>, xy: impl IntoIterator<Item = (f64, f64)>) -> Self {
        Self::new(label, SeriesKind::Line, to_points(xy))
    }

    /// A scatter of `(x, y)` pairs.
    pub fn markers(label: impl Into<String>, xy: impl IntoIterator<Item = (f64, f64)>) -> Self {
        Self::new(label, SeriesKind::Markers, to_points(xy))
    }

    /// A line with a marker at each `(x, y)` pair (sweeps with few, meaningful x values).
    pub fn line_markers(
        label: impl Into<String>,
        xy: impl IntoIterator<Item = (f64, f64)>,
    ) -> Self {
        Self::new(label, SeriesKind::LineMarkers, to_points(xy))
    }
}

fn to_points(xy: impl IntoIterator<Item = (f64, f64)>) -> Vec<Point> {
    xy.into_iter().map(|(x, y)| Point::new(x, y)).collect()
}

/// A line or scatter chart with shared axes.
///
/// Build it with [`Chart::new`] and the `with_*` methods, or as a struct literal with
/// `..Default::default()`. Without an explicit range an axis spans the data (including error
/// bars and reference lines) widened to round tick values; with one, it spans exactly that
/// range and whatever falls outside is clipped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
    /// Horizontal reference lines at `y` with a label, e.g. `(80.0, "coherence 80")`.
    pub hlines: Vec<(f64, String)>,
    /// Draw each series' least-squares line `y = a + b·x` (dashed, in the series' colour) and
    /// give its Pearson r in the legend — the usual summary of "does the trait score follow the
    /// projection".
    pub fit_line: bool,
}

impl Chart {
    /// An empty chart with a title and axis labels.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Chart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            ..Default::default()
        }
    }

    /// Adds a series.
    pub fn with_series(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    /// Fixes the x axis to `lo..hi`.
    pub fn with_x_range(mut self, lo: f64, hi: f64) -> Self {
        self.x_range = Some((lo, hi));
        self
    }

    /// Fixes the y axis to `lo..hi` (e.g. `0..100` for judge scores, so sweeps compare).
    pub fn with_y_range(mut self, lo: f64, hi: f64) -> Self {
        self.y_range = Some((lo, hi));
        self
    }

    /// Adds a labelled horizontal reference line.
    pub fn with_hline(mut self, y: f64, label: impl Into<String>) -> Self {
        self.hlines.push((y, label.into()));
        self
    }

    /// Turns the least-squares fit lines on or off.
    pub fn with_fit_line(mut self, on: bool) -> Self {
        self.fit_line = on;
        self
    }

    /// Renders the chart as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        render_chart(self)
    }
}

/// A histogram of `values` in `bins` equal-width bins spanning the finite values.
///
/// `bins == 0` picks a count by Sturges' rule (`⌈log2 n⌉ + 1`); counts above 1000 are capped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub title: String,
    pub x_label: String,
    pub values: Vec<f64>,
    pub bins: usize,
}

/// Bin edges and counts of a [`Histogram`]: bin `i` is `[edges[i], edges[i+1])`, the last one
/// closed on the right so the maximum is counted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bins {
    pub edges: Vec<f64>,
    pub counts: Vec<usize>,
    /// Values left out because they were NaN or infinite.
    pub skipped: usize,
}

impl Histogram {
    /// A histogram of `values` with `bins` bins (0 = automatic).
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        values: Vec<f64>,
        bins: usize,
    ) -> Self {
        Histogram {
            title: title.into(),
            x_label: x_label.into(),
            values,
            bins,
        }
    }

    /// The bin edges and counts that [`Histogram::to_svg`] draws, for callers that also want
    /// them in a table. Counts sum to the number of finite values.
    pub fn bins(&self) -> Bins {
        let finite: Vec<f64> = self
            .values
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        let skipped = self.values.len() - finite.len();
        let n_bins = match self.bins {
            0 => ((finite.len().max(1) as f64).log2().ceil() as usize + 1).max(1),
            b => b,
        }
        .min(1000);
        let (lo, hi) = pad_range(min_max(finite.iter().copied()).unwrap_or((0.0, 1.0)));
        let width = (hi - lo) / n_bins as f64;
        let edges: Vec<f64> = (0..=n_bins)
            .map(|i| {
                if i == n_bins {
                    hi
                } else {
                    lo + i as f64 * width
                }
            })
            .collect();
        let mut counts = vec![0usize; n_bins];
        for v in finite {
            let i = if width > 0.0 && width.is_finite() {
                (((v - lo) / width).floor().max(0.0) as usize).min(n_bins - 1)
            } else {
                0
            };
            counts[i] += 1;
        }
        Bins {
            edges,
            counts,
            skipped,
        }
    }

    /// Renders the histogram as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        render_histogram(self)
    }
}

/// Bars with a category label and a value each, drawn in the given order (sort first if the
/// order should mean something). Positive values are blue, negative ones orange, both measured
/// from zero.
///
/// `horizontal` puts one bar per row with its label on the left and its value on the right:
/// the layout for long lists (200+ roles sorted by projection), whose height grows with the
/// number of bars so every label stays readable. Vertical bars suit a handful of categories.
///
/// `errors` (optional, one per bar) draws an interval across each bar's end, e.g. the 95 %
/// interval of the value the bar shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BarChart {
    pub title: String,
    pub value_label: String,
    pub bars: Vec<(String, f64)>,
    pub horizontal: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Option<(f64, f64)>>,
}

impl BarChart {
    /// A bar chart; see the type's documentation for the layouts.
    pub fn new(
        title: impl Into<String>,
        value_label: impl Into<String>,
        bars: Vec<(String, f64)>,
        horizontal: bool,
    ) -> Self {
        BarChart {
            title: title.into(),
            value_label: value_label.into(),
            bars,
            horizontal,
            errors: Vec::new(),
        }
    }

    /// Adds an interval (lo, hi) in the value's units to each bar (`None`: none for that bar).
    pub fn with_errors(mut self, errors: Vec<Option<(f64, f64)>>) -> Self {
        self.errors = errors;
        self
    }

    /// Bar `i`'s interval, when it has a finite one.
    fn error(&self, i: usize) -> Option<(f64, f64)> {
        self.errors
            .get(i)
            .copied()
            .flatten()
            .filter(|(lo, hi)| lo.is_finite() && hi.is_finite())
    }

    /// Renders the bar chart as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        if self.horizontal {
            render_hbars(self)
        } else {
            render_vbars(self)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// A least-squares line `y = intercept + slope·x` with the Pearson correlation `r` of the points
/// it was fitted to.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    pub slope: f64,
    pub intercept: f64,
    pub r: f64,
    /// Number of finite points used.
    pub n: usize,
}

/// Fits `y = a + b·x` by least squares to the finite points. `None` with fewer than two points
/// or when all x are equal (no line is defined). `r` is NaN when all y are equal (the line is
/// flat, the correlation undefined).
pub fn least_squares(points: &[Point]) -> Option<Fit> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.is_finite())
        .map(|p| (p.x, p.y))
        .collect();
    let n = pts.len();
    if n < 2 {
        return None;
    }
    // Two passes around the means: the one-pass sums lose everything to cancellation when the
    // values are large and close together (e.g. projections around 1e3 ± 0.01).
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n as f64;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n as f64;
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for &(x, y) in &pts {
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
        sxy += (x - mx) * (y - my);
    }
    if sxx <= 0.0 || !sxx.is_finite() {
        return None;
    }
    let slope = sxy / sxx;
    let r = if syy > 0.0 {
        (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
    } else {
        f64::NAN
    };
    Some(Fit {
        slope,
        intercept: my - slope * mx,
        r,
        n,
    })
}

// ---------------------------------------------------------------------------------------------
// Axes and ticks

/// Round tick values covering `lo..=hi`: about `target` steps of 1, 2 or 5 × 10^k, the first tick
/// at or below `lo` and the last at or above `hi` (e.g. `0..97` with 5 gives 0, 20, …, 100).
///
/// Axis ranges are widened to these ticks, so every axis starts and ends on a labelled round
/// number. A degenerate or non-finite range returns what can be drawn without panicking.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    if !(lo.is_finite() && hi.is_finite()) {
        return vec![];
    }
    if lo == hi {
        return vec![lo];
    }
    let step = nice_step(hi - lo, target);
    if !(step.is_finite() && step > 0.0) {
        return vec![lo, hi];
    }
    let k0 = (lo / step + 1e-9).floor();
    let k1 = (hi / step - 1e-9).ceil();
    ticks_from(k0, k1, step).unwrap_or_else(|| vec![lo, hi])
}

/// Round ticks strictly inside `lo..=hi` (for an axis whose range is fixed by the caller).
fn ticks_within(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let step = nice_step(hi - lo, target);
    if !(step.is_finite() && step > 0.0) {
        return vec![lo, hi];
    }
    let k0 = (lo / step - 1e-9).ceil();
    let k1 = (hi / step + 1e-9).floor();
    ticks_from(k0, k1, step).unwrap_or_else(|| vec![lo, hi])
}

fn ticks_from(k0: f64, k1: f64, step: f64) -> Option<Vec<f64>> {
    if !(k0.is_finite() && k1.is_finite()) || k1 - k0 > 1000.0 || k1 < k0 {
        return None;
    }
    // Multiplying an integer index (instead of adding steps) keeps 0.1·3 from becoming
    // 0.30000000000000004 in a label or drifting off the grid.
    Some(
        (0..=((k1 - k0) as i64))
            .map(|i| {
                let v = (k0 + i as f64) * step;
                if v.abs() < step * 1e-9 {
                    0.0
                } else {
                    v
                }
            })
            .collect(),
    )
}

/// The 1-2-5 step closest to `span / target`.
fn nice_step(span: f64, target: usize) -> f64 {
    let raw = span / target.max(1) as f64;
    if !(raw.is_finite() && raw > 0.0) {
        return f64::NAN;
    }
    let exp = raw.log10().floor();
    let base = 10f64.powf(exp);
    let f = raw / base;
    let nice = if f < 1.5 {
        1.0
    } else if f < 3.0 {
        2.0
    } else if f < 7.0 {
        5.0
    } else {
        10.0
    };
    nice * base
}

/// Formats a tick value with just the decimals its step needs ("0.25" for step 0.05, "100" for
/// step 20); very large or small magnitudes switch to exponent notation.
pub fn format_tick(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let step = if step.is_finite() && step > 0.0 {
        step
    } else {
        v.abs()
    };
    if v.abs() >= 1e7 || step < 1e-5 {
        let s = format!("{v:.3e}");
        // Trim "1.500e-5" to "1.5e-5".
        if let Some((m, e)) = s.split_once('e') {
            let m = if m.contains('.') {
                m.trim_end_matches('0').trim_end_matches('.')
            } else {
                m
            };
            return format!("{m}e{e}");
        }
        return s;
    }
    let decimals = (0..=8)
        .find(|&d| {
            let scaled = step * 10f64.powi(d);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(8) as usize;
    let s = format!("{v:.decimals$}");
    if s.trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        "0".into()
    } else {
        s
    }
}

/// Formats a data value for labels (bar values, bin edges): four significant digits.
fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let mag = v.abs().log10().floor() as i32;
    if !(-4..7).contains(&mag) {
        let s = format!("{v:.3e}");
        return s;
    }
    let decimals = (3 - mag).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((a, b)) => Some((a.min(v), b.max(v))),
        })
}

/// Widens an empty range (all values equal) so it can be drawn: by 10% of the value, or by 1
/// around zero.
fn pad_range((lo, hi): (f64, f64)) -> (f64, f64) {
    if hi > lo && (hi - lo).is_finite() {
        return (lo, hi);
    }
    if lo != hi {
        // Span overflows f64: fall back to a range that can be subdivided.
        return (lo / 2.0, hi / 2.0);
    }
    let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
    (lo - d, hi + d)
}

/// One axis: its drawn range and the ticks on it.
#[derive(Clone, Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    step: f64,
}

impl Axis {
    /// An axis for the finite `data`, or exactly `fixed` when that is a usable range.
    fn new(data: &[f64], fixed: Option<(f64, f64)>, target: usize) -> Axis {
        if let Some((a, b)) = fixed.filter(|(a, b)| a.is_finite() && b.is_finite()) {
            let (lo, hi) = pad_range((a.min(b), a.max(b)));
            return Axis::fixed(lo, hi, target);
        }
        let (lo, hi) = pad_range(min_max(data.iter().copied()).unwrap_or((0.0, 1.0)));
        let ticks = nice_ticks(lo, hi, target);
        match (ticks.first(), ticks.last()) {
            (Some(&a), Some(&b)) if b > a => Axis {
                lo: a,
                hi: b,
                step: ticks[1] - ticks[0],
                ticks,
            },
            _ => Axis::fixed(lo, hi, target),
        }
    }

    fn fixed(lo: f64, hi: f64, target: usize) -> Axis {
        let ticks = ticks_within(lo, hi, target);
        let step = if ticks.len() >= 2 {
            ticks[1] - ticks[0]
        } else {
            hi - lo
        };
        Axis {
            lo,
            hi,
            ticks,
            step,
        }
    }

    fn label(&self, v: f64) -> String {
        format_tick(v, self.step)
    }

    fn contains(&self, v: f64) -> bool {
        let eps = (self.hi - self.lo) * 1e-9;
        v >= self.lo - eps && v <= self.hi + eps
    }
}

/// The plot area in pixels and the data ranges it shows.
#[derive(Clone, Debug)]
struct Frame {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    x: Axis,
    y: Axis,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        self.left + (x - self.x.lo) / (self.x.hi - self.x.lo) * self.width
    }
    fn py(&self, y: f64) -> f64 {
        self.top + self.height - (y - self.y.lo) / (self.y.hi - self.y.lo) * self.height
    }
    fn right(&self) -> f64 {
        self.left + self.width
    }
    fn bottom(&self) -> f64 {
        self.top + self.height
    }
    fn inside(&self, px: f64, py: f64) -> bool {
        let e = 0.01;
        px >= self.left - e
            && px <= self.right() + e
            && py >= self.top - e
            && py <= self.bottom() + e
    }

    /// Clips the segment (a → b, pixels) to the plot area (Liang–Barsky), so lines leaving a
    /// fixed range stop at its edge instead of being drawn over the margins.
    fn clip(&self, a: (f64, f64), b: (f64, f64)) -> Option<((f64, f64), (f64, f64))> {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let (mut t0, mut t1) = (0.0f64, 1.0f64);
        for (p, q) in [
            (-dx, a.0 - self.left),
            (dx, self.right() - a.0),
            (-dy, a.1 - self.top),
            (dy, self.bottom() - a.1),
        ] {
            if p == 0.0 {
                if q < 0.0 {
                    return None;
                }
            } else {
                let t = q / p;
                if p < 0.0 {
                    t0 = t0.max(t);
                } else {
                    t1 = t1.min(t);
                }
            }
        }
        if t0 > t1 {
            return None;
        }
        Some((
            (a.0 + t0 * dx, a.1 + t0 * dy),
            (a.0 + t1 * dx, a.1 + t1 * dy),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Low-level drawing

/// Formats a pixel coordinate with at most two decimals (enough for any screen, short files).
fn n(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// Rough width of `text` in pixels at `size`: layout has no font metrics, and DejaVu Sans
/// averages a little over 0.6 em per character.
fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * 0.62
}

/// Shortens `text` to `max` characters with an ellipsis (the full text goes into a tooltip).
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

struct Svg {
    out: String,
}

impl Svg {
    fn begin(width: f64, height: f64, title: &str) -> Svg {
        let mut out = String::with_capacity(16 * 1024);
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONT}" font-size="12" role="img">"#,
            w = n(width),
            h = n(height),
        );
        // <title> names the image for screen readers and shows as a tooltip.
        let _ = write!(out, "<title>{}</title>", escape(title));
        let _ = write!(
            out,
            r##"<rect class="background" x="0" y="0" width="{}" height="{}" fill="#ffffff"/>"##,
            n(width),
            n(height)
        );
        let mut svg = Svg { out };
        if !title.is_empty() {
            svg.text(
                width / 2.0,
                26.0,
                title,
                "middle",
                r#"font-size="16" font-weight="bold" class="title""#,
            );
        }
        svg
    }

    fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }

    /// An interval from `a` to `b` with a short cap across each end.
    fn whisker(&mut self, a: (f64, f64), b: (f64, f64)) {
        let attrs = format!(r#"class="errbar" stroke="{AXIS_COLOR}" stroke-width="1.2""#);
        self.line(a, b, &attrs);
        // The caps stand across the interval: vertical for a horizontal one, and so on.
        let (dx, dy) = if a.1 == b.1 { (0.0, 4.0) } else { (4.0, 0.0) };
        for end in [a, b] {
            self.line((end.0 - dx, end.1 - dy), (end.0 + dx, end.1 + dy), &attrs);
        }
    }

    fn line(&mut self, a: (f64, f64), b: (f64, f64), attrs: &str) {
        let _ = write!(
            self.out,
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}" {attrs}/>"#,
            n(a.0),
            n(a.1),
            n(b.0),
            n(b.1)
        );
    }

    fn text(&mut self, x: f64, y: f64, text: &str, anchor: &str, attrs: &str) {
        let _ = write!(
            self.out,
            r#"<text x="{}" y="{}" text-anchor="{anchor}" {attrs}>{}</text>"#,
            n(x),
            n(y),
            escape(text)
        );
    }

    /// A marker of one of five shapes centred on (x, y): the shape varies with the series so
    /// that series stay apart in greyscale and for readers who cannot tell the colours apart.
    fn marker(&mut self, shape: usize, x: f64, y: f64, color: &str, extra: &str) {
        let r = 3.8;
        let style = format!(r##"fill="{color}" stroke="#ffffff" stroke-width="0.8""##);
        match shape % 5 {
            0 => {
                let _ = write!(
                    self.out,
                    r#"<circle class="marker" cx="{}" cy="{}" r="{}" {style}>{extra}</circle>"#,
                    n(x),
                    n(y),
                    n(r)
                );
            }
            1 => {
                let _ = write!(
                    self.out,
                    r#"<rect class="marker" x="{}" y="{}" width="{}" height="{}" {style}>{extra}</rect>"#,
                    n(x - r * 0.9),
                    n(y - r * 0.9),
                    n(r * 1.8),
                    n(r * 1.8)
                );
            }
            s => {
                let pts: Vec<(f64, f64)> = match s {
                    2 => vec![(0.0, -1.25), (1.1, 0.75), (-1.1, 0.75)],
                    3 => vec![(0.0, -1.3), (1.1, 0.0), (0.0, 1.3), (-1.1, 0.0)],
                    _ => vec![(0.0, 1.25), (1.1, -0.75), (-1.1, -0.75)],
                };
                let pts: Vec<String> = pts
                    .iter()
                    .map(|(dx, dy)| format!("{},{}", n(x + dx * r), n(y + dy * r)))
                    .collect();
                let _ = write!(
                    self.out,
                    r#"<polygon class="marker" points="{}" {style}>{extra}</polygon>"#,
                    pts.join(" ")
                );
            }
        }
    }

    /// Axis titles: x centred below the plot, y rotated along the left edge.
    fn axis_labels(&mut self, f: &Frame, x_label: &str, y_label: &str, x_y: f64) {
        if !x_label.is_empty() {
            self.text(
                f.left + f.width / 2.0,
                x_y,
                x_label,
                "middle",
                r#"font-size="13" class="x-label""#,
            );
        }
        if !y_label.is_empty() {
            let (x, y) = (16.0, f.top + f.height / 2.0);
            let _ = write!(
                self.out,
                r#"<text x="{}" y="{}" text-anchor="middle" font-size="13" class="y-label" transform="rotate(-90 {} {})">{}</text>"#,
                n(x),
                n(y),
                n(x),
                n(y),
                escape(y_label)
            );
        }
    }

    /// Grid, ticks, tick labels and the two axis lines of a frame.
    fn axes(&mut self, f: &Frame, x_ticks: bool) {
        self.out.push_str(r#"<g class="grid">"#);
        for &t in &f.y.ticks {
            let y = f.py(t);
            self.line(
                (f.left, y),
                (f.right(), y),
                &format!(r#"stroke="{GRID_COLOR}" stroke-width="1""#),
            );
        }
        if x_ticks {
            for &t in &f.x.ticks {
                let x = f.px(t);
                self.line(
                    (x, f.top),
                    (x, f.bottom()),
                    &format!(r#"stroke="{GRID_COLOR}" stroke-width="1""#),
                );
            }
        }
        self.out.push_str("</g>");
        self.out.push_str(r#"<g class="ticks">"#);
        for &t in &f.y.ticks {
            let y = f.py(t);
            self.line(
                (f.left - 5.0, y),
                (f.left, y),
                &format!(r#"stroke="{AXIS_COLOR}""#),
            );
            self.text(
                f.left - 8.0,
                y + 4.0,
                &f.y.label(t),
                "end",
                r#"class="y-tick""#,
            );
        }
        if x_ticks {
            for &t in &f.x.ticks {
                let x = f.px(t);
                self.line(
                    (x, f.bottom()),
                    (x, f.bottom() + 5.0),
                    &format!(r#"stroke="{AXIS_COLOR}""#),
                );
                self.text(
                    x,
                    f.bottom() + 19.0,
                    &f.x.label(t),
                    "middle",
                    r#"class="x-tick""#,
                );
            }
        }
        self.out.push_str("</g>");
        let _ = write!(
            self.out,
            r#"<line class="axis x-axis" x1="{l}" y1="{b}" x2="{r}" y2="{b}" stroke="{AXIS_COLOR}" stroke-width="1.2"/>"#,
            l = n(f.left),
            r = n(f.right()),
            b = n(f.bottom()),
        );
        let _ = write!(
            self.out,
            r#"<line class="axis y-axis" x1="{l}" y1="{t}" x2="{l}" y2="{b}" stroke="{AXIS_COLOR}" stroke-width="1.2"/>"#,
            l = n(f.left),
            t = n(f.top),
            b = n(f.bottom()),
        );
    }

    /// A note in the bottom-left corner, for what the plot had to leave out.
    fn footnote(&mut self, height: f64, text: &str) {
        self.text(
            8.0,
            height - 6.0,
            text,
            "start",
            &format!(r#"font-size="10" fill="{MUTED_TEXT}" class="note""#),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Line and scatter charts

/// Dash pattern for series `i`: solid for the first round of colours, dashed after, so two
/// series never look the same.
fn dash(i: usize) -> &'static str {
    match (i / PALETTE.len()) % 3 {
        0 => "",
        1 => r#" stroke-dasharray="6 3""#,
        _ => r#" stroke-dasharray="2 3""#,
    }
}

struct LegendEntry {
    text: String,
    color: &'static str,
    line: Option<&'static str>,
    marker: Option<usize>,
}

fn render_chart(c: &Chart) -> String {
    // Ranges cover every finite point, error bar end and reference line.
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    let mut skipped = 0usize;
    for s in &c.series {
        for p in &s.points {
            if !p.is_finite() {
                skipped += 1;
                continue;
            }
            xs.push(p.x);
            ys.push(p.y);
            if let Some((lo, hi)) = p.y_err {
                ys.extend([lo, hi].into_iter().filter(|v| v.is_finite()));
            }
        }
    }
    ys.extend(c.hlines.iter().map(|h| h.0).filter(|v| v.is_finite()));
    let x = Axis::new(&xs, c.x_range, 6);
    let y = Axis::new(&ys, c.y_range, 6);

    let fits: Vec<Option<Fit>> = c
        .series
        .iter()
        .map(|s| {
            if c.fit_line {
                least_squares(&s.points)
            } else {
                None
            }
        })
        .collect();

    let mut legend = Vec::new();
    for (i, s) in c.series.iter().enumerate() {
        let name = if s.label.is_empty() {
            format!("series {}", i + 1)
        } else {
            s.label.clone()
        };
        let (line, marker) = match s.kind {
            SeriesKind::Line => (Some(dash(i)), None),
            SeriesKind::Markers => (None, Some(i)),
            SeriesKind::LineMarkers => (Some(dash(i)), Some(i)),
        };
        legend.push(LegendEntry {
            text: name.clone(),
            color: color(i),
            line,
            marker,
        });
        if let Some(f) = fits[i] {
            let r = if f.r.is_nan() {
                "r undefined".to_string()
            } else {
                format!("r = {:.3}", f.r)
            };
            let text = if c.series.len() > 1 {
                format!("{name}: fit, {r}")
            } else {
                format!("least-squares fit, {r}")
            };
            legend.push(LegendEntry {
                text,
                color: color(i),
                line: Some(r#" stroke-dasharray="7 4""#),
                marker: None,
            });
        }
    }
    let show_legend = c.series.len() > 1 || fits.iter().any(|f| f.is_some());
    let legend_texts: Vec<String> = legend.iter().map(|e| truncate(&e.text, 40)).collect();
    let legend_w = if show_legend {
        legend_texts
            .iter()
            .map(|t| text_width(t, 12.0))
            .fold(0.0, f64::max)
            + 52.0
    } else {
        0.0
    };

    let tick_w = y
        .ticks
        .iter()
        .map(|&t| text_width(&y.label(t), 12.0))
        .fold(0.0, f64::max);
    let left = (tick_w + 40.0).max(58.0);
    let top = if c.title.is_empty() { 20.0 } else { 44.0 };
    let bottom = 58.0;
    let width = 720.0 + legend_w;
    // A long legend makes the chart taller rather than running off its bottom.
    let legend_h = if show_legend {
        legend.len() as f64 * 20.0 + 16.0
    } else {
        0.0
    };
    let height = f64::max(440.0, top + bottom + legend_h);
    let frame = Frame {
        left,
        top,
        width: width - left - 24.0 - legend_w,
        height: height - top - bottom,
        x,
        y,
    };

    let mut svg = Svg::begin(width, height, &c.title);
    svg.axes(&frame, true);
    svg.axis_labels(&frame, &c.x_label, &c.y_label, height - 16.0);

    // Reference lines under the data, labelled at the right end just above the line.
    for (hy, label) in &c.hlines {
        if !hy.is_finite() || !frame.y.contains(*hy) {
            continue;
        }
        let py = frame.py(*hy);
        svg.line(
            (frame.left, py),
            (frame.right(), py),
            &format!(
                r#"class="hline" stroke="{MUTED_TEXT}" stroke-width="1.2" stroke-dasharray="5 4""#
            ),
        );
        if !label.is_empty() {
            svg.text(
                frame.right() - 4.0,
                py - 4.0,
                label,
                "end",
                &format!(r#"font-size="11" fill="{MUTED_TEXT}" class="hline-label""#),
            );
        }
    }

    for (i, s) in c.series.iter().enumerate() {
        let col = color(i);
        let _ = write!(svg.out, r#"<g class="series" data-series="{i}">"#);
        // Error bars first so markers sit on top of them.
        for p in s.points.iter().filter(|p| p.is_finite()) {
            if let Some((lo, hi)) = p.y_err {
                if !(lo.is_finite() && hi.is_finite()) {
                    continue;
                }
                let px = frame.px(p.x);
                let (a, b) = ((px, frame.py(lo)), (px, frame.py(hi)));
                if let Some((a, b)) = frame.clip(a, b) {
                    let attrs = format!(r#"class="errbar" stroke="{col}" stroke-width="1.2""#);
                    svg.line(a, b, &attrs);
                    for (cap, yv) in [(a, lo), (b, hi)] {
                        if frame.y.contains(yv) {
                            svg.line((cap.0 - 3.5, cap.1), (cap.0 + 3.5, cap.1), &attrs);
                        }
                    }
                }
            }
        }
        if matches!(s.kind, SeriesKind::Line | SeriesKind::LineMarkers) {
            let path = polyline_path(&frame, &s.points);
            if !path.is_empty() {
                let _ = write!(
                    svg.out,
                    r#"<path class="line" d="{path}" fill="none" stroke="{col}" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"{}/>"#,
                    dash(i)
                );
            }
        }
        if let Some(f) = fits[i] {
            let (x0, x1) = min_max(s.points.iter().filter(|p| p.is_finite()).map(|p| p.x))
                .unwrap_or((frame.x.lo, frame.x.hi));
            let a = (frame.px(x0), frame.py(f.intercept + f.slope * x0));
            let b = (frame.px(x1), frame.py(f.intercept + f.slope * x1));
            if let Some((a, b)) = frame.clip(a, b) {
                svg.line(
                    a,
                    b,
                    &format!(
                        r#"class="fit" data-r="{}" data-slope="{}" data-intercept="{}" stroke="{col}" stroke-width="1.6" stroke-dasharray="7 4""#,
                        f.r, f.slope, f.intercept
                    ),
                );
            }
        }
        let draw_markers = matches!(s.kind, SeriesKind::Markers | SeriesKind::LineMarkers);
        for p in s.points.iter().filter(|p| p.is_finite()) {
            let (px, py) = (frame.px(p.x), frame.py(p.y));
            if !frame.inside(px, py) {
                continue;
            }
            let tip = match &p.label {
                Some(l) => format!("<title>{}</title>", escape(l)),
                None => String::new(),
            };
            if draw_markers {
                svg.marker(i, px, py, col, &tip);
            }
            if let Some(label) = &p.label {
                // Labels go right of the marker, or left of it where they would run off the
                // plot's right edge.
                let text = truncate(label, 40);
                let flip = px + 6.0 + text_width(&text, 11.0) > frame.right() + 16.0;
                let (tx, anchor) = if flip {
                    (px - 6.0, "end")
                } else {
                    (px + 6.0, "start")
                };
                svg.text(
                    tx,
                    py - 5.0,
                    &text,
                    anchor,
                    r##"font-size="11" fill="#222222" class="point-label""##,
                );
            }
        }
        svg.out.push_str("</g>");
    }

    if show_legend {
        let lx = frame.right() + 16.0;
        let mut ly = frame.top + 8.0;
        svg.out.push_str(r#"<g class="legend">"#);
        for (e, text) in legend.iter().zip(&legend_texts) {
            if let Some(d) = e.line {
                svg.line(
                    (lx, ly),
                    (lx + 26.0, ly),
                    &format!(r#"stroke="{}" stroke-width="2"{d}"#, e.color),
                );
            }
            if let Some(shape) = e.marker {
                svg.marker(shape, lx + 13.0, ly, e.color, "");
            }
            let tip = if text != &e.text {
                format!("<title>{}</title>", escape(&e.text))
            } else {
                String::new()
            };
            let _ = write!(
                svg.out,
                r#"<text x="{}" y="{}" text-anchor="start" class="legend-label">{}{tip}</text>"#,
                n(lx + 34.0),
                n(ly + 4.0),
                escape(text)
            );
            ly += 20.0;
        }
        svg.out.push_str("</g>");
    }
    if skipped > 0 {
        svg.footnote(height, &format!("{skipped} non-finite point(s) not drawn"));
    }
    svg.finish()
}

/// The SVG path of a series' line, clipped to the frame and broken at non-finite points.
fn polyline_path(frame: &Frame, points: &[Point]) -> String {
    let mut d = String::new();
    let mut pen: Option<(f64, f64)> = None; // where the current subpath ends
    let mut prev: Option<(f64, f64)> = None; // previous finite point, in pixels
    for p in points {
        if !p.is_finite() {
            prev = None;
            continue;
        }
        let cur = (frame.px(p.x), frame.py(p.y));
        if let Some(a) = prev {
            if let Some((s, e)) = frame.clip(a, cur) {
                let connected =
                    pen.is_some_and(|q| (q.0 - s.0).abs() < 1e-6 && (q.1 - s.1).abs() < 1e-6);
                if !connected {
                    let _ = write!(d, "M{} {}", n(s.0), n(s.1));
                }
                let _ = write!(d, "L{} {}", n(e.0), n(e.1));
                pen = Some(e);
            } else {
                pen = None;
            }
        }
        prev = Some(cur);
    }
    d
}

// ---------------------------------------------------------------------------------------------
// Histograms

fn render_histogram(h: &Histogram) -> String {
    let bins = h.bins();
    let total: usize = bins.counts.iter().sum();
    let lo = bins.edges[0];
    let hi = *bins.edges.last().unwrap_or(&1.0);
    let max_count = bins.counts.iter().copied().max().unwrap_or(0).max(1);
    // Counts are integers: never a tick at 0.5.
    let mut y = Axis::new(&[0.0, max_count as f64], None, 5);
    if y.step < 1.0 {
        y = Axis {
            lo: 0.0,
            hi: max_count as f64,
            ticks: (0..=max_count).map(|c| c as f64).collect(),
            step: 1.0,
        };
    }
    let x = Axis::fixed(lo, hi, 7);
    let tick_w = y
        .ticks
        .iter()
        .map(|&t| text_width(&y.label(t), 12.0))
        .fold(0.0, f64::max);
    let left = (tick_w + 40.0).max(58.0);
    let top = if h.title.is_empty() { 20.0 } else { 44.0 };
    let (width, height) = (720.0, 400.0);
    let frame = Frame {
        left,
        top,
        width: width - left - 24.0,
        height: height - top - 58.0,
        x,
        y,
    };
    let mut svg = Svg::begin(width, height, &h.title);
    svg.axes(&frame, true);
    svg.axis_labels(&frame, &h.x_label, "count", height - 16.0);
    svg.out.push_str(r#"<g class="bars">"#);
    for (i, &count) in bins.counts.iter().enumerate() {
        let (a, b) = (bins.edges[i], bins.edges[i + 1]);
        let (x0, x1) = (frame.px(a), frame.px(b));
        let y0 = frame.py(count as f64);
        let close = if i + 1 == bins.counts.len() { "]" } else { ")" };
        let _ = write!(
            svg.out,
            r##"<rect class="bar" data-count="{count}" x="{}" y="{}" width="{}" height="{}" fill="{}" stroke="#ffffff" stroke-width="0.5"><title>[{}, {}{close}: {count}</title></rect>"##,
            n(x0),
            n(y0),
            n((x1 - x0).max(0.0)),
            n((frame.bottom() - y0).max(0.0)),
            PALETTE[0],
            escape(&format_value(a)),
            escape(&format_value(b)),
        );
    }
    svg.out.push_str("</g>");
    // Redraw the x axis over the bars' bottom edges.
    svg.line(
        (frame.left, frame.bottom()),
        (frame.right(), frame.bottom()),
        &format!(r#"stroke="{AXIS_COLOR}" stroke-width="1.2""#),
    );
    let mut note = format!("n = {total}");
    if bins.skipped > 0 {
        let _ = write!(note, " ({} non-finite value(s) left out)", bins.skipped);
    }
    svg.text(
        frame.right(),
        frame.top - 6.0,
        &note,
        "end",
        &format!(r#"font-size="11" fill="{MUTED_TEXT}" class="note""#),
    );
    svg.finish()
}

// ---------------------------------------------------------------------------------------------
// Bar charts

fn bar_color(v: f64) -> &'static str {
    if v < 0.0 {
        PALETTE[1]
    } else {
        PALETTE[0]
    }
}

/// The value axis of a bar chart: always includes zero, the baseline bars grow from, and the
/// intervals' ends, and leaves `headroom` (a fraction of the span) beyond the longest bars for
/// their value labels.
fn value_axis(b: &BarChart, target: usize, headroom: f64) -> Axis {
    let ends = (0..b.bars.len())
        .filter_map(|i| b.error(i))
        .flat_map(|(lo, hi)| [lo, hi]);
    let (lo, hi) = min_max(b.bars.iter().map(|b| b.1).chain(ends)).unwrap_or((0.0, 0.0));
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let pad = (hi - lo) * headroom;
    let lo = if lo < 0.0 { lo - pad } else { lo };
    let hi = if hi > 0.0 { hi + pad } else { hi };
    Axis::new(&[lo, hi], None, target)
}

fn render_hbars(b: &BarChart) -> String {
    const ROW: f64 = 18.0;
    const MAX_LABEL: usize = 48;
    let labels: Vec<String> = b.bars.iter().map(|(l, _)| truncate(l, MAX_LABEL)).collect();
    let values: Vec<String> = b.bars.iter().map(|(_, v)| format_value(*v)).collect();
    let label_w = labels
        .iter()
        .map(|l| text_width(l, 11.0))
        .fold(0.0, f64::max)
        .max(20.0);
    let value_w = values
        .iter()
        .map(|v| text_width(v, 11.0))
        .fold(0.0, f64::max)
        .max(20.0);
    let left = label_w + 16.0;
    let top = if b.title.is_empty() { 34.0 } else { 62.0 };
    let bottom = 62.0;
    let rows = b.bars.len().max(1) as f64;
    let plot_w = 480.0;
    let width = left + plot_w + value_w + 28.0;
    let height = top + rows * ROW + bottom;
    let x = value_axis(b, 6, 0.0);
    let frame = Frame {
        left,
        top,
        width: plot_w,
        height: rows * ROW,
        x,
        y: Axis::fixed(0.0, 1.0, 1),
    };
    let mut svg = Svg::begin(width, height, &b.title);
    // Ticks on top and bottom: a 200-row chart is read far from its bottom axis.
    svg.out.push_str(r#"<g class="grid">"#);
    for &t in &frame.x.ticks {
        let px = frame.px(t);
        svg.line(
            (px, frame.top),
            (px, frame.bottom()),
            &format!(r#"stroke="{GRID_COLOR}""#),
        );
        for (y0, y1, ty) in [
            (frame.top - 5.0, frame.top, frame.top - 9.0),
            (frame.bottom(), frame.bottom() + 5.0, frame.bottom() + 19.0),
        ] {
            svg.line((px, y0), (px, y1), &format!(r#"stroke="{AXIS_COLOR}""#));
            svg.text(px, ty, &frame.x.label(t), "middle", r#"class="x-tick""#);
        }
    }
    svg.out.push_str("</g>");
    svg.line(
        (frame.left, frame.top),
        (frame.right(), frame.top),
        &format!(r#"stroke="{AXIS_COLOR}""#),
    );
    svg.line(
        (frame.left, frame.bottom()),
        (frame.right(), frame.bottom()),
        &format!(r#"stroke="{AXIS_COLOR}""#),
    );
    let zero = frame.px(0.0);
    svg.out.push_str(r#"<g class="bars">"#);
    for (i, (full, v)) in b.bars.iter().enumerate() {
        let row_top = frame.top + i as f64 * ROW;
        let cy = row_top + ROW / 2.0;
        if i % 2 == 1 {
            // Zebra stripes guide the eye from a label to its bar across a wide chart.
            let _ = write!(
                svg.out,
                r##"<rect x="0" y="{}" width="{}" height="{}" fill="#f6f6f6"/>"##,
                n(row_top),
                n(width),
                n(ROW)
            );
        }
        let tip = format!("<title>{}: {}</title>", escape(full), escape(&values[i]));
        if v.is_finite() {
            let px = frame.px(*v);
            let _ = write!(
                svg.out,
                r#"<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="{}">{tip}</rect>"#,
                n(zero.min(px)),
                n(row_top + 3.0),
                n((px - zero).abs()),
                n(ROW - 6.0),
                bar_color(*v)
            );
        }
        if let Some((lo, hi)) = b.error(i) {
            svg.whisker((frame.px(lo), cy), (frame.px(hi), cy));
        }
        svg.text(
            frame.left - 8.0,
            cy + 4.0,
            &labels[i],
            "end",
            r#"font-size="11" class="bar-label""#,
        );
        svg.text(
            width - 10.0,
            cy + 4.0,
            &values[i],
            "end",
            &format!(r#"font-size="11" fill="{MUTED_TEXT}" class="bar-value""#),
        );
    }
    svg.out.push_str("</g>");
    svg.line(
        (zero, frame.top),
        (zero, frame.bottom()),
        &format!(r#"class="zero" stroke="{AXIS_COLOR}" stroke-width="1.2""#),
    );
    if !b.value_label.is_empty() {
        svg.text(
            frame.left + frame.width / 2.0,
            height - 16.0,
            &b.value_label,
            "middle",
            r#"font-size="13" class="x-label""#,
        );
    }
    svg.finish()
}

fn render_vbars(b: &BarChart) -> String {
    const PLOT_H: f64 = 300.0;
    const VALUE_FONT: f64 = 10.0;
    let n_bars = b.bars.len();
    let show_values = n_bars <= 30;
    let values: Vec<String> = b.bars.iter().map(|(_, v)| format_value(*v)).collect();
    let value_w = values
        .iter()
        .map(|v| text_width(v, VALUE_FONT))
        .fold(0.0, f64::max);
    let max_label = b
        .bars
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0)
        .min(30);
    // Long or many labels are turned 40° so they do not run into each other.
    let rotate = n_bars > 8 || max_label > 10;
    let labels: Vec<String> = b.bars.iter().map(|(l, _)| truncate(l, 30)).collect();
    let label_h = if rotate {
        text_width(&"m".repeat(max_label), 11.0) * 0.65 + 14.0
    } else {
        20.0
    };
    let top = if b.title.is_empty() { 20.0 } else { 44.0 };
    // The value axis, the left margin (its tick labels) and the width follow from the headroom
    // left above the bars for their values.
    let layout = |headroom: f64| {
        let y = value_axis(b, 6, headroom);
        let tick_w = y
            .ticks
            .iter()
            .map(|&t| text_width(&y.label(t), 12.0))
            .fold(0.0, f64::max);
        let left = (tick_w + 40.0).max(58.0).max(if rotate {
            text_width(&"m".repeat(max_label), 11.0) * 0.77 - 10.0
        } else {
            0.0
        });
        let width = (left + 24.0 + n_bars as f64 * 28.0).max(720.0);
        (y, left, width)
    };
    let (mut y, mut left, mut width) = layout(0.08);
    // A value wider than its bar's slot would run into its neighbours' (30 layers of "12.35"):
    // such values stand upright along their bars, with headroom for the longest one.
    let first_slot = (width - left - 24.0) / n_bars.max(1) as f64;
    let upright_values = show_values && value_w + 4.0 > first_slot;
    if upright_values {
        let share = ((value_w + 8.0) / PLOT_H).min(0.5);
        (y, left, width) = layout(share / (1.0 - share));
    }
    let height = top + PLOT_H + label_h + 16.0;
    let frame = Frame {
        left,
        top,
        width: width - left - 24.0,
        height: PLOT_H,
        x: Axis::fixed(0.0, n_bars.max(1) as f64, 1),
        y,
    };
    let mut svg = Svg::begin(width, height, &b.title);
    svg.axes(&frame, false);
    svg.axis_labels(&frame, "", &b.value_label, height);
    let slot = frame.width / n_bars.max(1) as f64;
    let zero = frame.py(0.0);
    svg.out.push_str(r#"<g class="bars">"#);
    for (i, (full, v)) in b.bars.iter().enumerate() {
        let cx = frame.left + (i as f64 + 0.5) * slot;
        let value = &values[i];
        if v.is_finite() {
            let py = frame.py(*v);
            let _ = write!(
                svg.out,
                r#"<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {}</title></rect>"#,
                n(cx - slot * 0.35),
                n(zero.min(py)),
                n(slot * 0.7),
                n((py - zero).abs()),
                bar_color(*v),
                escape(full),
                escape(value)
            );
            if let Some((lo, hi)) = b.error(i) {
                svg.whisker((cx, frame.py(lo)), (cx, frame.py(hi)));
            }
            let value_attrs =
                format!(r#"font-size="{VALUE_FONT}" fill="{MUTED_TEXT}" class="bar-value""#);
            if upright_values {
                // Turned about its anchor, the text runs up from a positive bar's end (down
                // from a negative one's); the x offset centres the glyphs on the bar.
                let (x, y, anchor) = if *v >= 0.0 {
                    (cx + 3.5, py - 4.0, "start")
                } else {
                    (cx + 3.5, py + 4.0, "end")
                };
                let _ = write!(
                    svg.out,
                    r#"<text x="{x}" y="{y}" text-anchor="{anchor}" {value_attrs} transform="rotate(-90 {x} {y})">{}</text>"#,
                    escape(value),
                    x = n(x),
                    y = n(y),
                );
            } else if show_values {
                let ty = if *v >= 0.0 { py - 4.0 } else { py + 13.0 };
                svg.text(cx, ty, value, "middle", &value_attrs);
            }
        }
        let ly = frame.bottom() + 16.0;
        if rotate {
            let _ = write!(
                svg.out,
                r#"<text x="{x}" y="{y}" text-anchor="end" font-size="11" class="bar-label" transform="rotate(-40 {x} {y})">{}</text>"#,
                escape(&labels[i]),
                x = n(cx + 3.0),
                y = n(ly - 6.0),
            );
        } else {
            svg.text(
                cx,
                ly,
                &labels[i],
                "middle",
                r#"font-size="11" class="bar-label""#,
            );
        }
    }
    svg.out.push_str("</g>");
    svg.line(
        (frame.left, zero),
        (frame.right(), zero),
        &format!(r#"class="zero" stroke="{AXIS_COLOR}" stroke-width="1.2""#),
    );
    svg.finish()
}
