// Plot/Chart.swift — the picture both renderers draw: series of (x, y) points, axes, ticks, legend.
//
// `Chart.losses` turns loss logs into series: per run, the raw train loss (faint), its exponential
// moving average (TensorBoard-style, bias-corrected: s_n = β·s_{n−1} + (1−β)·x_n, shown s_n/(1−βⁿ)),
// and the validation losses as points joined by a line. `Axis` maps data to [0, 1] (linearly, or
// log10 for --log) and picks "nice" ticks (1, 2, 2.5, 5 × 10^k steps; on a log axis spanning a
// decade or more, 1-2-5 per decade).

import Foundation

/// How a series is drawn.
package enum SeriesStyle: Sendable { case faint, line, points }

package struct Series: Sendable {
    package var label: String?        // nil = not in the legend
    package var color: Int            // palette index (one per run)
    package var style: SeriesStyle
    package var points: [(x: Double, y: Double)]
}

package enum XAxisKind: String, Sendable, CaseIterable { case iteration, epoch }

/// A linear or log10 axis over [lo, hi].
package struct Axis: Sendable {
    package var lo: Double, hi: Double
    package var log: Bool

    package init(lo: Double, hi: Double, log: Bool) {
        // finite bounds, and a span (hi − lo) that is finite too: ±1e308 would overflow it to ∞
        let big = Double.greatestFiniteMagnitude / 4
        var lo = min(max(lo.isNaN ? 0 : lo, -big), big), hi = min(max(hi.isNaN ? 1 : hi, -big), big)
        if log { lo = max(lo, 1e-12); hi = max(hi, lo) }
        if !(hi > lo) {                      // one value: widen around it
            let d = log ? 0 : max(abs(lo) * 0.05, 1e-3)
            (lo, hi) = log ? (lo / 1.1, hi * 1.1) : (lo - d, hi + d)
        }
        self.lo = lo; self.hi = hi; self.log = log
    }

    /// Position of `v` in [0, 1] (outside for values out of range).
    package func fraction(_ v: Double) -> Double {
        let f = log ? (Foundation.log10(max(v, 1e-12)) - Foundation.log10(lo)) / (Foundation.log10(hi) - Foundation.log10(lo))
                    : (v - lo) / (hi - lo)
        // a value past the (clamped) range can overflow v − lo: it is off the chart, so say where
        return f.isFinite ? min(max(f, -1), 2) : (v > lo ? 2 : -1)
    }

    /// Tick values within [lo, hi], about `target` of them.
    package func ticks(target: Int = 6) -> [Double] {
        guard lo.isFinite && hi.isFinite else { return [] }
        if log && hi / lo >= 10 {
            var out: [Double] = []
            var e = floor(log10(lo))
            while pow(10, e) <= hi * 1.0001 {
                for m in [1.0, 2, 5] { let v = m * pow(10, e); if v >= lo * 0.9999 && v <= hi * 1.0001 { out.append(v) } }
                e += 1
            }
            return out.count > target * 2 ? out.filter { abs(log10($0).rounded() - log10($0)) < 1e-9 } : out
        }
        let step = Axis.niceStep((hi - lo) / Double(max(1, target)))
        var v = (lo / step).rounded(.up) * step
        var out: [Double] = []
        // The count bound stops the loop when step is below the spacing of doubles near v (v += step
        // would not move), e.g. iterations near 2^63 in a hostile CSV.
        while v <= hi + step * 1e-9 && out.count <= 4 * target + 8 { out.append(abs(v) < step * 1e-9 ? 0 : v); v += step }
        return out
    }

    /// The 1, 2, 2.5 or 5 × 10^k nearest to `raw` (on a log scale).
    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0 && raw.isFinite else { return 1 }
        let p = pow(10, floor(log10(raw)))
        return [1.0, 2, 2.5, 5, 10].map { $0 * p }.min { abs(Foundation.log($0 / raw)) < abs(Foundation.log($1 / raw)) }!
    }

    /// A tick label with as few decimals as tell the ticks apart (every tick written exactly).
    package static func label(_ v: Double, ticks: [Double]) -> String {
        if v == 0 { return "0" }
        if abs(v) >= 1e6 || abs(v) < 1e-4 { return String(format: "%.0e", v) }
        var d = 0
        while d < 4 && !ticks.allSatisfy({ t in let s = t * pow(10, Double(d)); return abs(s - s.rounded()) < 1e-6 * max(1, abs(s)) }) { d += 1 }
        return String(format: "%.\(d)f", v)
    }
}

