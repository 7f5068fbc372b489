//! HTML building blocks of `smelt ui`: escaping, the page frame, tables and
//! inline SVG charts (bars, a pipeline DAG, curves). Every value that comes
//! from data goes through [`esc`]; URLs are built with [`seg`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
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

/// One path segment or query value, percent-encoded (RFC 3986 unreserved characters kept).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Percent-decoding of one path segment or query value; `None` when it is not UTF-8 or a `%` is malformed.
pub fn unseg(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Thousands separators: 1234567 -> "1,234,567".
pub fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A signed change: "+12", "-3", "0".
pub fn delta(a: u64, b: u64) -> String {
    match b.cmp(&a) {
        std::cmp::Ordering::Greater => format!("+{}", int(b - a)),
        std::cmp::Ordering::Less => format!("-{}", int(a - b)),
        std::cmp::Ordering::Equal => "0".into(),
    }
}

/// The first 19 characters of an RFC 3339 time, with a space for the `T`.
pub fn when(t: &str) -> String {
    t.chars().take(19).collect::<String>().replacen('T', " ", 1)
}

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 0; color: #222; background: #fff; }
header { background: #24323f; color: #fff; padding: 0.5em 1.5em; display: flex; gap: 1.5em; align-items: baseline; }
header a { color: #dfe8f0; text-decoration: none; } header a.brand { color: #fff; font-weight: bold; font-size: 1.2em; }
main { padding: 0.5em 1.5em 2em; max-width: 1280px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #d4d4d4; padding: 3px 8px; font-size: 13px; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f5f7; }
code, pre { font-family: ui-monospace, monospace; font-size: 12px; }
pre { background: #f6f8fa; border: 1px solid #ddd; padding: 0.6em; overflow-x: auto; max-height: 40em; white-space: pre-wrap; word-break: break-all; }
.muted { color: #777; } .bad { color: #b03a2e; font-weight: bold; } .good { color: #1e7e34; }
.plus { color: #1e7e34; } .minus { color: #b03a2e; }
.note { background: #fff6d5; border: 1px solid #e0c060; padding: 0.5em; }
.crumbs { color: #777; margin: 0.8em 0 0; font-size: 13px; }
svg text { font-size: 12px; fill: #222; } svg text.title { font-weight: bold; font-size: 13px; }
.grid td.cell { width: 14px; height: 14px; padding: 0; border: 2px solid #fff; }
.grid td.cell a { display: block; width: 14px; height: 14px; }
.s-succeeded { background: #2e9b4f; } .s-failed { background: #c0392b; } .s-running { background: #3b6ea5; }
.s-waiting { background: #e0a030; } .s-other { background: #999; }
form.inline { display: inline; } textarea { width: 100%; font-family: ui-monospace, monospace; }
figure { margin: 0.5em 0 1em; }
"#;

/// A whole page: `base` is the relative path from the page to the root (`""`, `"../"`, `"../../"`),
/// so the same links work when served and when exported as files.
pub fn page(title: &str, base: &str, crumbs: &[(String, String)], body: &str, served: bool) -> String {
    let mut s = String::with_capacity(body.len() + 4096);
    let _ = write!(
        s,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<base href="{base}"><title>{t} - smelt</title><style>{STYLE}</style></head><body>
<header><a class="brand" href="index.html">smelt</a><a href="index.html">Datasets</a><a href="runs/index.html">Runs</a><a href="train/index.html">Training</a>{sql}</header>
<main>"#,
        base = esc(base),
        t = esc(title),
        sql = if served { r#"<a href="sql.html">SQL</a>"# } else { "" },
    );
    if !crumbs.is_empty() {
        s.push_str(r#"<p class="crumbs">"#);
        for (i, (href, label)) in crumbs.iter().enumerate() {
            if i > 0 {
                s.push_str(" / ");
            }
            let _ = write!(s, r#"<a href="{}">{}</a>"#, esc(href), esc(label));
        }
        s.push_str("</p>");
    }
    let _ = write!(s, "<h1>{}</h1>\n{body}\n</main></body></html>\n", esc(title));
    s
}

/// A link; `href` is relative to the root and is escaped here.
pub fn link(href: &str, label: &str) -> String {
    format!(r#"<a href="{}">{}</a>"#, esc(href), esc(label))
}

/// A table: cells are HTML already; a header starting with `#` is a numeric (right-aligned) column.
pub fn table(id: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let numeric: Vec<bool> = headers.iter().map(|h| h.starts_with('#')).collect();
    let mut s = format!(r#"<table id="{}"><tr>"#, esc(id));
    for h in headers {
        let (class, h) = match h.strip_prefix('#') {
            Some(h) => (r#" class="n""#, h),
            None => ("", *h),
        };
        let _ = write!(s, "<th{class}>{}</th>", esc(h));
    }
    s.push_str("</tr>");
    for row in rows {
        s.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let class = if numeric.get(i).copied().unwrap_or(false) { r#" class="n""# } else { "" };
            let _ = write!(s, "<td{class}>{cell}</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>\n");
    s
}

pub const BAR: &str = "#3b6ea5";
pub const RED: &str = "#c0392b";
pub const GREEN: &str = "#2e9b4f";

/// A horizontal bar chart of (label, value); negative values are drawn left
/// of the axis in red (deltas), positive ones right of it.
pub fn bars(id: &str, title: &str, data: &[(String, f64)], fmt: impl Fn(f64) -> String) -> String {
    let row = 20.0;
    let (label_w, half, value_w) = (260.0, 230.0, 90.0);
    let signed = data.iter().any(|d| d.1 < 0.0);
    let plot = 2.0 * half;
    let width = label_w + plot + value_w;
    let height = 26.0 + row * data.len() as f64 + 4.0;
    let max = data.iter().map(|d| d.1.abs()).fold(0.0, f64::max);
    let zero = if signed { label_w + half } else { label_w };
    let scale = if signed { half } else { plot };
    let mut s = format!(
        r#"<figure><svg class="chart" id="{id}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"><text x="0" y="15" class="title">{t}</text>"#,
        id = esc(id),
        t = esc(title)
    );
    for (i, (label, v)) in data.iter().enumerate() {
        let y = 24.0 + row * i as f64;
        let w = if max > 0.0 { (v.abs() / max * scale).max(1.0) } else { 1.0 };
        let (x, colour, vx, anchor) =
            if *v < 0.0 { (zero - w, RED, zero + 4.0, "start") } else { (zero, BAR, zero + w + 4.0, "start") };
        let label = if label.chars().count() > 40 {
            format!("{}...", label.chars().take(38).collect::<String>())
        } else {
            label.clone()
        };
        let _ = write!(
            s,
            r#"<text x="{lx}" y="{ty}" text-anchor="end">{l}</text><rect class="bar" x="{x:.1}" y="{y}" width="{w:.1}" height="{h}" fill="{colour}"><title>{l}: {val}</title></rect><text x="{vx:.1}" y="{ty}" text-anchor="{anchor}">{val}</text>"#,
            lx = label_w - 6.0,
            ty = y + 13.0,
            l = esc(&label),
            h = row - 5.0,
            val = esc(&fmt(*v)),
        );
    }
    if signed {
        let _ = write!(s, r##"<line x1="{zero}" x2="{zero}" y1="20" y2="{height}" stroke="#555"/>"##);
    }
    s.push_str("</svg></figure>\n");
    s
}

/// One stage of a pipeline drawing.
pub struct Node {
    pub name: String,
    pub kind: String,
    pub inputs: Vec<String>,
    /// Rows the stage passed on (its funnel's rows_out), when known.
    pub rows_out: Option<u64>,
    /// Rows the stage dropped.
    pub dropped: Option<u64>,
}

/// The pipeline DAG as SVG: stages in layers by their longest path from a
/// source, edges labelled with the rows that flowed along them.
pub fn dag(id: &str, nodes: &[Node]) -> String {
    let index: BTreeMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let mut layer = vec![0usize; nodes.len()];
    // Stages are listed in a topological order by the compiler; relax a few times for safety.
    for _ in 0..nodes.len().min(64) {
        let mut changed = false;
        for (i, n) in nodes.iter().enumerate() {
            for input in &n.inputs {
                if let Some(&j) = index.get(input.as_str()) {
                    if layer[i] < layer[j] + 1 {
                        layer[i] = layer[j] + 1;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut row_in_layer = vec![0usize; nodes.len()];
    let mut per_layer: BTreeMap<usize, usize> = BTreeMap::new();
    for i in 0..nodes.len() {
        let slot = per_layer.entry(layer[i]).or_default();
        row_in_layer[i] = *slot;
        *slot += 1;
    }
    let (box_w, box_h, gap_x, gap_y) = (170.0, 46.0, 80.0, 24.0);
    let layers = per_layer.len().max(1) as f64;
    let rows = per_layer.values().copied().max().unwrap_or(1) as f64;
    let width = layers * box_w + (layers - 1.0) * gap_x + 20.0;
    let height = rows * box_h + (rows - 1.0) * gap_y + 20.0;
    let pos = |i: usize| (10.0 + layer[i] as f64 * (box_w + gap_x), 10.0 + row_in_layer[i] as f64 * (box_h + gap_y));
    let mut s = format!(
        r##"<figure><svg class="dag" id="{id}" role="img" aria-label="pipeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>"##,
        id = esc(id)
    );
    for (i, n) in nodes.iter().enumerate() {
        for input in &n.inputs {
            let Some(&j) = index.get(input.as_str()) else { continue };
            let ((x1, y1), (x2, y2)) = (pos(j), pos(i));
            let (x1, y1, x2, y2) = (x1 + box_w, y1 + box_h / 2.0, x2, y2 + box_h / 2.0);
            let label = nodes[j].rows_out.map(int).unwrap_or_default();
            let _ = write!(
                s,
                r##"<path class="edge" d="M{x1:.0},{y1:.0} C{cx:.0},{y1:.0} {cx:.0},{y2:.0} {x2:.0},{y2:.0}" fill="none" stroke="#555" marker-end="url(#arrow)"/><text class="rows" x="{tx:.0}" y="{ty:.0}" text-anchor="middle">{label}</text>"##,
                cx = (x1 + x2) / 2.0,
                tx = (x1 + x2) / 2.0,
                ty = (y1 + y2) / 2.0 - 4.0,
            );
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        let (x, y) = pos(i);
        let dropped = n.dropped.filter(|d| *d > 0).map(|d| format!(", -{}", int(d))).unwrap_or_default();
        let _ = write!(
            s,
            r##"<g class="stage"><rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="5" fill="#eef3f8" stroke="#3b6ea5"/><text x="{tx}" y="{y1}" font-weight="bold">{name}</text><text x="{tx}" y="{y2}">{kind}{dropped}</text><title>{name} ({kind}): rows out {out}{dropped}</title></g>"##,
            tx = x + 8.0,
            y1 = y + 18.0,
            y2 = y + 36.0,
            name = esc(&n.name),
            kind = esc(&n.kind),
            out = n.rows_out.map(int).unwrap_or_else(|| "?".into()),
        );
    }
    s.push_str("</svg></figure>\n");
    s
}

/// A line chart of one or more series of (x, y); `marks` are points drawn as red circles.
pub fn curve(id: &str, title: &str, series: &[(String, Vec<(f64, f64)>)], marks: &[(f64, f64)]) -> String {
    let (w, h, left, bottom) = (860.0, 300.0, 60.0, 30.0);
    let all = || series.iter().flat_map(|s| s.1.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all() {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return format!(r#"<p id="{}" class="muted">No points to draw.</p>"#, esc(id));
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 {
        y1 = y0 + 1.0;
    }
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - 10.0);
    let py = |y: f64| 20.0 + (1.0 - (y - y0) / (y1 - y0)) * (h - 20.0 - bottom);
    let mut s = format!(
        r##"<figure><svg class="chart" id="{id}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}"><text x="0" y="14" class="title">{t}</text><line x1="{left}" x2="{left}" y1="20" y2="{yb}" stroke="#999"/><line x1="{left}" x2="{w}" y1="{yb}" y2="{yb}" stroke="#999"/><text x="{lt}" y="24" text-anchor="end">{y1:.3}</text><text x="{lt}" y="{yb}" text-anchor="end">{y0:.3}</text><text x="{left}" y="{xt}">{x0}</text><text x="{w}" y="{xt}" text-anchor="end">{x1}</text>"##,
        id = esc(id),
        t = esc(title),
        yb = h - bottom,
        lt = left - 4.0,
        xt = h - bottom + 16.0,
    );
    let colours = [BAR, "#e67e22", GREEN, "#8e44ad"];
    for (k, (name, points)) in series.iter().enumerate() {
        let mut d = String::new();
        for (i, &(x, y)) in points.iter().enumerate() {
            let _ = write!(d, "{}{:.1},{:.1}", if i == 0 { "M" } else { " L" }, px(x), py(y));
        }
        let c = colours[k % colours.len()];
        let _ = write!(
            s,
            r#"<path class="series" d="{d}" fill="none" stroke="{c}" stroke-width="1.5"><title>{n}</title></path><text x="{lx}" y="{ly}" fill="{c}">{n}</text>"#,
            n = esc(name),
            lx = left + 10.0,
            ly = 36.0 + 14.0 * k as f64,
        );
    }
    for &(x, y) in marks {
        let _ = write!(s, r#"<circle class="mark" cx="{:.1}" cy="{:.1}" r="4" fill="{RED}"/>"#, px(x), py(y));
    }
    s.push_str("</svg></figure>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_encoding_round_trip() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        for s in ["cc-news", "a b/c?d=e&f", "ünï", "../x", "%"] {
            assert_eq!(unseg(&seg(s), false).as_deref(), Some(s));
        }
        assert_eq!(unseg("%zz", false), None);
        assert_eq!(unseg("%", false), None);
        assert_eq!(unseg("a+b", true).as_deref(), Some("a b"));
        assert_eq!(int(1_234_567), "1,234,567");
        assert_eq!(int(12), "12");
        assert_eq!(delta(5, 3), "-2");
    }

    #[test]
    fn the_dag_places_stages_in_layers_and_labels_edges() {
        let n = |name: &str, inputs: &[&str], rows: u64| Node {
            name: name.into(),
            kind: "t".into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            rows_out: Some(rows),
            dropped: None,
        };
        let svg = dag("g", &[n("a", &[], 1000), n("b", &["a"], 900), n("c", &["a"], 800), n("d", &["b", "c"], 700)]);
        assert_eq!(svg.matches(r#"class="edge""#).count(), 4);
        assert!(svg.contains(">1,000<") && svg.contains(">900<") && svg.contains(">800<"));
        // Three layers of 170 + two gaps of 80 + 20.
        assert!(svg.contains(r#"width="690""#), "{svg}");
    }
}
