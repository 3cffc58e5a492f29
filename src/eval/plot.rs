//! The evaluations' charts as SVG. Reliability diagrams of the router: for each tenth of
//! confidence, how often the router was right (bars) against how sure it was (the
//! diagonal), with how many messages fell there. Precision and recall of the personal-data
//! detector per kind, against its targets. Written directly as SVG markup: a chart of
//! rectangles, lines and labels needs no font files or raster backend, and the output is
//! byte-for-byte repeatable.

use std::fmt::Write as _;

use concierge_agent::router::eval::RoutingMetrics;
use concierge_guard::eval::PiiReport;

const WIDTH: f64 = 420.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 300.0;
const PLOT: f64 = 300.0;

/// The reliability diagram of `metrics`, titled `title`.
pub fn reliability_svg(title: &str, metrics: &RoutingMetrics) -> String {
    let x = |v: f64| LEFT + v * PLOT;
    let y = |v: f64| BOTTOM - v * (BOTTOM - 30.0);
    let mut svg = open_svg(WIDTH, HEIGHT, title);
    for tick in 0..=5 {
        let v = f64::from(tick) / 5.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{l}" y1="{yv}" x2="{r}" y2="{yv}" stroke="#e0e0e0"/><text x="{tl}" y="{ty}" text-anchor="end">{v:.1}</text><text x="{xv}" y="{bl}" text-anchor="middle">{v:.1}</text>"##,
            l = x(0.0),
            r = x(1.0),
            yv = y(v),
            tl = x(0.0) - 6.0,
            ty = y(v) + 4.0,
            xv = x(v),
            bl = BOTTOM + 16.0,
        );
    }
    for bin in &metrics.reliability {
        let low = f64::from(bin.low);
        let _ = writeln!(
            svg,
            r##"<rect x="{bx}" y="{by}" width="{bw}" height="{bh}" fill="#4c78a8"/><text x="{tx}" y="{ty}" text-anchor="middle" font-size="9">{n}</text>"##,
            bx = x(low) + 2.0,
            by = y(bin.accuracy),
            bw = PLOT / 10.0 - 4.0,
            bh = y(0.0) - y(bin.accuracy),
            tx = x(low + 0.05),
            ty = y(bin.accuracy) - 3.0,
            n = bin.count,
        );
    }
    let _ = write!(
        svg,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#e45756" stroke-dasharray="4 3"/>
<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333333"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#333333"/>
<text x="{cx}" y="{xl}" text-anchor="middle">confidence of the best intent (bars: share right; numbers: messages)</text>
<text x="14" y="{cy}" text-anchor="middle" transform="rotate(-90 14 {cy})">accuracy</text>
<text x="{cx}" y="{note}" text-anchor="middle">accuracy {acc:.3} · calibration error {ece:.3} · dashed: perfect calibration</text>
</svg>
"##,
        x0 = x(0.0),
        y0 = y(0.0),
        x1 = x(1.0),
        y1 = y(1.0),
        cx = x(0.5),
        xl = BOTTOM + 32.0,
        cy = y(0.5),
        note = BOTTOM + 50.0,
        acc = metrics.accuracy,
        ece = metrics.calibration_error,
    );
    svg
}