package struct Chart: Sendable {
    package var title: String
    package var xLabel: String, yLabel: String
    package var series: [Series]
    package var x: Axis, y: Axis

    /// The chart of several runs' loss logs.
    /// - Parameters:
    ///   - runs: the logs, one color each.
    ///   - xAxis: iteration or (fractional) epoch.
    ///   - logY: log10 loss axis.
    ///   - smoothing: EMA β in [0, 1); 0 draws the raw train loss.
    ///   - raw: also draw the unsmoothed train loss, faint.
    package static func losses(_ runs: [LossHistory], xAxis: XAxisKind, logY: Bool, smoothing: Double, raw: Bool) -> Chart {
        var series: [Series] = []
        for (k, run) in runs.enumerated() {
            func xv(_ r: LossRow) -> Double { xAxis == .epoch ? r.epoch : Double(r.iteration) }
            let train = run.rows.compactMap { r in r.trainLoss.map { (x: xv(r), y: $0) } }.filter { $0.x.isFinite }
            let val = run.rows.compactMap { r in r.valLoss.map { (x: xv(r), y: $0) } }.filter { $0.x.isFinite }
            if raw && smoothing > 0 { series.append(Series(label: nil, color: k, style: .faint, points: thin(train, to: 3000))) }
            var s = 0.0, w = 0.0
            let ema = train.map { p -> (x: Double, y: Double) in
                s = smoothing * s + (1 - smoothing) * p.y; w = smoothing * w + (1 - smoothing)
                return (p.x, s / w)
            }
            let trainLabel = smoothing > 0 ? "\(run.name) train (EMA \(smoothing))" : "\(run.name) train"
            series.append(Series(label: trainLabel, color: k, style: .line, points: thin(ema, to: 3000)))
            series.append(Series(label: "\(run.name) val", color: k, style: .points, points: thin(val, to: 3000)))
        }
        let xs = series.flatMap { $0.points.map(\.x) }, ys = series.flatMap { $0.points.map(\.y) }
        let xAx = Axis(lo: xAxis == .epoch ? 0 : min(xs.min() ?? 0, 0), hi: xs.max() ?? 1, log: false)
        let yAx = Axis(lo: ys.min() ?? 0, hi: ys.max() ?? 1, log: logY)
        // Pad y by 3% so curves do not touch the frame.
        let pad = logY ? 1.0 : 0.03 * yAx.hi - 0.03 * yAx.lo
        let y = logY ? Axis(lo: yAx.lo / 1.03, hi: yAx.hi * 1.03, log: true) : Axis(lo: yAx.lo - pad, hi: yAx.hi + pad, log: false)
        return Chart(title: runs.count == 1 ? runs[0].name : runs.map(\.name).joined(separator: ", "),
                     xLabel: xAxis.rawValue, yLabel: "loss (nats/char)" + (logY ? ", log scale" : ""),
                     series: series, x: xAx, y: y)
    }

    /// Every k-th point (and the last) so that at most about `n` remain.
    static func thin(_ p: [(x: Double, y: Double)], to n: Int) -> [(x: Double, y: Double)] {
        guard p.count > n else { return p }
        let k = (p.count + n - 1) / n
        var out = stride(from: 0, to: p.count, by: k).map { p[$0] }
        if out.last!.x != p.last!.x { out.append(p.last!) }
        return out
    }
}
