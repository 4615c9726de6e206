//! The run's `report.html`: one self-contained page (inline CSS, inline SVG, no script, no
//! external resources) rendered from the history and the run's `results.json`.
//!
//! Sections, top to bottom: a summary table, the checkers' verdicts with their counterexamples,
//! latency over time, throughput, the leader strip, the nemesis windows, client errors and
//! coverage.
//!
//! Plots are drawn with `plotters`' SVG backend. Plotters is built without its `ttf` feature, so
//! it uses its built-in "naive" font module: label extents are estimated from the character
//! count (no font files, no fontconfig or freetype), and the SVG backend writes every label as a
//! `<text font-family="sans-serif">` element that the browser renders with its own fonts.
//! Nemesis bands, their labels and the leader strip are written as SVG by this module, so that
//! they carry classes, data attributes and `<title>` tooltips. Each plot is an outer `<svg>`
//! holding the bands, then the plotters `<svg>` (no background, so the bands show through its
//! grid), then the band labels.
//!
//! Every piece of text from the history or the results is escaped: op values, error strings and
//! checker output are untrusted.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use serde_json::Value;

use crate::history::{self, Op, OpType, Process};

/// `write!` into a `String`, which cannot fail.
macro_rules! put {
    ($dst:expr, $($arg:tt)*) => {{
        let _ = write!($dst, $($arg)*);
    }};
}

const PLOT_W: u32 = 1200;
const LATENCY_H: u32 = 440;
const THROUGHPUT_H: u32 = 300;
const STRIP_H: u32 = 62;
const MARGIN_LEFT: u32 = 10;
const MARGIN_RIGHT: u32 = 28;
/// Room above the plotting area before band labels are added.
const MARGIN_TOP_BASE: u32 = 12;
const LABEL_LANE_H: u32 = 15;
const MAX_LABEL_LANES: usize = 4;
const X_LABEL_AREA: u32 = 46;
const Y_LABEL_AREA: u32 = 78;
/// More points than this in the latency plot are thinned (only `ok` points are dropped).
const MAX_POINTS: usize = 40_000;
const MAX_COUNTEREXAMPLES: usize = 20;
const MAX_ERROR_ROWS: usize = 25;
/// A latency range wider than this ratio is drawn on a log scale.
const LOG_SCALE_RATIO: f64 = 50.0;

const OK_COLOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const FAIL_COLOR: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const INFO_COLOR: RGBColor = RGBColor(0xe0, 0x9a, 0x00);
const PENDING_COLOR: RGBColor = RGBColor(0x70, 0x70, 0x70);

/// Fault → the nemesis op that ends its window.
const WINDOWS: &[(&str, &str)] = &[
    ("partition", "heal"),
    ("kill", "restart"),
    ("pause", "resume"),
    ("clock-bump", "clock-reset"),
    ("clock-strobe", "clock-reset"),
    ("remove-node", "add-node"),
    ("delay", "delay-stop"),
];
/// Faults drawn as an instant marker rather than a window.
const INSTANT_FAULTS: &[&str] = &["corrupt"];

const LEADER_PALETTE: &[&str] = &[
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7",
    "#bab0ac",
];

/// Renders the HTML report of one run. `results` is the run's results.json; every field of it
/// is optional.
pub fn render(ops: &[Op], results: &Value) -> String {
    let last_ns = ops.iter().map(|o| o.time_ns).max().unwrap_or(0);
    let t_last = secs(last_ns);
    // The plots' time axis: the whole history, and never an empty range.
    let t_end = if t_last > 0.0 { t_last } else { 1.0 };
    let pairs = history::pairs(ops, |_| true);
    let windows = nemesis_windows(ops, t_last);
    let segments = leader_segments(ops, t_end);

    let test = results.get("test").map(plain).unwrap_or_default();
    let title = if test.is_empty() {
        "keel-jepsen".to_string()
    } else {
        format!("keel-jepsen: {test}")
    };

    let mut out = String::with_capacity(64 * 1024);
    put!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    summary_section(&mut out, results, &pairs, t_last);
    checkers_section(&mut out, results);

    let predicted = Frame::predicted(LATENCY_H, 0, t_end);
    let lanes = label_lanes(&windows, &predicted);
    let lane_count = lanes.iter().map(|l| l + 1).max().unwrap_or(0);
    let margin_top = MARGIN_TOP_BASE + lane_count as u32 * LABEL_LANE_H;

    let latency_frame = latency_section(&mut out, &pairs, &windows, &lanes, margin_top, t_end);
    throughput_section(&mut out, &pairs, &windows, &lanes, margin_top, t_end);
    leader_section(&mut out, &segments, &latency_frame);
    nemesis_section(&mut out, &windows);
    errors_section(&mut out, &pairs);
    coverage_section(&mut out, results);
    out.push_str("</body>\n</html>\n");
    out
}

