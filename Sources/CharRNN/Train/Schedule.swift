// Train/Schedule.swift — the learning rate of each iteration (`--lr-schedule`, `--warmup-iters`,
// `--min-lr`): one pure rule that the trainer, `charrnn info` and the tests share.
//
// `step` is karpathy/char-rnn's decay and the default: the run keeps a current rate (the checkpoint's
// `lr`, `RunProgress.lr`), multiplied by --lr-decay at each epoch end after --lr-decay-after epochs
// (never below --min-lr when one is given). Without warmup or floor the trainer passes that value to
// the step untouched, so a `step` run is bit for bit what it was before schedules existed.
// `cosine` is nanoGPT's `get_lr`: a linear warmup, lr·(i+1)/(W+1) for the 0-based iterations i < W, then
// min + ½(1 + cos(π·r))·(lr − min) with r = (i − W)/(N − W), N the run's total iterations (r ≥ 1 gives
// min). `constant` is lr after the same warmup. Both are functions of the iteration alone (and of N),
// so a resume continues them exactly; moving the finish line on resume (--max-iters, --epochs)
// re-stretches what remains of a cosine. The warmup applies to `step` too (a factor on the current
// rate). The arithmetic is done in Double and rounded once to Float.

import Foundation

/// How the learning rate moves over a run.
public enum LRSchedule: String, Sendable, CaseIterable, Codable {
    /// char-rnn's: × --lr-decay at each epoch end after --lr-decay-after epochs.
    case step
    /// nanoGPT's: linear warmup, then a half cosine from --lr down to --min-lr over the run.
    case cosine
    /// --lr throughout (after the warmup).
    case constant
}

/// The learning-rate rule of one run, from its `TrainConfig`.
package struct LearningRate: Sendable, Equatable {
    package var schedule: LRSchedule
    /// The peak (--lr).
    package var lr: Float
    /// Iterations of linear warmup.
    package var warmup: Int
    /// The floor: cosine's end point, step's lower bound (nil: none, 0 for cosine).
    package var minLR: Float?
    /// The run's total iterations (cosine's length).
    package var total: Int

    package init(_ t: TrainConfig, total: Int) {
        schedule = t.schedule; lr = t.lr; warmup = t.warmupIters ?? 0; minLR = t.minLR; self.total = total
    }

    /// The rate of the 0-based `iteration` (the step that makes iteration + 1), given the run's
    /// current `step` rate `current` (ignored by cosine and constant).
    package func rate(iteration i: Int, current: Float) -> Float {
        let base: Float
        switch schedule {
        case .step: base = current
        case .constant: base = lr
        case .cosine:
            if i < warmup { return Float(Double(lr) * Double(i + 1) / Double(warmup + 1)) }
            let low = Double(minLR ?? 0), peak = Double(lr)
            let span = total - warmup
            let r = span > 0 ? min(1, Double(i - warmup) / Double(span)) : 1
            return Float(low + 0.5 * (1 + cos(Double.pi * r)) * (peak - low))
        }
        if i < warmup { return Float(Double(base) * Double(i + 1) / Double(warmup + 1)) }
        return base
    }

    /// The `step` rate after an epoch end: × decay once `epochs` ≥ `decayAfter`, not below the floor.
    package static func decayed(_ current: Float, train t: TrainConfig, epochs: Int) -> Float {
        guard t.schedule == .step, t.lrDecay < 1, epochs >= t.lrDecayAfter else { return current }
        let next = current * t.lrDecay
        if let m = t.minLR { return max(next, m) }
        return next
    }
}
