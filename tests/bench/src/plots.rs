//! The plots of the report, as SVG files written by this small module (no plotting crate: two
//! kinds of chart with axes, ticks and a legend are a few hundred lines of text output, and
//! the files stay small, diffable and reproducible).
//!
//! - Latency distributions: empirical CDFs, latency on a logarithmic axis.
//! - Failure-detection trade-off: mean detection time against false suspicions per hour
//!   (logarithmic), one point per detector configuration, fixed timeouts joined by a line.

use std::fmt::Write as _;

const W: f64 = 720.0;
const H: f64 = 440.0;
const L: f64 = 80.0; // left margin
const R: f64 = 20.0;
const T: f64 = 50.0;
const B: f64 = 60.0;

/// Colours of the series, in order (tenure first).
pub const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn header(title: &str, w: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{H}" viewBox="0 0 {w} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    s
}

/// Width of the trade-off chart, and of its legend column on the right.
const TW: f64 = 980.0;
const LEGEND: f64 = 300.0;

/// A logarithmic axis from `lo` to `hi` (both > 0) mapped onto `[a, b]` pixels.
struct LogAxis {
    lo: f64,
    hi: f64,
    a: f64,
    b: f64,
}

impl LogAxis {
    fn map(&self, v: f64) -> f64 {
        let v = v.clamp(self.lo, self.hi);
        self.a + (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln()) * (self.b - self.a)
    }
    /// Powers of ten inside the range, and 2 and 5 times them.
    fn ticks(&self) -> Vec<(f64, bool)> {
        let mut v = vec![];
        let mut d = 10f64.powf(self.lo.log10().floor());
        while d <= self.hi * 1.0001 {
            for (m, major) in [(1.0, true), (2.0, false), (5.0, false)] {
                let x = d * m;
                if x >= self.lo * 0.9999 && x <= self.hi * 1.0001 {
                    v.push((x, major));
                }
            }
            d *= 10.0;
        }
        v
    }
}

fn fmt_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{} ms", us / 1e3)
    } else {
        format!("{us} µs")
    }
}

/// Empirical CDFs of latency samples (ns, sorted), x logarithmic in µs.
pub fn cdf(title: &str, series: &[(String, &[u64])]) -> String {
    let all: Vec<u64> = series.iter().flat_map(|(_, s)| s.iter().copied()).collect();
    let (min, max) = (
        all.iter().copied().min().unwrap_or(1_000).max(1) as f64 / 1e3,
        all.iter().copied().max().unwrap_or(1_000_000).max(2) as f64 / 1e3,
    );
    let x = LogAxis {
        lo: 10f64.powf(min.log10().floor()),
        hi: 10f64
            .powf(max.log10().ceil())
            .max(10f64.powf(min.log10().floor()) * 10.0),
        a: L,
        b: W - R,
    };
    let y = |f: f64| H - B - f * (H - B - T);
    let mut s = header(title, W);
    // Grid and ticks.
    for (v, major) in x.ticks() {
        let px = x.map(v);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{T}" x2="{px:.1}" y2="{}" stroke="{}"/>"##,
            H - B,
            if major { "#ccc" } else { "#eee" }
        );
        if major {
            let _ = writeln!(
                s,
                r#"<text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"#,
                H - B + 18.0,
                fmt_us(v)
            );
        }
    }
    for i in 0..=10 {
        let f = i as f64 / 10.0;
        let _ = writeln!(
            s,
            r##"<line x1="{L}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#eee"/>"##,
            y(f),
            W - R
        );
        if i % 2 == 0 {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{f:.1}</text>"#,
                L - 6.0,
                y(f) + 4.0
            );
        }
    }
    let _ = writeln!(
        s,
        r#"<rect x="{L}" y="{T}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        W - R - L,
        H - B - T
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">latency (log scale)</text>"#,
        (L + W - R) / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{0}" text-anchor="middle" transform="rotate(-90 18 {0})">fraction of operations ≤ latency</text>"#,
        (T + H - B) / 2.0
    );
    for (i, (name, samples)) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let n = samples.len();
        if n > 0 {
            // At most ~600 points: every k-th sample, plus the last.
            let step = n.div_ceil(600).max(1);
            let mut pts = String::new();
            let mut prev_y = y(0.0);
            let x0 = x.map(samples[0] as f64 / 1e3);
            let _ = write!(pts, "{x0:.1},{prev_y:.1} ");
            let mut idx: Vec<usize> = (0..n).step_by(step).collect();
            if idx.last() != Some(&(n - 1)) {
                idx.push(n - 1);
            }
            for j in idx {
                let px = x.map(samples[j] as f64 / 1e3);
                let py = y((j + 1) as f64 / n as f64);
                let _ = write!(pts, "{px:.1},{prev_y:.1} {px:.1},{py:.1} ");
                prev_y = py;
            }
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
                pts.trim_end()
            );
        }
        let ly = T + 18.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{0}" y1="{ly}" x2="{1}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{2}" y="{3}">{4} (n = {n})</text>"#,
            L + 12.0,
            L + 36.0,
            L + 42.0,
            ly + 4.0,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// One detector configuration: name, mean detection (ms), false suspicions per hour.
