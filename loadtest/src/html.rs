//! The HTML report: one self-contained page (inline SVG and CSS, no
//! scripts, nothing fetched) with the latency distributions and the
//! throughput over time.

use std::fmt::Write as _;

use crate::report::{Latency, Report};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 45.0;
const COLORS: [&str; 5] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

/// One line of a chart.
struct Series<'a> {
    name: &'a str,
    points: Vec<(f64, f64)>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" upper bound for an axis.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= step * magnitude {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A line chart; `x_ticks` are `(x, label)`.
fn chart(
    title: &str,
    y_label: &str,
    series: &[Series<'_>],
    x_range: (f64, f64),
    x_ticks: &[(f64, String)],
) -> String {
    let y_max = nice_max(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let span = (x_range.1 - x_range.0).max(1e-9);
    let sx = |x: f64| LEFT + (x - x_range.0) / span * plot_w;
    let sy = |y: f64| TOP + plot_h - (y / y_max).clamp(0.0, 1.0) * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}">"#,
        t = escape(title)
    );
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="18" class="title">{}</text>"#,
        escape(title)
    );
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let y = sy(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            fmt_num(v)
        );
    }
    for (x, label) in x_ticks {
        let px = sx(*x);
        let _ = write!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#eee"/><text x="{px:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0,
            escape(label)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="14" y="{:.1}" class="tick" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        if !s.points.is_empty() {
            let path: Vec<String> = s
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
        }
        let lx = LEFT + 10.0 + 170.0 * i as f64;
        let ly = HEIGHT - 10.0;
        let _ = write!(
            svg,
            r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="4" fill="{color}"/><text x="{:.1}" y="{ly:.1}" class="tick">{}</text>"#,
            ly - 5.0,
            lx + 16.0,
            escape(s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Percentile `p` (0–100) on a "nines" axis: 0 → 0, 90 → 1, 99 → 2, …
fn nines(p: f64) -> f64 {
    let rest = (1.0 - p / 100.0).max(1e-5);
    -rest.log10()
}

fn latency_chart(report: &Report) -> String {
    let names = [
        ("booking", "booking"),
        ("booking_attempt", "booking attempt"),
        ("sensor_ack", "sensor ack"),
        ("delivery", "delivery"),
    ];
    let series: Vec<Series<'_>> = names
        .iter()
        .filter_map(|(key, name)| {
            let points = report.distributions.get(key)?;
            Some(Series {
                name,
                points: points.iter().map(|&(p, ms)| (nines(p), ms)).collect(),
            })
        })
        .collect();
    let ticks: Vec<(f64, String)> = [0.0, 90.0, 99.0, 99.9, 99.99, 99.999]
        .iter()
        .map(|&p| (nines(p), format!("p{p}")))
        .collect();
    chart(
        "Latency distribution (ms by percentile)",
        "ms",
        &series,
        (0.0, 5.0),
        &ticks,
    )
}

fn time_ticks(end: f64) -> Vec<(f64, String)> {
    let step = nice_max(end / 6.0);
    let mut ticks = Vec::new();
    let mut t = 0.0;
    while t <= end + 1e-9 && ticks.len() < 20 {
        ticks.push((t, format!("{t:.0}s")));
        t += step;
    }
    ticks
}

fn throughput_charts(report: &Report) -> String {
    let end = report
        .timeline
        .last()
        .map_or(report.duration_s, |s| s.t)
        .max(1e-3);
    let ticks = time_ticks(end);
    let line = |f: fn(&crate::stats::Sample) -> f64| -> Vec<(f64, f64)> {
        report.timeline.iter().map(|s| (s.t, f(s))).collect()
    };
    let sensors = chart(
        "Sensor events acknowledged per second",
        "events/s",
        &[Series {
            name: "sensor events/s",
            points: line(|s| s.sensor_events_per_sec),
        }],
        (0.0, end),
        &ticks,
    );
    let bookings = chart(
        "Bookings and errors per second",
        "per second",
        &[
            Series {
                name: "bookings/s",
                points: line(|s| s.bookings_per_sec),
            },
            Series {
                name: "errors/s",
                points: line(|s| s.errors_per_sec),
            },
        ],
        (0.0, end),
        &ticks,
    );
    let deltas = chart(
        "Deltas received per second (all subscribers)",
        "deltas/s",
        &[Series {
            name: "deltas/s",
            points: line(|s| s.deltas_per_sec),
        }],
        (0.0, end),
        &ticks,
    );
    let connections = chart(
        "Websocket connections held",
        "connections",
        &[Series {
            name: "connections",
            points: line(|s| s.connections as f64),
        }],
        (0.0, end),
        &ticks,
    );
    format!("{sensors}\n{bookings}\n{deltas}\n{connections}")
}

fn latency_row(name: &str, l: &Latency) -> String {
    format!(
        "<tr><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>",
        escape(name),
        l.p50,
        l.p90,
        l.p99,
        l.p999,
        l.max,
        l.count
    )
}

/// The whole page.
pub fn render(report: &Report) -> String {
    let verdict = if report.invariants_ok {
        r#"<span class="ok">invariants hold</span>"#
    } else {
        r#"<span class="bad">INVARIANTS BROKEN</span>"#
    };
    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>parkme-loadtest {run}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:820px}}
table{{border-collapse:collapse;margin:8px 0 16px}}td,th{{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}}
td:first-child,th:first-child{{text-align:left}}.ok{{color:#2a7a2a;font-weight:600}}.bad{{color:#c00;font-weight:600}}
svg{{display:block;margin:12px 0}}.title{{font-weight:600;font-size:14px}}.tick{{font-size:11px;fill:#555}}
pre{{background:#f6f6f6;padding:8px;overflow:auto}}
</style></head><body>
<h1>parkme-loadtest: {scenario}</h1>
<p>run <b>{run}</b> against <code>{url}</code>, encoding {encoding}, seed {seed}, {secs:.1} s of traffic — {verdict}</p>
"#,
        run = escape(&report.run_id),
        scenario = escape(report.scenario),
        url = escape(&report.url),
        encoding = report.encoding.name(),
        seed = report.seed,
        secs = report.duration_s,
    );
    let _ = write!(
        page,
        "<table><tr><th>throughput</th><th>per second</th><th>total</th></tr>\
<tr><td>sensor events acknowledged</td><td>{:.1}</td><td>{}</td></tr>\
<tr><td>bookings created</td><td>{:.1}</td><td>{}</td></tr>\
<tr><td>deltas received</td><td>{:.1}</td><td>{}</td></tr></table>",
        report.sensor_events_per_sec,
        report.sensor_events_acked,
        report.bookings_per_sec,
        report.bookings_created,
        report.deltas_per_sec,
        report.deltas_received
    );
    page.push_str("<table><tr><th>latency (ms)</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>count</th></tr>");
    page.push_str(&latency_row("booking", &report.booking_latency_ms));
    page.push_str(&latency_row(
        "booking attempt",
        &report.booking_attempt_latency_ms,
    ));
    page.push_str(&latency_row("sensor ack", &report.sensor_ack_latency_ms));
    page.push_str(&latency_row("delivery", &report.delivery_latency_ms));
    page.push_str(&latency_row("sensor reconnect", &report.reconnect_ms));
    page.push_str("</table>");
    let _ = write!(
        page,
        "<table><tr><th>invariant</th><th>violations</th></tr>\
<tr><td>double_bookings</td><td>{}</td></tr><tr><td>lost_bookings</td><td>{}</td></tr>\
<tr><td>lost_acks</td><td>{}</td></tr><tr><td>seq_gaps</td><td>{}</td></tr>\
<tr><td>bogus_acks</td><td>{}</td></tr></table>",
        report.double_bookings,
        report.lost_bookings,
        report.lost_acks,
        report.seq_gaps,
        report.bogus_acks
    );
    page.push_str(&latency_chart(report));
    page.push_str(&throughput_charts(report));
    if !report.errors.is_empty() {
        page.push_str("<table><tr><th>error code</th><th>count</th></tr>");
        for (code, n) in &report.errors {
            let _ = write!(page, "<tr><td>{}</td><td>{n}</td></tr>", escape(code));
        }
        page.push_str("</table>");
    }
    let _ = writeln!(
        page,
        "<h2>Summary</h2><pre>{}</pre></body></html>",
        escape(&report.summary())
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_round_up_nicely() {
        assert!((nice_max(7.3) - 10.0).abs() < 1e-9);
        assert!((nice_max(230.0) - 250.0).abs() < 1e-9);
        assert!((nice_max(0.0) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn the_nines_axis_spreads_the_tail() {
        assert!(nines(0.0).abs() < 1e-9);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert!((nines(100.0) - 5.0).abs() < 1e-9);
    }

    #[test]
    fn charts_are_inline_svg_with_escaped_text() {
        let svg = chart(
            "a <b> & c",
            "ms",
            &[Series {
                name: "x",
                points: vec![(0.0, 1.0), (1.0, 2.0)],
            }],
            (0.0, 1.0),
            &[(0.0, "0".into())],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        assert!(svg.contains("<polyline"));
        assert!(!svg.contains("<script"));
    }
}