/// Precision and recall of each kind of personal data as paired bars, the targets as
/// dashed lines; each bar labelled with its value, each kind with how many were labelled.
pub fn pii_svg(title: &str, report: &PiiReport, precision_target: f64, recall_target: f64) -> String {
    const W: f64 = 520.0;
    const H: f64 = 340.0;
    const TOP: f64 = 40.0;
    const FLOOR: f64 = 280.0;
    const LEFT_EDGE: f64 = 50.0;
    let y = |v: f64| FLOOR - v * (FLOOR - TOP);
    let slot = (W - LEFT_EDGE - 20.0) / report.kinds.len() as f64;
    let mut svg = open_svg(W, H, title);
    for tick in 0..=5 {
        let v = f64::from(tick) / 5.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT_EDGE}" y1="{yv}" x2="{r}" y2="{yv}" stroke="#e0e0e0"/><text x="{tl}" y="{ty}" text-anchor="end">{v:.1}</text>"##,
            r = W - 20.0,
            yv = y(v),
            tl = LEFT_EDGE - 6.0,
            ty = y(v) + 4.0,
        );
    }
    for (i, score) in report.kinds.iter().enumerate() {
        let x0 = LEFT_EDGE + slot * i as f64 + slot * 0.15;
        let bar = slot * 0.35;
        for (j, (value, colour)) in [(score.precision, "#4c78a8"), (score.recall, "#f58518")].into_iter().enumerate() {
            let bx = x0 + bar * j as f64;
            let _ = writeln!(
                svg,
                r##"<rect x="{bx:.1}" y="{by:.1}" width="{bw:.1}" height="{bh:.1}" fill="{colour}"/><text x="{tx:.1}" y="{ty:.1}" text-anchor="middle" font-size="9">{value:.2}</text>"##,
                by = y(value),
                bw = bar - 2.0,
                bh = y(0.0) - y(value),
                tx = bx + bar / 2.0 - 1.0,
                ty = y(value) - 3.0,
            );
        }
        let _ = writeln!(
            svg,
            r##"<text x="{cx:.1}" y="{ly}" text-anchor="middle">{name}</text><text x="{cx:.1}" y="{ny}" text-anchor="middle" font-size="9">n = {n}</text>"##,
            cx = x0 + bar,
            ly = FLOOR + 16.0,
            ny = FLOOR + 28.0,
            name = score.kind.name(),
            n = score.labelled,
        );
    }
    let _ = write!(
        svg,
        r##"<line x1="{LEFT_EDGE}" y1="{yp}" x2="{r}" y2="{yp}" stroke="#4c78a8" stroke-dasharray="4 3"/>
<line x1="{LEFT_EDGE}" y1="{yr}" x2="{r}" y2="{yr}" stroke="#f58518" stroke-dasharray="4 3"/>
<line x1="{LEFT_EDGE}" y1="{y0}" x2="{r}" y2="{y0}" stroke="#333333"/>
<rect x="{LEFT_EDGE}" y="{ky}" width="10" height="10" fill="#4c78a8"/><text x="{kx1}" y="{kt}">precision (target {precision_target})</text>
<rect x="{kx2}" y="{ky}" width="10" height="10" fill="#f58518"/><text x="{kx3}" y="{kt}">recall (target {recall_target}; addresses: best effort)</text>
</svg>
"##,
        r = W - 20.0,
        yp = y(precision_target),
        yr = y(recall_target),
        y0 = y(0.0),
        ky = H - 22.0,
        kt = H - 13.0,
        kx1 = LEFT_EDGE + 14.0,
        kx2 = LEFT_EDGE + 170.0,
        kx3 = LEFT_EDGE + 184.0,
    );
    svg
}

/// The opening of a chart: its size, a white ground and its title.
fn open_svg(width: f64, height: f64, title: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="{}" y="18" text-anchor="middle" font-size="13">{}</text>
"##,
        width / 2.0,
        escape(title)
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use concierge_agent::router::eval::{ReliabilityBin, RoutingMetrics};
    use concierge_agent::router::Scope;

    use super::*;

    #[test]
    fn two_bars_per_kind_of_personal_data() {
        let report = concierge_guard::eval::evaluate(&concierge_guard::Scanner::new(), &[], |_| {});
        let svg = pii_svg("PII", &report, 0.95, 0.99);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // A bar of each colour per kind, and one in the key.
        assert_eq!(svg.matches(r##"fill="#4c78a8"/><text"##).count(), report.kinds.len() + 1);
        assert_eq!(svg.matches(r##"fill="#f58518"/><text"##).count(), report.kinds.len() + 1);
        assert!(svg.contains(">card</text>") && svg.contains("n = 0"));
    }

    #[test]
    fn one_bar_per_filled_bin_and_the_title_escaped() {
        let bin =
            |low: f32, count, accuracy| ReliabilityBin { low, count, mean_confidence: f64::from(low) + 0.05, accuracy };
        let metrics = RoutingMetrics {
            examples: 30,
            out_of_scope_examples: 0,
            accuracy: 0.8,
            scope: Scope { confidence_below: 0.25, similarity_below: 0.4 },
            in_scope_accuracy: 0.8,
            out_of_scope_recall: None,
            false_out_of_scope: 0.0,
            calibration_error: 0.05,
            reliability: vec![bin(0.5, 10, 0.5), bin(0.9, 20, 0.95)],
        };
        let svg = reliability_svg("a <b> & c", &metrics);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches(r##"fill="#4c78a8""##).count(), 2);
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        assert!(svg.contains(">20</text>") && svg.contains("accuracy 0.800"));
    }
}