#[derive(Clone, Debug)]
pub struct DetPoint {
    pub name: String,
    pub detect_ms: f64,
    pub false_per_h: f64,
}

/// Parses the first table whose header starts with `| detector | mean detection` (the output
/// of `detector_bench`, also copied into BENCHMARKS.md).
pub fn parse_detector_table(text: &str) -> Vec<DetPoint> {
    let mut out = vec![];
    let mut inside = false;
    for line in text.lines() {
        let l = line.trim();
        if !inside {
            inside = l.starts_with("| detector | mean detection");
            continue;
        }
        if !l.starts_with('|') {
            if out.is_empty() {
                continue;
            }
            break;
        }
        let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 5 || cells[0].starts_with("---") {
            continue;
        }
        let num = |c: &str| {
            c.split_whitespace()
                .next()
                .and_then(|x| x.parse::<f64>().ok())
        };
        if let (Some(d), Some(f)) = (num(cells[1]), num(cells[4])) {
            out.push(DetPoint {
                name: cells[0].to_string(),
                detect_ms: d,
                false_per_h: f,
            });
        }
    }
    out
}

/// The failure-detection trade-off chart.
pub fn tradeoff(title: &str, pts: &[DetPoint]) -> String {
    let dmax = pts.iter().map(|p| p.detect_ms).fold(100.0, f64::max);
    let xmax = (dmax / 100.0).ceil() * 100.0 + 50.0;
    let x_right = TW - R - LEGEND;
    let xmap = |v: f64| L + v / xmax * (x_right - L);
    let fmin = pts
        .iter()
        .map(|p| p.false_per_h)
        .fold(f64::INFINITY, f64::min);
    let fmax = pts.iter().map(|p| p.false_per_h).fold(1.0, f64::max);
    let y = LogAxis {
        lo: 10f64.powf(fmin.max(0.1).log10().floor()),
        hi: 10f64.powf(fmax.log10().ceil()),
        a: H - B,
        b: T,
    };
    let mut s = header(title, TW);
    for (v, major) in y.ticks() {
        let py = y.map(v);
        let _ = writeln!(
            s,
            r##"<line x1="{L}" y1="{py:.1}" x2="{x_right}" y2="{py:.1}" stroke="{}"/>"##,
            if major { "#ccc" } else { "#eee" }
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{v}</text>"#,
            L - 6.0,
            py + 4.0
        );
    }
    let mut t = 0.0;
    while t <= xmax {
        let px = xmap(t);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{T}" x2="{px:.1}" y2="{}" stroke="#eee"/><text x="{px:.1}" y="{}" text-anchor="middle">{t}</text>"##,
            H - B,
            H - B + 18.0
        );
        t += 50.0;
    }
    let _ = writeln!(
        s,
        r#"<rect x="{L}" y="{T}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        x_right - L,
        H - B - T
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">mean detection time of a process stop (ms)</text>"#,
        (L + x_right) / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{0}" text-anchor="middle" transform="rotate(-90 18 {0})">false suspicions per hour (log scale)</text>"#,
        (T + H - B) / 2.0
    );
    let group = |n: &str| {
        if n.starts_with("fixed") {
            2
        } else if n.starts_with("phi") {
            1
        } else {
            0
        }
    };
    // Fixed timeouts: a line through their points in detection order.
    let mut fixed: Vec<&DetPoint> = pts.iter().filter(|p| group(&p.name) == 2).collect();
    fixed.sort_by(|a, b| a.detect_ms.total_cmp(&b.detect_ms));
    if fixed.len() > 1 {
        let line: Vec<String> = fixed
            .iter()
            .map(|p| format!("{:.1},{:.1}", xmap(p.detect_ms), y.map(p.false_per_h)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5" stroke-dasharray="4 3"/>"#,
            line.join(" "),
            COLOURS[2]
        );
    }
    for p in pts {
        let g = group(&p.name);
        let (px, py) = (xmap(p.detect_ms), y.map(p.false_per_h));
        let c = COLOURS[g];
        match g {
            0 => {
                let _ = writeln!(s, r#"<circle cx="{px:.1}" cy="{py:.1}" r="6" fill="{c}"/>"#);
            }
            1 => {
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{c}"/>"#,
                    px - 5.0,
                    py - 5.0
                );
            }
            _ => {
                let _ = writeln!(
                    s,
                    r#"<path d="M{px:.1},{:.1} L{:.1},{:.1} L{:.1},{:.1} Z" fill="{c}"/>"#,
                    py - 6.0,
                    px - 6.0,
                    py + 5.0,
                    px + 6.0,
                    py + 5.0
                );
            }
        }
    }
    // Legend: every point named, on the right.
    for (i, p) in pts.iter().enumerate() {
        let ly = T + 10.0 + 16.0 * i as f64;
        let c = COLOURS[group(&p.name)];
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="8" height="8" fill="{c}"/><text x="{}" y="{}" font-size="10">{} ({:.0} ms, {}/h)</text>"#,
            x_right + 8.0,
            ly - 7.0,
            x_right + 20.0,
            ly + 1.0,
            esc(&shorten(&p.name)),
            p.detect_ms,
            p.false_per_h
        );
    }
    s.push_str("</svg>\n");
    s
}

