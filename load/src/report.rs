//! Reports: the table on stdout, `key=value` lines for scripts, the JSON
//! file, and a self-contained HTML page with inline SVG plots.

use std::fmt::Write as _;

use crate::runner::{OpSummary, RunResult};

/// The table of one or more runs, one row per operation (and `all` when a
/// run has several).
pub fn table(runs: &[RunResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<18} {:<17} {:>6} {:>9} {:>9} {:>7} {:>13} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "run", "op", "model", "ok", "ok/s", "errors", "503 (+R-A)", "t/o", "p50", "p90", "p95", "p99", "p99.9", "max ms"
    );
    for run in runs {
        if let Some(why) = &run.skipped {
            let _ = writeln!(out, "{:<18} SKIPPED: {why}", run.label);
            continue;
        }
        let model = match run.rate {
            Some(r) => format!("{r:.0}/s"),
            None => format!("c{}", run.connections),
        };
        let mut rows: Vec<&OpSummary> = run.ops.iter().collect();
        if run.ops.len() > 1 {
            rows.push(&run.total);
        }
        for op in rows {
            let l = &op.latency_ms;
            let _ = writeln!(
                out,
                "{:<18} {:<17} {:>6} {:>9} {:>9.1} {:>7} {:>13} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                run.label,
                op.op,
                model,
                op.ok,
                op.ok_rps,
                op.errors,
                format!("{} (+{})", op.s503, op.s503_retry_after),
                op.timeouts,
                l.p50,
                l.p90,
                l.p95,
                l.p99,
                l.p999,
                l.max
            );
        }
        for note in &run.notes {
            let _ = writeln!(out, "{:<18} note: {note}", run.label);
        }
        let errs: Vec<&String> = run.ops.iter().flat_map(|o| &o.error_samples).take(5).collect();
        for e in errs {
            let _ = writeln!(out, "{:<18} error sample: {e}", run.label);
        }
    }
    out
}

/// `key=value` lines of one run's total, for shell scripts.
pub fn kv(run: &RunResult) -> String {
    let t = &run.total;
    let l = &t.latency_ms;
    let r = &t.latency_503_ms;
    let mut out = String::new();
    let mut put = |k: &str, v: String| {
        let _ = writeln!(out, "{k}={v}");
    };
    put("label", run.label.clone());
    put("scenario", run.scenario.clone());
    put("skipped", u8::from(run.skipped.is_some()).to_string());
    put("model", run.model.clone());
    put("rate", run.rate.map_or("0".into(), |r| format!("{r:.3}")));
    put("connections", run.connections.to_string());
    put("duration_s", format!("{:.3}", run.duration_s));
    put("requests", t.requests.to_string());
    put("ok", t.ok.to_string());
    put("ok_rps", format!("{:.3}", t.ok_rps));
    put("errors", t.errors.to_string());
    put("socket_errors", t.socket_errors.to_string());
    put("timeouts", t.timeouts.to_string());
    put("bad_body", t.bad_body.to_string());
    put("s503", t.s503.to_string());
    put("s503_retry_after", t.s503_retry_after.to_string());
    put("s429", t.s429.to_string());
    put("backlog_expired", run.backlog_expired.to_string());
    for (k, v) in [
        ("p50_ms", l.p50),
        ("p90_ms", l.p90),
        ("p95_ms", l.p95),
        ("p99_ms", l.p99),
        ("p999_ms", l.p999),
        ("max_ms", l.max),
        ("mean_ms", l.mean),
        ("p50_503_ms", r.p50),
        ("p99_503_ms", r.p99),
        ("max_503_ms", r.max),
    ] {
        put(k, format!("{v:.3}"));
    }
    out
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" step for about `n` ticks over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f < 1.5 {
        1.0
    } else if f < 3.5 {
        2.0
    } else if f < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

struct Series<'a> {
    name: String,
    color: &'a str,
    points: Vec<(f64, f64)>,
    dashed: bool,
}