const CSS: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;\
color:#222;max-width:1240px;margin:20px auto;padding:0 16px;font-size:14px}\
h1{font-size:22px;margin:0 0 12px}\
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}\
table{border-collapse:collapse;font-size:13px;margin:4px 0}\
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f4f4f4;font-weight:600}\
table.summary th{width:150px}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
.verdict{display:inline-block;font-weight:700;padding:1px 8px;border-radius:3px;color:#fff}\
.verdict-valid{background:#2e7d32}\
.verdict-invalid{background:#c62828}\
.verdict-unknown{background:#f0a500;color:#222}\
pre{background:#f8f8f8;border:1px solid #e4e4e4;padding:6px;margin:4px 0;font-size:12px;\
max-height:360px;overflow:auto;white-space:pre-wrap;word-break:break-word}\
details summary{cursor:pointer;color:#333}\
div.ce{max-height:420px;overflow:auto}\
div.ce pre{max-height:none}\
table.checkers{width:100%}\
svg.plot,svg.leader-strip{display:block;max-width:100%;height:auto}\
.legend{font-size:13px;margin:2px 0 4px}\
.legend span.item{margin-right:16px;white-space:nowrap}\
.sw{display:inline-block;width:11px;height:11px;margin-right:5px;vertical-align:-1px;\
border-radius:2px}\
.note{color:#666;font-size:12px}\
.c-ok{color:#1f77b4}.c-fail{color:#d62728}.c-info{color:#b07800}\
";

// ---------------------------------------------------------------------------------------------
// Text helpers
// ---------------------------------------------------------------------------------------------

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as plain text: strings without quotes, `null` as empty, the rest compact JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// At most `n` characters of `s`, with an ellipsis when cut.
fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// A number with about three significant digits and no trailing zeros.
fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "?".to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let decimals = (2.0 - v.abs().log10().floor()).clamp(0.0, 6.0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// (CSS class suffix, text) of a verdict value.
fn verdict_of(v: Option<&Value>) -> (&'static str, String) {
    match v {
        Some(Value::String(s)) => {
            let class = match s.to_ascii_lowercase().as_str() {
                "valid" => "valid",
                "invalid" => "invalid",
                _ => "unknown",
            };
            (class, s.clone())
        }
        Some(Value::Bool(true)) => ("valid", "valid".to_string()),
        Some(Value::Bool(false)) => ("invalid", "invalid".to_string()),
        None | Some(Value::Null) => ("unknown", "unknown".to_string()),
        Some(other) => ("unknown", other.to_string()),
    }
}

fn verdict_badge(v: Option<&Value>) -> String {
    let (class, text) = verdict_of(v);
    format!(
        "<span class=\"verdict verdict-{class}\">{}</span>",
        esc(&text)
    )
}

fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

fn fault_color(fault: &str) -> &'static str {
    match fault {
        "partition" => "#9467bd",
        "kill" => "#e377c2",
        "pause" => "#8c564b",
        "clock-bump" | "clock-strobe" => "#17becf",
        "remove-node" => "#7f7f7f",
        "delay" => "#bcbd22",
        "corrupt" => "#222222",
        _ => "#999999",
    }
}

fn leader_color(id: u64) -> &'static str {
    LEADER_PALETTE[(id as usize) % LEADER_PALETTE.len()]
}

// ---------------------------------------------------------------------------------------------
// Nemesis windows
// ---------------------------------------------------------------------------------------------

/// A fault's extent in time, for the bands.
#[derive(Debug, Clone, PartialEq)]
struct Window {
    fault: String,
    start: f64,
    end: f64,
    /// Still open when the history ended (extended to the last event).
    open_at_end: bool,
    /// Drawn as a thin line (`corrupt`).
    instant: bool,
    /// `installed`, `indeterminate`, or whatever the nemesis said; `installed` when absent.
    outcome: String,
    /// The band's short label: the fault with its shape or targets.
    label: String,
    /// Everything the op said, for the tooltip and the table.
    detail: String,
}

fn is_nemesis_event(op: &Op) -> bool {
    op.process == Process::Nemesis && op.kind == OpType::Info
}

/// Targets as `n1,n3` when they are node ids, else as JSON.
fn fmt_targets(v: &Value) -> String {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| match i.as_u64() {
                Some(n) => format!("n{n}"),
                None => plain(i),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => plain(other),
    }
}

/// The fault windows of a history. A window opens at a fault op that was not skipped and
/// closes at the next ending op of its kind that was not skipped (`heal` for `partition`, …);
/// one still open at the end extends to `t_last`, the history's last event.
fn nemesis_windows(ops: &[Op], t_last: f64) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    for op in ops.iter().filter(|o| is_nemesis_event(o)) {
        let outcome = op
            .value
            .get("outcome")
            .and_then(Value::as_str)
            .unwrap_or("installed");
        if outcome == "skipped" {
            continue;
        }
        let t = secs(op.time_ns);
        let instant = INSTANT_FAULTS.contains(&op.f.as_str());
        if instant || WINDOWS.iter().any(|(fault, _)| *fault == op.f) {
            let shape = op.value.get("shape").map(plain).unwrap_or_default();
            let targets = op.value.get("targets").map(fmt_targets).unwrap_or_default();
            let mut label = op.f.clone();
            if !shape.is_empty() {
                label = format!("{label} {shape}");
            } else if !targets.is_empty() {
                label = format!("{label} {targets}");
            }
            if outcome != "installed" {
                label.push_str(" (?)");
            }
            let mut detail = op.f.clone();
            if !shape.is_empty() {
                put!(detail, " shape={shape}");
            }
            if !targets.is_empty() {
                put!(detail, " targets={targets}");
            }
            put!(detail, " [{outcome}]");
            out.push(Window {
                fault: op.f.clone(),
                start: t,
                end: t,
                open_at_end: !instant,
                instant,
                outcome: outcome.to_string(),
                label,
                detail,
            });
            continue;
        }
        for (fault, _) in WINDOWS.iter().filter(|(_, end)| *end == op.f) {
            for w in out
                .iter_mut()
                .filter(|w| w.open_at_end && w.fault == *fault)
            {
                w.open_at_end = false;
                w.end = t;
            }
        }
    }
    for w in out.iter_mut().filter(|w| w.open_at_end) {
        w.end = t_last.max(w.start);
    }
    out
}

/// Estimated pixel width of a band label.
fn label_width(label: &str) -> f64 {
    label.chars().count() as f64 * 6.6 + 6.0
}

/// Where a band's label starts, kept inside the plot.
fn label_x(w: &Window, frame: &Frame) -> f64 {
    let x = frame.x(w.start) + 2.0;
    x.min(PLOT_W as f64 - label_width(&w.label) - 2.0).max(2.0)
}

/// The label row of each window, so that labels of nearby bands do not overlap.
fn label_lanes(windows: &[Window], frame: &Frame) -> Vec<usize> {
    let mut order: Vec<usize> = (0..windows.len()).collect();
    order.sort_by(|&a, &b| windows[a].start.total_cmp(&windows[b].start));
    let mut lane_end: Vec<f64> = Vec::new();
    let mut lanes = vec![0; windows.len()];
    for i in order {
        let x = label_x(&windows[i], frame);
        let lane = match lane_end.iter().position(|&end| end + 4.0 <= x) {
            Some(l) => l,
            None if lane_end.len() < MAX_LABEL_LANES => {
                lane_end.push(f64::MIN);
                lane_end.len() - 1
            }
            None => (0..lane_end.len())
                .min_by(|&a, &b| lane_end[a].total_cmp(&lane_end[b]))
                .unwrap_or(0),
        };
        lane_end[lane] = x + label_width(&windows[i].label);
        lanes[i] = lane;
    }
    lanes
}

// ---------------------------------------------------------------------------------------------
// Leader strip
// ---------------------------------------------------------------------------------------------

/// A stretch of time during which the samples named one leader.
#[derive(Debug, Clone, PartialEq)]
struct Segment {
    leader: u64,
    term: Option<u64>,
    start: f64,
    end: f64,
}

/// The leader over time, from the monitor's `leader` samples: at each moment the most recent
/// sample counts, whichever node reported it; of samples taken at the same instant the one with
/// the higher term wins. A sample without a leader leaves a gap; the last segment runs to
/// `t_end`.
fn leader_segments(ops: &[Op], t_end: f64) -> Vec<Segment> {
    let mut samples: Vec<(u64, Option<u64>, Option<u64>)> = ops
        .iter()
        .filter(|o| o.process == Process::Monitor && o.f == "leader")
        .map(|o| {
            let leader = o.value.get("leader").and_then(Value::as_u64);
            let term = o.value.get("term").and_then(Value::as_u64);
            (o.time_ns, term, leader)
        })
        .collect();
    // By time, then by term, so the last sample of each instant has the highest term.
    samples.sort_by_key(|&(t, term, _)| (t, term));
    let mut out: Vec<Segment> = Vec::new();
    let mut current: Option<(u64, Option<u64>, f64)> = None;
    let mut i = 0;
    while i < samples.len() {
        let t = samples[i].0;
        while i + 1 < samples.len() && samples[i + 1].0 == t {
            i += 1;
        }
        let (_, term, leader) = samples[i];
        i += 1;
        let now = secs(t);
        let same = match (current, leader) {
            (Some((cur, cur_term, _)), Some(l)) => cur == l && cur_term == term,
            _ => false,
        };
        if same {
            continue;
        }
        if let Some((cur, cur_term, start)) = current.take() {
            out.push(Segment {
                leader: cur,
                term: cur_term,
                start,
                end: now,
            });
        }
        current = leader.map(|l| (l, term, now));
    }
    if let Some((cur, cur_term, start)) = current {
        out.push(Segment {
            leader: cur,
            term: cur_term,
            start,
            end: t_end.max(start),
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Plot geometry
// ---------------------------------------------------------------------------------------------

/// Where the plotting area of a chart lies in pixels, and its time range (from 0).
#[derive(Debug, Clone, Copy)]
struct Frame {
    x0: i32,
    x1: i32,
    y0: i32,
    y1: i32,
    t_end: f64,
}

impl Frame {
    /// The plotting area plotters lays out for our margins (used before a chart exists, and
    /// when drawing one failed).
    fn predicted(height: u32, margin_top: u32, t_end: f64) -> Frame {
        Frame {
            x0: (MARGIN_LEFT + Y_LABEL_AREA) as i32,
            x1: (PLOT_W - MARGIN_RIGHT) as i32,
            y0: margin_top as i32,
            y1: (height - X_LABEL_AREA) as i32,
            t_end,
        }
    }

    fn x(&self, t: f64) -> f64 {
        let f = if self.t_end > 0.0 {
            (t / self.t_end).clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.x0 as f64 + f * (self.x1 - self.x0) as f64
    }
}

fn chart_frame<DB: DrawingBackend, X: Ranged, Y: Ranged>(
    chart: &ChartContext<'_, DB, Cartesian2d<X, Y>>,
    t_end: f64,
) -> Frame {
    let (xr, yr) = chart.plotting_area().get_pixel_range();
    Frame {
        x0: xr.start,
        x1: xr.end,
        y0: yr.start,
        y1: yr.end,
        t_end,
    }
}

fn plot_err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// One plot: the bands, then the plotters drawing on top, then the band labels above the
/// plotting area.
fn compose_plot(
    class: &str,
    height: u32,
    drawn: Result<(String, Frame), String>,
    fallback: Frame,
    windows: &[Window],
    lanes: &[usize],
) -> String {
    let (inner, frame, error) = match drawn {
        Ok((svg, frame)) => (svg, frame, None),
        Err(e) => (String::new(), fallback, Some(e)),
    };
    let mut s = String::new();
    put!(
        s,
        "<svg class=\"plot {class}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{PLOT_W}\" \
         height=\"{height}\" viewBox=\"0 0 {PLOT_W} {height}\">\n\
         <rect x=\"0\" y=\"0\" width=\"{PLOT_W}\" height=\"{height}\" fill=\"#ffffff\"/>\n"
    );
    let (y0, y1) = (frame.y0, frame.y1);
    for w in windows {
        let color = fault_color(&w.fault);
        let x = frame.x(w.start);
        let tip = format!(
            "{} · {}–{} s{}",
            w.detail,
            fmt_num(w.start),
            fmt_num(w.end),
            if w.open_at_end { " (still open)" } else { "" }
        );
        if w.instant {
            put!(
                s,
                "<line class=\"nemesis-marker\" data-fault=\"{f}\" x1=\"{x:.1}\" x2=\"{x:.1}\" \
                 y1=\"{y0}\" y2=\"{y1}\" stroke=\"{color}\" stroke-width=\"1.5\" \
                 stroke-dasharray=\"5 3\"><title>{tip}</title></line>\n",
                f = esc(&w.fault),
                tip = esc(&tip)
            );
        } else {
            let width = (frame.x(w.end) - x).max(1.5);
            let dash = if w.outcome == "installed" {
                ""
            } else {
                " stroke-dasharray=\"4 3\""
            };
            put!(
                s,
                "<rect class=\"nemesis-band\" data-fault=\"{f}\" data-outcome=\"{o}\" \
                 x=\"{x:.1}\" y=\"{y0}\" width=\"{width:.1}\" height=\"{h}\" fill=\"{color}\" \
                 fill-opacity=\"0.16\" stroke=\"{color}\" stroke-opacity=\"0.5\"{dash}>\
                 <title>{tip}</title></rect>\n",
                f = esc(&w.fault),
                o = esc(&w.outcome),
                h = (y1 - y0).max(0),
                tip = esc(&tip)
            );
        }
    }
    // The plotters drawing, nested.
    s.push_str(&inner);
    for (w, lane) in windows.iter().zip(lanes) {
        let color = fault_color(&w.fault);
        let ly = y0 - 4 - (*lane as i32) * LABEL_LANE_H as i32;
        let lx = label_x(w, &frame);
        let x = frame.x(w.start);
        put!(
            s,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{y0}\" stroke=\"{color}\" \
             stroke-width=\"1\"/>\n<text class=\"nemesis-label\" x=\"{lx:.1}\" y=\"{ly}\" \
             font-family=\"sans-serif\" font-size=\"11\" fill=\"{color}\">{}</text>\n",
            ly - 10,
            esc(&w.label)
        );
    }
    if let Some(e) = error {
        put!(
            s,
            "<text x=\"{}\" y=\"{}\" font-family=\"sans-serif\" font-size=\"13\" \
             fill=\"#c62828\">plot failed: {}</text>\n",
            frame.x0 + 10,
            y0 + 20,
            esc(&e)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn legend(items: &[(&str, String, bool)]) -> String {
    let mut s = String::from("<div class=\"legend\">");
    for (name, color, round) in items {
        let radius = if *round { "50%" } else { "2px" };
        put!(
            s,
            "<span class=\"item\"><span class=\"sw\" style=\"background:{color};\
             border-radius:{radius}\"></span>{}</span>",
            esc(name)
        );
    }
    s.push_str("</div>\n");
    s
}

fn fault_legend(windows: &[Window]) -> String {
    let mut faults: Vec<&str> = windows.iter().map(|w| w.fault.as_str()).collect();
    faults.sort_unstable();
    faults.dedup();
    if faults.is_empty() {
        return String::new();
    }
    let items: Vec<(&str, String, bool)> = faults
        .iter()
        .map(|f| (*f, fault_color(f).to_string(), false))
        .collect();
    legend(&items)
}

// ---------------------------------------------------------------------------------------------
// Latency plot
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Fail,
    Info,
    /// Never completed.
    Pending,
}

struct LatencyPoint {
    t: f64,
    ms: f64,
    outcome: Outcome,
}

fn latency_points(pairs: &[history::Completed<'_>]) -> Vec<LatencyPoint> {
    pairs
        .iter()
        .map(|p| {
            let t = secs(p.invoke.time_ns);
            match p.complete {
                Some(c) => LatencyPoint {
                    t,
                    ms: c.time_ns.saturating_sub(p.invoke.time_ns) as f64 / 1e6,
                    outcome: match c.kind {
                        OpType::Ok => Outcome::Ok,
                        OpType::Fail => Outcome::Fail,
                        _ => Outcome::Info,
                    },
                },
                None => LatencyPoint {
                    t,
                    ms: f64::NAN,
                    outcome: Outcome::Pending,
                },
            }
        })
        .collect()
}

fn latency_section(
    out: &mut String,
    pairs: &[history::Completed<'_>],
    windows: &[Window],
    lanes: &[usize],
    margin_top: u32,
    t_end: f64,
) -> Frame {
    let mut points = latency_points(pairs);
    let total = points.len();
    // Thin `ok` points evenly when there are too many to draw.
    let not_ok = points.iter().filter(|p| p.outcome != Outcome::Ok).count();
    let ok = total - not_ok;
    if total > MAX_POINTS && ok > 0 {
        let keep = MAX_POINTS.saturating_sub(not_ok).max(1);
        // Keeps `keep` of the `ok` points, evenly spread.
        let mut n = 0usize;
        points.retain(|p| {
            if p.outcome != Outcome::Ok {
                return true;
            }
            let kept = (n + 1) * keep / ok > n * keep / ok;
            n += 1;
            kept
        });
    }

    let completed: Vec<f64> = points
        .iter()
        .filter(|p| p.outcome != Outcome::Pending)
        .map(|p| p.ms.max(0.001))
        .collect();
    let lo = completed.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = completed.iter().copied().fold(0.0, f64::max);
    let log = !completed.is_empty() && hi / lo > LOG_SCALE_RATIO;

    out.push_str("<h2>Latency over time</h2>\n");
    out.push_str(&legend(&[
        ("ok", hex(OK_COLOR), true),
        ("fail", hex(FAIL_COLOR), true),
        ("info (unknown)", hex(INFO_COLOR), true),
        ("never completed (at top edge)", hex(PENDING_COLOR), false),
    ]));
    out.push_str(&fault_legend(windows));

    let fallback = Frame::predicted(LATENCY_H, margin_top, t_end);
    let drawn = if log {
        // Room above the slowest op, so that ops that never completed (drawn at the top
        // edge) stand apart from those that timed out.
        let bottom = 10f64.powf(lo.log10().floor());
        let top = hi * 1.6;
        draw_latency(
            &points,
            (bottom..top).log_scale(),
            top,
            true,
            margin_top,
            t_end,
        )
    } else {
        let top = if hi > 0.0 { hi * 1.08 } else { 1.0 };
        draw_latency(&points, 0.0..top, top, false, margin_top, t_end)
    };
    let frame = drawn.as_ref().map(|d| d.1).unwrap_or(fallback);
    out.push_str(&compose_plot(
        "plot-latency",
        LATENCY_H,
        drawn,
        fallback,
        windows,
        lanes,
    ));
    let mut note = format!(
        "One point per client operation, at its invocation; latency is invocation to \
         completion. {} operation(s)",
        total
    );
    if points.len() < total {
        put!(note, ", {} drawn (ok points thinned)", points.len());
    }
    if log {
        note.push_str("; log scale");
    }
    put!(out, "<p class=\"note\">{}.</p>\n", esc(&note));
    frame
}

fn draw_latency<Y>(
    points: &[LatencyPoint],
    y_spec: Y,
    y_top: f64,
    log: bool,
    margin_top: u32,
    t_end: f64,
) -> Result<(String, Frame), String>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut buf = String::new();
    let frame;
    {
        let root = SVGBackend::with_string(&mut buf, (PLOT_W, LATENCY_H)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .margin_top(margin_top)
            .margin_left(MARGIN_LEFT)
            .margin_right(MARGIN_RIGHT)
            .x_label_area_size(X_LABEL_AREA)
            .y_label_area_size(Y_LABEL_AREA)
            .build_cartesian_2d(0.0..t_end, y_spec)
            .map_err(plot_err)?;
        let fmt = |v: &f64| fmt_num(*v);
        chart
            .configure_mesh()
            .x_desc("time since start (s)")
            .y_desc(if log {
                "latency (ms, log scale)"
            } else {
                "latency (ms)"
            })
            .x_label_formatter(&fmt)
            .y_label_formatter(&fmt)
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .bold_line_style(RGBColor(0xd8, 0xd8, 0xd8))
            .light_line_style(RGBColor(0xf0, 0xf0, 0xf0))
            .draw()
            .map_err(plot_err)?;
        frame = chart_frame(&chart, t_end);
        // Failures and unknowns on top of the many `ok` points.
        for (outcome, color, alpha) in [
            (Outcome::Ok, OK_COLOR, 0.55),
            (Outcome::Info, INFO_COLOR, 0.85),
            (Outcome::Fail, FAIL_COLOR, 0.85),
        ] {
            let style = color.mix(alpha).filled();
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| p.outcome == outcome)
                        .map(|p| Circle::new((p.t, p.ms.max(0.001)), 2, style)),
                )
                .map_err(plot_err)?;
        }
        let pending = PENDING_COLOR.mix(0.9).filled();
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.outcome == Outcome::Pending)
                    .map(|p| TriangleMarker::new((p.t, y_top), 5, pending)),
            )
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok((buf, frame))
}

// ---------------------------------------------------------------------------------------------
// Throughput plot
// ---------------------------------------------------------------------------------------------

fn throughput_section(
    out: &mut String,
    pairs: &[history::Completed<'_>],
    windows: &[Window],
    lanes: &[usize],
    margin_top: u32,
    t_end: f64,
) {
    // Buckets of one second, wider on long runs to keep the lines readable.
    let bucket = (t_end / 300.0).ceil().max(1.0);
    let n = ((t_end / bucket).ceil() as usize).max(1);
    let mut counts = [vec![0u64; n], vec![0u64; n], vec![0u64; n]];
    for p in pairs {
        let Some(c) = p.complete else { continue };
        let series = match c.kind {
            OpType::Ok => 0,
            OpType::Fail => 1,
            _ => 2,
        };
        let b = ((secs(c.time_ns) / bucket) as usize).min(n - 1);
        counts[series][b] += 1;
    }
    let rates: Vec<Vec<(f64, f64)>> = counts
        .iter()
        .map(|cs| {
            // A step line: each bucket's rate held across its width.
            let mut pts = Vec::with_capacity(cs.len() * 2);
            for (i, c) in cs.iter().enumerate() {
                let r = *c as f64 / bucket;
                pts.push((i as f64 * bucket, r));
                pts.push((((i + 1) as f64 * bucket).min(t_end), r));
            }
            pts
        })
        .collect();
    let max_rate = rates
        .iter()
        .flatten()
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(1.0);

    out.push_str("<h2>Throughput</h2>\n");
    out.push_str(&legend(&[
        ("ok", hex(OK_COLOR), false),
        ("fail", hex(FAIL_COLOR), false),
        ("info", hex(INFO_COLOR), false),
    ]));
    let fallback = Frame::predicted(THROUGHPUT_H, margin_top, t_end);
    let drawn = draw_throughput(&rates, max_rate * 1.1, margin_top, t_end);
    out.push_str(&compose_plot(
        "plot-throughput",
        THROUGHPUT_H,
        drawn,
        fallback,
        windows,
        lanes,
    ));
    put!(
        out,
        "<p class=\"note\">Client operations completed per second, by outcome, in buckets of \
         {} s.</p>\n",
        fmt_num(bucket)
    );
}

fn draw_throughput(
    rates: &[Vec<(f64, f64)>],
    y_top: f64,
    margin_top: u32,
    t_end: f64,
) -> Result<(String, Frame), String> {
    let mut buf = String::new();
    let frame;
    {
        let root = SVGBackend::with_string(&mut buf, (PLOT_W, THROUGHPUT_H)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .margin_top(margin_top)
            .margin_left(MARGIN_LEFT)
            .margin_right(MARGIN_RIGHT)
            .x_label_area_size(X_LABEL_AREA)
            .y_label_area_size(Y_LABEL_AREA)
            .build_cartesian_2d(0.0..t_end, 0.0..y_top)
            .map_err(plot_err)?;
        let fmt = |v: &f64| fmt_num(*v);
        chart
            .configure_mesh()
            .x_desc("time since start (s)")
            .y_desc("ops/s")
            .x_label_formatter(&fmt)
            .y_label_formatter(&fmt)
            .y_labels(6)
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .bold_line_style(RGBColor(0xd8, 0xd8, 0xd8))
            .light_line_style(RGBColor(0xf0, 0xf0, 0xf0))
            .draw()
            .map_err(plot_err)?;
        frame = chart_frame(&chart, t_end);
        for (pts, color) in rates.iter().zip([OK_COLOR, FAIL_COLOR, INFO_COLOR]) {
            if pts.iter().all(|p| p.1 == 0.0) {
                continue;
            }
            chart
                .draw_series(std::iter::once(PathElement::new(
                    pts.clone(),
                    color.stroke_width(2),
                )))
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok((buf, frame))
}

// ---------------------------------------------------------------------------------------------
// Leader strip
// ---------------------------------------------------------------------------------------------

/// A round step for about `target` ticks over `span`.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let n = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    n * mag
}

fn leader_section(out: &mut String, segments: &[Segment], frame: &Frame) {
    out.push_str("<h3 style=\"font-size:14px;margin:10px 0 2px\">Leader</h3>\n");
    let mut ids: Vec<u64> = segments.iter().map(|s| s.leader).collect();
    ids.sort_unstable();
    ids.dedup();
    let items: Vec<(String, String, bool)> = ids
        .iter()
        .map(|id| (format!("n{id}"), leader_color(*id).to_string(), false))
        .collect();
    let items: Vec<(&str, String, bool)> = items
        .iter()
        .map(|(n, c, r)| (n.as_str(), c.clone(), *r))
        .collect();
    if !items.is_empty() {
        out.push_str(&legend(&items));
    }

    let (x0, x1) = (frame.x0 as f64, frame.x1 as f64);
    let (top, bar_h) = (6.0, 26.0);
    let mut s = String::new();
    put!(
        s,
        "<svg class=\"leader-strip\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{PLOT_W}\" \
         height=\"{STRIP_H}\" viewBox=\"0 0 {PLOT_W} {STRIP_H}\">\n\
         <rect x=\"0\" y=\"0\" width=\"{PLOT_W}\" height=\"{STRIP_H}\" fill=\"#ffffff\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-family=\"sans-serif\" \
         font-size=\"12\" fill=\"#333\">leader</text>\n\
         <rect x=\"{x0:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{bar_h}\" fill=\"#f2f2f2\" \
         stroke=\"#cccccc\"/>\n",
        x0 - 8.0,
        top + bar_h / 2.0 + 4.0,
        x1 - x0
    );
    for seg in segments {
        let sx = frame.x(seg.start);
        let w = (frame.x(seg.end) - sx).max(1.0);
        let color = leader_color(seg.leader);
        let term = seg.term.map(|t| format!(" term {t}")).unwrap_or_default();
        let tip = format!(
            "leader n{}{term}: {}–{} s",
            seg.leader,
            fmt_num(seg.start),
            fmt_num(seg.end)
        );
        put!(
            s,
            "<rect class=\"leader-seg\" data-leader=\"{}\" data-term=\"{}\" x=\"{sx:.1}\" \
             y=\"{top}\" width=\"{w:.1}\" height=\"{bar_h}\" fill=\"{color}\">\
             <title>{}</title></rect>\n",
            seg.leader,
            seg.term.map(|t| t.to_string()).unwrap_or_default(),
            esc(&tip)
        );
        let text = format!("n{}{}", seg.leader, term);
        let text = if label_width(&text) <= w {
            text
        } else {
            format!("n{}", seg.leader)
        };
        if label_width(&text) <= w {
            put!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-family=\"sans-serif\" \
                 font-size=\"11\" fill=\"#ffffff\">{}</text>\n",
                sx + w / 2.0,
                top + bar_h / 2.0 + 4.0,
                esc(&text)
            );
        }
    }
    // A time axis matching the plots above.
    let axis_y = top + bar_h;
    if frame.t_end > 0.0 {
        let step = nice_step(frame.t_end, 12.0);
        let mut k = 0u64;
        loop {
            let t = k as f64 * step;
            if t > frame.t_end * (1.0 + 1e-9) {
                break;
            }
            let x = frame.x(t);
            put!(
                s,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{axis_y}\" y2=\"{:.1}\" stroke=\"#888\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-family=\"sans-serif\" \
                 font-size=\"11\" fill=\"#555\">{}</text>\n",
                axis_y + 4.0,
                axis_y + 17.0,
                fmt_num(t)
            );
            k += 1;
        }
    }
    s.push_str("</svg>\n");
    out.push_str(&s);
    let note = if segments.is_empty() {
        "No leader samples in the history."
    } else {
        "The leader named by the most recent monitor sample from any node (the higher term \
         wins a tie); gaps where no leader was known."
    };
    put!(out, "<p class=\"note\">{note}</p>\n");
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

fn row(out: &mut String, name: &str, html_value: &str) {
    put!(
        out,
        "<tr><th>{}</th><td>{html_value}</td></tr>\n",
        esc(name)
    );
}

fn summary_section(
    out: &mut String,
    results: &Value,
    pairs: &[history::Completed<'_>],
    t_last: f64,
) {
    out.push_str("<table class=\"summary\">\n");
    row(out, "verdict", &verdict_badge(results.get("verdict")));
    for key in ["seed", "git_rev", "backend", "nodes"] {
        if let Some(v) = results.get(key).filter(|v| !v.is_null()) {
            row(out, key, &esc(&plain(v)));
        }
    }
    match results.get("duration_s") {
        Some(Value::Number(n)) => row(
            out,
            "duration",
            &format!("{} s", fmt_num(n.as_f64().unwrap_or(0.0))),
        ),
        Some(v) if !v.is_null() => row(out, "duration", &esc(&plain(v))),
        _ => row(out, "duration", &format!("{} s (history)", fmt_num(t_last))),
    }
    let mut counts = [0usize; 4];
    for p in pairs {
        let i = match p.complete.map(|c| c.kind) {
            Some(OpType::Ok) => 0,
            Some(OpType::Fail) => 1,
            None => 3,
            Some(_) => 2,
        };
        counts[i] += 1;
    }
    let mut ops_html = format!(
        "{} invoked: <span class=\"c-ok\">ok {}</span> · <span class=\"c-fail\">fail {}</span> \
         · <span class=\"c-info\">info {}</span>",
        pairs.len(),
        counts[0],
        counts[1],
        counts[2] + counts[3]
    );
    if counts[3] > 0 {
        put!(ops_html, " (of which {} never completed)", counts[3]);
    }
    row(out, "client ops", &ops_html);
    if let Some(f) = results.get("failover_ms").filter(|v| v.is_object()) {
        let mut parts = Vec::new();
        for key in ["p50", "p99", "max"] {
            if let Some(v) = f.get(key).filter(|v| !v.is_null()) {
                match v.as_f64() {
                    Some(x) => parts.push(format!("{key} {} ms", fmt_num(x))),
                    None => parts.push(format!("{key} {}", plain(v))),
                }
            }
        }
        if let Some(n) = f.get("samples").filter(|v| !v.is_null()) {
            parts.push(format!("{} sample(s)", plain(n)));
        }
        if !parts.is_empty() {
            row(out, "failover", &esc(&parts.join(" · ")));
        }
    }
    // Whatever else the results carry at the top level, so nothing is hidden.
    const SHOWN: &[&str] = &[
        "test",
        "verdict",
        "seed",
        "git_rev",
        "backend",
        "nodes",
        "duration_s",
        "failover_ms",
        "checkers",
        "coverage",
    ];
    if let Some(obj) = results.as_object() {
        for (k, v) in obj.iter().filter(|(k, _)| !SHOWN.contains(&k.as_str())) {
            row(out, k, &esc(&truncate(&plain(v), 400)));
        }
    }
    out.push_str("</table>\n");
}

fn checkers_section(out: &mut String, results: &Value) {
    out.push_str("<h2>Checkers</h2>\n");
    let checkers: Vec<&Value> = match results.get("checkers") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other],
    };
    if checkers.is_empty() {
        out.push_str("<p class=\"note\">No checker results.</p>\n");
        return;
    }
    out.push_str(
        "<table class=\"checkers\">\n<tr><th>checker</th><th>verdict</th><th>summary</th>\
         <th>counterexamples</th></tr>\n",
    );
    for c in checkers {
        let name = c.get("name").map(plain).unwrap_or_default();
        let mut summary = esc(&c.get("summary").map(plain).unwrap_or_default());
        if let Some(counts) = c.get("counts").and_then(Value::as_object) {
            let text = counts
                .iter()
                .map(|(k, v)| format!("{k}: {}", plain(v)))
                .collect::<Vec<_>>()
                .join(", ");
            if !text.is_empty() {
                put!(summary, "<br><span class=\"note\">{}</span>", esc(&text));
            }
        }
        let examples: Vec<&Value> = match c.get("counterexamples") {
            Some(Value::Array(a)) => a.iter().collect(),
            Some(Value::Null) | None => Vec::new(),
            Some(other) => vec![other],
        };
        let mut ce = String::new();
        if !examples.is_empty() {
            let (class, _) = verdict_of(c.get("verdict"));
            put!(
                ce,
                "<details{}><summary>{} counterexample(s)</summary><div class=\"ce\">",
                if class == "invalid" { " open" } else { "" },
                examples.len()
            );
            for e in examples.iter().take(MAX_COUNTEREXAMPLES) {
                let text = serde_json::to_string_pretty(e).unwrap_or_else(|_| plain(e));
                put!(ce, "<pre>{}</pre>", esc(&text));
            }
            if examples.len() > MAX_COUNTEREXAMPLES {
                put!(
                    ce,
                    "<p class=\"note\">{} more not shown.</p>",
                    examples.len() - MAX_COUNTEREXAMPLES
                );
            }
            ce.push_str("</div></details>");
        }
        put!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{summary}</td><td>{ce}</td></tr>\n",
            esc(&name),
            verdict_badge(c.get("verdict"))
        );
    }
    out.push_str("</table>\n");
}

fn nemesis_section(out: &mut String, windows: &[Window]) {
    out.push_str("<h2>Nemesis</h2>\n");
    if windows.is_empty() {
        out.push_str("<p class=\"note\">No faults were installed.</p>\n");
        return;
    }
    out.push_str(
        "<table class=\"nemesis\">\n<tr><th>fault</th><th>from (s)</th><th>to (s)</th>\
         <th>length (s)</th><th>detail</th></tr>\n",
    );
    for w in windows {
        let (to, len) = if w.instant {
            ("—".to_string(), "—".to_string())
        } else if w.open_at_end {
            (
                format!("{} (still open)", fmt_num(w.end)),
                fmt_num(w.end - w.start),
            )
        } else {
            (fmt_num(w.end), fmt_num(w.end - w.start))
        };
        put!(
            out,
            "<tr><td><span class=\"sw\" style=\"background:{}\"></span>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td>{}</td></tr>\n",
            fault_color(&w.fault),
            esc(&w.fault),
            fmt_num(w.start),
            esc(&to),
            esc(&len),
            esc(&w.detail)
        );
    }
    out.push_str("</table>\n");
}

fn errors_section(out: &mut String, pairs: &[history::Completed<'_>]) {
    let mut groups: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    for p in pairs {
        let Some(c) = p.complete else { continue };
        let Some(err) = c.error.as_deref() else {
            continue;
        };
        let kind = match c.kind {
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
            OpType::Invoke => "invoke",
        };
        *groups.entry((kind, p.invoke.f.as_str(), err)).or_default() += 1;
    }
    out.push_str("<h2>Client errors</h2>\n");
    if groups.is_empty() {
        out.push_str("<p class=\"note\">No client operation reported an error.</p>\n");
        return;
    }
    let mut rows: Vec<_> = groups.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out.push_str(
        "<table class=\"errors\">\n<tr><th>count</th><th>outcome</th><th>op</th>\
         <th>error</th></tr>\n",
    );
    for ((kind, f, err), n) in rows.iter().take(MAX_ERROR_ROWS) {
        put!(
            out,
            "<tr><td class=\"num\">{n}</td><td class=\"c-{kind}\">{kind}</td><td>{}</td>\
             <td>{}</td></tr>\n",
            esc(f),
            esc(&truncate(err, 300))
        );
    }
    out.push_str("</table>\n");
    if rows.len() > MAX_ERROR_ROWS {
        put!(
            out,
            "<p class=\"note\">{} more distinct errors not shown.</p>\n",
            rows.len() - MAX_ERROR_ROWS
        );
    }
}

fn coverage_section(out: &mut String, results: &Value) {
    out.push_str("<h2>Coverage</h2>\n");
    match results.get("coverage") {
        Some(Value::Object(map)) if !map.is_empty() => {
            out.push_str("<table class=\"coverage\">\n");
            for (k, v) in map {
                let text = match v {
                    Value::Object(_) | Value::Array(_) => {
                        serde_json::to_string_pretty(v).unwrap_or_else(|_| plain(v))
                    }
                    other => plain(other),
                };
                let cell = if text.contains('\n') {
                    format!("<pre>{}</pre>", esc(&text))
                } else {
                    esc(&text)
                };
                row(out, k, &cell);
            }
            out.push_str("</table>\n");
        }
        Some(v) if !v.is_null() && !v.is_object() => {
            put!(out, "<pre>{}</pre>\n", esc(&plain(v)));
        }
        _ => out.push_str("<p class=\"note\">No coverage recorded.</p>\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(ms: u64, process: Process, kind: OpType, f: &str, value: Value) -> Op {
        Op {
            index: 0,
            time_ns: ms * 1_000_000,
            wall_ns: 0,
            process,
            kind,
            f: f.to_string(),
            value,
            node: None,
            error: None,
        }
    }

    fn nemesis(ms: u64, f: &str, value: Value) -> Op {
        op(ms, Process::Nemesis, OpType::Info, f, value)
    }

    fn leader(ms: u64, node: u64, leader: Option<u64>, term: u64) -> Op {
        Op {
            node: Some(node),
            ..op(
                ms,
                Process::Monitor,
                OpType::Info,
                "leader",
                json!({"leader": leader, "term": term}),
            )
        }
    }

    /// Orders by time and numbers the events, as a recorder would.
    fn finish(mut ops: Vec<Op>) -> Vec<Op> {
        ops.sort_by_key(|o| o.time_ns);
        for (i, o) in ops.iter_mut().enumerate() {
            o.index = i as u64;
        }
        ops
    }

    /// A minute of five clients against three nodes with faults, deterministic.
    fn sample_history() -> Vec<Op> {
        let mut ops = Vec::new();
        let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for thread in 0..5u64 {
            let mut process = thread;
            let mut t = 100 + thread * 13;
            let mut k = 0u64;
            while t < 60_000 {
                let f = ["read", "write", "cas"][(next() % 3) as usize];
                let node = Some(1 + next() % 3);
                ops.push(Op {
                    node,
                    ..op(t, Process::Client(process), OpType::Invoke, f, json!(k))
                });
                let r = next() % 1000;
                let (lat, kind, err): (u64, OpType, Option<String>) =
                    if (10_000..20_000).contains(&t) && r < 300 {
                        (1000, OpType::Info, Some("timeout after 1s".into()))
                    } else if (25_000..32_000).contains(&t) && r < 250 {
                        (
                            1 + next() % 5,
                            OpType::Fail,
                            Some("connection refused".into()),
                        )
                    } else if r < 8 {
                        (
                            200 + next() % 300,
                            OpType::Info,
                            Some("<script>alert(1)</script>".into()),
                        )
                    } else {
                        let tail = if r > 990 { 150 } else { 0 };
                        (2 + next() % 9 + tail, OpType::Ok, None)
                    };
                if thread == 4 && t > 58_000 {
                    // The history ends before this one completes.
                    break;
                }
                ops.push(Op {
                    node,
                    error: err,
                    ..op(
                        t + lat,
                        Process::Client(process),
                        kind,
                        f,
                        if kind == OpType::Ok {
                            json!(k)
                        } else {
                            Value::Null
                        },
                    )
                });
                if kind == OpType::Info {
                    process += 5;
                }
                t += lat + 20 + next() % 40;
                k += 1;
            }
        }
        ops.push(nemesis(
            10_000,
            "partition",
            json!({"outcome": "installed", "targets": [1], "shape": "leader-alone"}),
        ));
        ops.push(nemesis(20_000, "heal", json!({"outcome": "installed"})));
        ops.push(nemesis(
            25_000,
            "kill",
            json!({"outcome": "installed", "targets": [2]}),
        ));
        ops.push(nemesis(
            32_000,
            "restart",
            json!({"outcome": "installed", "targets": [2]}),
        ));
        ops.push(nemesis(
            35_000,
            "clock-bump",
            json!({"outcome": "skipped", "targets": [3]}),
        ));
        ops.push(nemesis(
            38_000,
            "corrupt",
            json!({"outcome": "installed", "targets": [3]}),
        ));
        ops.push(nemesis(
            40_000,
            "delay",
            json!({"outcome": "indeterminate", "targets": [1, 3]}),
        ));
        ops.push(nemesis(
            44_000,
            "delay-stop",
            json!({"outcome": "installed"}),
        ));
        ops.push(nemesis(
            50_000,
            "pause",
            json!({"outcome": "installed", "targets": [3]}),
        ));
        for i in 0..120u64 {
            let ms = 250 + i * 500;
            for node in 1..=3u64 {
                let (l, term) = match ms {
                    0..=10_400 => (Some(1), 2),
                    10_401..=12_000 => (None, 2),
                    12_001..=25_200 => (Some(2), 3),
                    _ => (Some(3), 4),
                };
                ops.push(leader(ms + node, node, l, term));
            }
        }
        finish(ops)
    }

    fn sample_results() -> Value {
        json!({
            "test": "partition-kill-register",
            "seed": 42,
            "git_rev": "abc123",
            "backend": "proxy",
            "nodes": 3,
            "duration_s": 61.2,
            "verdict": "invalid",
            "checkers": [
                {"name": "register-linearizable", "verdict": "valid",
                 "summary": "30 keys, 4210 ops", "counts": {"ok": 4000, "fail": 150}},
                {"name": "workflow-exactly-once", "verdict": "invalid",
                 "summary": "1 duplicate <b>start</b>",
                 "counterexamples": (0..25).map(|i| json!({"workflow": format!("wf-{i}"),
                     "starts": 2, "error": "<script>x</script>"})).collect::<Vec<_>>()},
                {"name": "leader-monitor", "verdict": "unknown", "summary": "too few samples"}
            ],
            "coverage": {"leader_faulted": true, "leader_changes": 4},
            "failover_ms": {"p50": 812, "p99": 1540, "samples": 6}
        })
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn renders_the_sample_run() {
        let ops = sample_history();
        let html = render(&ops, &sample_results());
        if let Ok(path) = std::env::var("KEEL_JEPSEN_REPORT_SAMPLE") {
            std::fs::write(path, &html).unwrap();
        }
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>keel-jepsen: partition-kill-register</title>"));
        assert!(html.contains("<span class=\"verdict verdict-invalid\">invalid</span>"));
        assert!(html.contains("<span class=\"verdict verdict-valid\">valid</span>"));
        assert!(html.contains("<span class=\"verdict verdict-unknown\">unknown</span>"));
        assert!(html.contains("abc123") && html.contains("proxy") && html.contains("61.2 s"));
        assert!(
            html.contains("p50 812 ms · p99 1540 ms · 6 sample(s)"),
            "failover"
        );
        // Both plots, and the leader strip.
        assert!(html.contains("<svg class=\"plot plot-latency\""));
        assert!(html.contains("<svg class=\"plot plot-throughput\""));
        assert!(count(&html, "<svg") >= 5, "2 outer + 2 plotters + strip");
        assert!(
            html.contains("latency (ms, log scale)"),
            "the timeouts widen the range"
        );
        // One band per installed window in each of the two plots; none for the skipped one.
        assert_eq!(count(&html, "class=\"nemesis-band\""), 2 * 4);
        for fault in ["partition", "kill", "delay", "pause"] {
            assert_eq!(
                count(
                    &html,
                    &format!("class=\"nemesis-band\" data-fault=\"{fault}\"")
                ),
                2,
                "{fault}"
            );
        }
        assert!(!html.contains("data-fault=\"clock-bump\""), "skipped");
        assert_eq!(count(&html, "class=\"nemesis-marker\""), 2, "corrupt");
        assert!(
            html.contains("partition leader-alone"),
            "label shows the shape"
        );
        assert!(html.contains("kill n2"), "label shows the targets");
        assert!(html.contains("(still open)"), "the pause never ended");
        // Leader strip: n1 (term 2), a gap, n2 (term 3), n3 (term 4).
        assert_eq!(count(&html, "class=\"leader-seg\""), 3);
        for (l, term) in [(1, 2), (2, 3), (3, 4)] {
            assert!(html.contains(&format!(
                "class=\"leader-seg\" data-leader=\"{l}\" data-term=\"{term}\""
            )));
        }
        // Untrusted text is escaped everywhere.
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>start"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("1 duplicate &lt;b&gt;start&lt;/b&gt;"));
        // At most 20 counterexamples per checker.
        assert_eq!(count(&html, "wf-"), MAX_COUNTEREXAMPLES);
        assert!(html.contains("5 more not shown."));
        assert!(html.contains("leader_faulted") && html.contains("leader_changes"));
        assert!(html.contains("never completed"));
    }

    #[test]
    fn empty_history_and_results_render() {
        for results in [json!({}), Value::Null, json!([1, 2])] {
            let html = render(&[], &results);
            assert!(html.contains("<h1>keel-jepsen</h1>"));
            assert!(html.contains("verdict-unknown"));
            assert!(html.contains("<svg class=\"plot plot-latency\""));
            assert!(html.contains("<svg class=\"plot plot-throughput\""));
            assert!(html.contains("<svg class=\"leader-strip\""));
            assert!(!html.contains("plot failed"), "{html}");
            assert_eq!(count(&html, "nemesis-band"), 0);
        }
    }

    #[test]
    fn odd_results_fields_do_not_panic() {
        let results = json!({
            "test": 7, "verdict": true, "duration_s": "long", "checkers": {"name": "solo"},
            "coverage": 5, "failover_ms": {"p50": "n/a"}, "extra": "<i>x</i>"
        });
        let ops = finish(vec![
            op(0, Process::Client(0), OpType::Invoke, "read", Value::Null),
            op(5, Process::Client(0), OpType::Ok, "read", json!(1)),
            op(6, Process::Client(1), OpType::Invoke, "read", Value::Null),
            nemesis(7, "partition", json!("not an object")),
            nemesis(8, "heal", Value::Null),
            leader(9, 1, None, 1),
        ]);
        let html = render(&ops, &results);
        assert!(html.contains("keel-jepsen: 7"));
        assert!(html.contains("verdict-valid"));
        assert!(html.contains("solo"));
        assert!(html.contains("p50 n/a"));
        assert!(html.contains("&lt;i&gt;x&lt;/i&gt;"));
        assert!(!html.contains("plot failed"));
        assert_eq!(count(&html, "class=\"nemesis-band\""), 2);
        assert_eq!(count(&html, "class=\"leader-seg\""), 0);
        assert!(!html.contains("latency (ms, log scale)"));
    }

    #[test]
    fn many_ok_points_are_thinned_but_failures_kept() {
        let mut ops = Vec::new();
        for i in 0..(MAX_POINTS as u64 + 5_000) {
            let (kind, f) = if i % 1000 == 0 {
                (OpType::Fail, "write")
            } else {
                (OpType::Ok, "read")
            };
            ops.push(op(i, Process::Client(0), OpType::Invoke, f, Value::Null));
            ops.push(Op {
                time_ns: i * 1_000_000 + 500_000,
                wall_ns: 0,
                ..op(i, Process::Client(0), kind, f, Value::Null)
            });
        }
        let html = render(&finish(ops), &json!({}));
        let circles = count(&html, "<circle");
        assert!(
            circles <= MAX_POINTS && circles > MAX_POINTS * 9 / 10,
            "{circles}"
        );
        assert!(html.contains("ok points thinned"));
        // All 45 failures are still drawn, in the fail color (plotters writes upper-case hex).
        let fail_fill = format!("fill=\"{}\"", hex(FAIL_COLOR).to_uppercase());
        assert_eq!(count(&html, &fail_fill), 45);
    }

    #[test]
    fn windows_pair_faults_with_their_ends() {
        let ops = finish(vec![
            nemesis(1_000, "partition", json!({"outcome": "installed"})),
            nemesis(2_000, "kill", json!({"outcome": "skipped"})),
            nemesis(2_500, "restart", json!({"outcome": "installed"})),
            nemesis(3_000, "clock-strobe", json!({"outcome": "installed"})),
            nemesis(4_000, "heal", json!({"outcome": "installed"})),
            nemesis(5_000, "clock-reset", json!({"outcome": "installed"})),
            nemesis(
                6_000,
                "corrupt",
                json!({"outcome": "installed", "targets": [2]}),
            ),
            nemesis(7_000, "remove-node", json!({"outcome": "indeterminate"})),
            op(
                9_000,
                Process::Client(0),
                OpType::Invoke,
                "read",
                Value::Null,
            ),
        ]);
        let w = nemesis_windows(&ops, 9.0);
        let got: Vec<(&str, f64, f64, bool, bool)> = w
            .iter()
            .map(|w| (w.fault.as_str(), w.start, w.end, w.open_at_end, w.instant))
            .collect();
        assert_eq!(
            got,
            vec![
                ("partition", 1.0, 4.0, false, false),
                ("clock-strobe", 3.0, 5.0, false, false),
                ("corrupt", 6.0, 6.0, false, true),
                ("remove-node", 7.0, 9.0, true, false),
            ]
        );
        assert_eq!(w[2].label, "corrupt n2");
        assert_eq!(w[3].label, "remove-node (?)");
    }

    #[test]
    fn leader_segments_follow_the_latest_sample() {
        let ops = finish(vec![
            leader(1_000, 1, Some(1), 1),
            leader(1_500, 2, Some(1), 1),
            // Two reports at the same instant: the higher term wins whatever the order.
            leader(2_000, 3, Some(2), 2),
            leader(2_000, 1, Some(1), 1),
            leader(3_000, 2, None, 2),
            leader(4_000, 2, Some(2), 3),
        ]);
        let segs = leader_segments(&ops, 10.0);
        let got: Vec<(u64, Option<u64>, f64, f64)> = segs
            .iter()
            .map(|s| (s.leader, s.term, s.start, s.end))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, Some(1), 1.0, 2.0),
                (2, Some(2), 2.0, 3.0),
                (2, Some(3), 4.0, 10.0),
            ]
        );
        assert!(leader_segments(&[], 1.0).is_empty());
    }

    #[test]
    fn numbers_and_text_are_formatted_safely() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(1234.4), "1234");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(1.5), "1.5");
        assert_eq!(fmt_num(0.05), "0.05");
        assert_eq!(fmt_num(10.0), "10");
        assert_eq!(esc("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(nice_step(60.0, 12.0), 5.0);
    }
}