fn shorten(n: &str) -> String {
    n.replace("threshold", "thr.")
        .replace("pause allowance 1 interval", "pause allow.")
        .replace(", unbounded step", ", unbounded")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_detector_table() {
        let t = "x\n| detector | mean detection | p99 detection | missed | false suspicions / h | of which process | y |\n|---|---:|---:|---:|---:|---:|---:|\n| adaptive (default) | 228 ms | 360 ms | 0 | 17.0 | 8.3 | 31.4 |\n| fixed 150 ms | 135 ms | 226 ms | 0 | 556.3 | 16.6 | — |\n\nafter\n";
        let p = parse_detector_table(t);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].detect_ms, 135.0);
        assert_eq!(p[1].false_per_h, 556.3);
        let svg = tradeoff("t", &p);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        let a = [100_000u64, 200_000, 300_000];
        let svg = cdf("c", &[("a".to_string(), &a[..])]);
        assert!(svg.contains("polyline"));
    }
}

/// One series of a [`lines`] chart.
#[derive(Clone, Debug)]
pub struct Line {
    pub name: String,
    /// Index into [`COLOURS`].
    pub colour: usize,
    pub dashed: bool,
    /// A dot at every point (for few points, such as a parameter sweep).
    pub markers: bool,
    pub points: Vec<(f64, f64)>,
}

