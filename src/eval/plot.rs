//! Reliability diagrams of the router as SVG: for each tenth of confidence, how often the
//! router was right (bars) against how sure it was (the diagonal), with how many messages
//! fell there. Written directly as SVG markup: one chart of rectangles, lines and labels
//! needs no font files or raster backend, and the output is byte-for-byte repeatable.

use std::fmt::Write as _;

use concierge_agent::router::eval::RoutingMetrics;

const WIDTH: f64 = 420.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 300.0;
const PLOT: f64 = 300.0;

/// The reliability diagram of `metrics`, titled `title`.
pub fn reliability_svg(title: &str, metrics: &RoutingMetrics) -> String {
    let x = |v: f64| LEFT + v * PLOT;
    let y = |v: f64| BOTTOM - v * (BOTTOM - 30.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="{}" y="18" text-anchor="middle" font-size="13">{}</text>
"##,
        WIDTH / 2.0,
        escape(title)
    );
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

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use concierge_agent::router::eval::{ReliabilityBin, RoutingMetrics};
    use concierge_agent::router::Scope;

    use super::*;

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