/// A line chart as inline SVG. `x_ticks`: explicit ticks (value, label).
fn chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    x_ticks: Option<Vec<(f64, String)>>,
) -> String {
    let (w, h) = (560.0, 280.0);
    let (ml, mr, mt, mb) = (60.0, 110.0, 28.0, 44.0);
    let pw = w - ml - mr;
    let ph = h - mt - mb;
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(svg, r#"<text x="{ml}" y="16" font-size="13" font-weight="bold">{}</text>"#, esc(title));
    if all.is_empty() {
        let _ = write!(svg, r#"<text x="{}" y="{}">no data</text></svg>"#, ml + 10.0, mt + 30.0);
        return svg;
    }
    let x_min = all.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let mut x_max = all.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    if x_max <= x_min {
        x_max = x_min + 1.0;
    }
    let y_top = all.iter().map(|p| p.1).fold(0.0, f64::max);
    let y_step = nice_step(if y_top > 0.0 { y_top } else { 1.0 }, 5.0);
    let y_max = ((y_top / y_step).ceil() * y_step).max(y_step);
    let sx = |x: f64| ml + (x - x_min) / (x_max - x_min) * pw;
    let sy = |y: f64| mt + ph - (y / y_max) * ph;
    // Grid and y ticks.
    let mut y = 0.0;
    while y <= y_max + y_step * 0.01 {
        let py = sy(y);
        let _ = write!(
            svg,
            r##"<line x1="{ml}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            ml + pw,
            ml - 6.0,
            py + 4.0,
            fmt_num(y)
        );
        y += y_step;
    }
    let ticks = x_ticks.unwrap_or_else(|| {
        let step = nice_step(x_max - x_min, 8.0);
        let mut v = (x_min / step).ceil() * step;
        let mut t = Vec::new();
        while v <= x_max + step * 0.01 {
            t.push((v, fmt_num(v)));
            v += step;
        }
        t
    });
    for (v, label) in ticks {
        if v < x_min - 1e-9 || v > x_max + 1e-9 {
            continue;
        }
        let px = sx(v);
        let _ = write!(
            svg,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{mt}" y2="{:.1}" stroke="#eee"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            mt + ph,
            mt + ph + 14.0,
            esc(&label)
        );
    }
    let _ = write!(
        svg,
        r##"<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#888"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(14,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
        ml + pw / 2.0,
        h - 8.0,
        esc(x_label),
        mt + ph / 2.0,
        esc(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        if s.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let dash = if s.dashed { r#" stroke-dasharray="4 3""# } else { "" };
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.6"{dash} points="{}"/>"#,
            s.color,
            pts.join(" ")
        );
        if s.points.len() == 1 {
            let (x, y) = s.points[0];
            let _ = write!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#, sx(x), sy(y), s.color);
        }
        let ly = mt + 12.0 + i as f64 * 16.0;
        let lx = ml + pw + 12.0;
        let _ = write!(
            svg,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 18.0,
            s.color,
            lx + 22.0,
            ly + 4.0,
            esc(&s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn ms(v: f64) -> String {
    format!("{v:.2}")
}

fn run_html(run: &RunResult, out: &mut String) {
    let model = match run.rate {
        Some(r) => format!("open model, {r:.1} req/s offered"),
        None => "closed model".into(),
    };
    let _ = write!(
        out,
        "<h2 id=\"{}\">{} <small>({}; {}; {} connections; {:.0} s measured after {:.0} s warm-up; timeout {:.0} s; setup {:.1} s)</small></h2>",
        esc(&run.label),
        esc(&run.label),
        esc(&run.scenario),
        model,
        run.connections,
        run.duration_s,
        run.warmup_s,
        run.timeout_s,
        run.setup_s
    );
    if let Some(why) = &run.skipped {
        let _ = write!(out, "<p class=\"skip\">Skipped: {}</p>", esc(why));
        return;
    }
    out.push_str("<table><tr><th>op</th><th>requests</th><th>ok</th><th>ok/s</th><th>errors</th><th>statuses</th><th>503 (with Retry-After)</th><th>timeouts</th><th>socket errors</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max (ms)</th></tr>");
    let mut rows: Vec<&OpSummary> = run.ops.iter().collect();
    if run.ops.len() > 1 {
        rows.push(&run.total);
    }
    for op in rows {
        let l = &op.latency_ms;
        let statuses: Vec<String> = op.statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&op.op),
            op.requests,
            op.ok,
            op.ok_rps,
            op.errors,
            esc(&statuses.join(", ")),
            op.s503,
            op.s503_retry_after,
            op.timeouts,
            op.socket_errors,
            ms(l.p50),
            ms(l.p90),
            ms(l.p95),
            ms(l.p99),
            ms(l.p999),
            ms(l.max)
        );
    }
    out.push_str("</table>");
    if run.total.s503 > 0 {
        let r = &run.total.latency_503_ms;
        let _ = write!(
            out,
            "<p>503 responses: {} ({} with Retry-After); their latency p50 {} ms, p99 {} ms, max {} ms.</p>",
            run.total.s503, run.total.s503_retry_after, ms(r.p50), ms(r.p99), ms(r.max)
        );
    }
    if let Some(s) = run.scheduled {
        let _ = write!(out, "<p>Due in the measured window: {s}; never sent (client backlog): {}.</p>", run.backlog_expired);
    }
    for note in &run.notes {
        let _ = write!(out, "<p class=\"note\">{}</p>", esc(note));
    }
    let samples: Vec<&String> = run.ops.iter().flat_map(|o| &o.error_samples).collect();
    if !samples.is_empty() {
        out.push_str("<details><summary>error samples</summary><ul>");
        for s in samples {
            let _ = write!(out, "<li><code>{}</code></li>", esc(s));
        }
        out.push_str("</ul></details>");
    }
    let t = &run.timeline;
    type Get = fn(&crate::stats::Point) -> f64;
    let lat: [(&str, usize, Get); 4] = [
        ("p50", 0, |p: &crate::stats::Point| p.p50_ms),
        ("p90", 1, |p: &crate::stats::Point| p.p90_ms),
        ("p99", 3, |p: &crate::stats::Point| p.p99_ms),
        ("max", 7, |p: &crate::stats::Point| p.max_ms),
    ];
    let series: Vec<Series> = lat
        .iter()
        .map(|(name, c, f)| Series {
            name: (*name).to_string(),
            color: COLORS[*c],
            points: t.iter().map(|p| (p.t, f(p))).collect(),
            dashed: *name == "max",
        })
        .collect();
    out.push_str("<div class=\"charts\">");
    out.push_str(&chart(
        "Latency of successes over time (per second)",
        "seconds",
        "ms",
        &series,
        None,
    ));
    let tput = vec![
        Series {
            name: "ok/s".into(),
            color: COLORS[2],
            points: t.iter().map(|p| (p.t, p.ok_rps)).collect(),
            dashed: false,
        },
        Series {
            name: "errors/s".into(),
            color: COLORS[3],
            points: t.iter().map(|p| (p.t, p.err_rps)).collect(),
            dashed: false,
        },
        Series {
            name: "503/s".into(),
            color: COLORS[1],
            points: t.iter().map(|p| (p.t, p.s503_rps)).collect(),
            dashed: true,
        },
    ];
    out.push_str(&chart("Throughput over time", "seconds", "requests / s", &tput, None));
    // Percentile plot: x = log10(1 / (1 - p)).
    let xf = |pct: f64| {
        let q = (pct / 100.0).min(0.99999);
        (1.0 / (1.0 - q)).log10()
    };
    let ticks = vec![
        (xf(0.0), "0%".into()),
        (xf(90.0), "90%".into()),
        (xf(99.0), "99%".into()),
        (xf(99.9), "99.9%".into()),
        (xf(99.99), "99.99%".into()),
        (xf(99.999), "99.999%".into()),
    ];
    let mut pct_series = Vec::new();
    for (i, op) in run.ops.iter().enumerate() {
        pct_series.push(Series {
            name: op.op.clone(),
            color: COLORS[i % COLORS.len()],
            points: op.curve.iter().map(|(p, v)| (xf(*p), *v)).collect(),
            dashed: false,
        });
    }
    out.push_str(&chart(
        "Latency by percentile (successes)",
        "percentile",
        "ms",
        &pct_series,
        Some(ticks),
    ));
    out.push_str("</div>");
}

/// The whole HTML page. `preface`: preformatted text shown first (the
/// bench's summary).
pub fn html(title: &str, runs: &[RunResult], preface: Option<&str>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{}</title><style>
body{{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}}
table{{border-collapse:collapse;margin:8px 0;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}
h2 small{{font-weight:normal;color:#666;font-size:13px}}
.charts svg{{margin:6px 12px 6px 0;border:1px solid #eee}}
.skip{{color:#a60;font-weight:bold}} .note{{color:#555}}
pre{{background:#f6f6f6;padding:10px;overflow-x:auto}}
</style></head><body><h1>{}</h1>"#,
        esc(title),
        esc(title)
    );
    if let Some(p) = preface {
        let _ = write!(out, "<pre>{}</pre>", esc(p));
    }
    out.push_str("<ul>");
    for run in runs {
        let _ = write!(
            out,
            "<li><a href=\"#{}\">{}</a> — {}</li>",
            esc(&run.label),
            esc(&run.label),
            esc(&run.scenario)
        );
    }
    out.push_str("</ul>");
    for run in runs {
        run_html(run, &mut out);
    }
    out.push_str("<p><small>Latency is measured from the moment a request was due (open model) or sent (closed model) to the end of the response body. Percentiles are of successful (2xx) responses; errors are counted, never averaged in.</small></p></body></html>\n");
    out
}