/// An axis, linear or logarithmic, from the data's range onto `[a, b]` pixels.
struct Axis {
    log: bool,
    lo: f64,
    hi: f64,
    a: f64,
    b: f64,
}

impl Axis {
    fn of(values: impl Iterator<Item = f64>, log: bool, a: f64, b: f64) -> Axis {
        let v: Vec<f64> = values
            .filter(|x| x.is_finite() && (!log || *x > 0.0))
            .collect();
        let (mut lo, mut hi) = (
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        );
        if !lo.is_finite() {
            (lo, hi) = (1.0, 10.0);
        }
        if log {
            lo = 10f64.powf(lo.log10().floor());
            hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
        } else {
            lo = lo.min(0.0);
            if hi <= lo {
                hi = lo + 1.0;
            }
            hi += (hi - lo) * 0.05;
        }
        Axis { log, lo, hi, a, b }
    }
    fn map(&self, v: f64) -> f64 {
        let f = if self.log {
            (v.max(self.lo).ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        self.a + f.clamp(0.0, 1.0) * (self.b - self.a)
    }
    /// Tick values: powers of ten (log) or about eight round steps (linear).
    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let mut v = vec![];
            let mut d = self.lo;
            while d <= self.hi * 1.0001 {
                v.push(d);
                d *= 10.0;
            }
            v
        } else {
            let raw = (self.hi - self.lo) / 8.0;
            let mag = 10f64.powf(raw.log10().floor());
            let step = [1.0, 2.0, 5.0, 10.0]
                .iter()
                .map(|m| m * mag)
                .find(|s| *s >= raw)
                .unwrap_or(mag * 10.0);
            let mut v = vec![];
            let mut t = (self.lo / step).ceil() * step;
            while t <= self.hi + 1e-9 {
                v.push(t);
                t += step;
            }
            v
        }
    }
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 1000.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// Lines (or points joined by lines) on linear or logarithmic axes (`log`: x, y), with a
/// legend on the right.
pub fn lines(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    log: (bool, bool),
    series: &[Line],
) -> String {
    let right = TW - LEGEND;
    let x = Axis::of(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.0)),
        log.0,
        L,
        right - R,
    );
    let y = Axis::of(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
        log.1,
        H - B,
        T,
    );
    let mut s = header(title, TW);
    for v in x.ticks() {
        let px = x.map(v);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{T}" x2="{px:.1}" y2="{}" stroke="#ddd"/><text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"##,
            H - B,
            H - B + 18.0,
            fmt_tick(v)
        );
    }
    for v in y.ticks() {
        let py = y.map(v);
        let _ = writeln!(
            s,
            r##"<line x1="{L}" y1="{py:.1}" x2="{}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            right - R,
            L - 6.0,
            py + 4.0,
            fmt_tick(v)
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{L}" y="{T}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        right - R - L,
        H - B - T
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (L + right - R) / 2.0,
        H - 18.0,
        esc(xlabel)
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{0}" text-anchor="middle" transform="rotate(-90 18 {0})">{1}</text>"#,
        (T + H - B) / 2.0,
        esc(ylabel)
    );
    for (i, l) in series.iter().enumerate() {
        let c = COLOURS[l.colour % COLOURS.len()];
        let dash = if l.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let mut pts = String::new();
        for (px, py) in &l.points {
            let _ = write!(pts, "{:.1},{:.1} ", x.map(*px), y.map(*py));
        }
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"{dash}/>"#,
            pts.trim_end()
        );
        if l.markers {
            for (px, py) in &l.points {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{c}"/>"#,
                    x.map(*px),
                    y.map(*py)
                );
            }
        }
        let ly = T + 10.0 + 20.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{0}" y1="{ly}" x2="{1}" y2="{ly}" stroke="{c}" stroke-width="3"{dash}/><text x="{2}" y="{3}">{4}</text>"#,
            right + 4.0,
            right + 30.0,
            right + 36.0,
            ly + 4.0,
            esc(&l.name)
        );
    }
    s.push_str("</svg>\n");
    s
}
