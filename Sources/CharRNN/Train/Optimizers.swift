// Train/Optimizers.swift — RMSprop, Adam and SGD with momentum over the flat parameter arena.
//
// Semantics follow PyTorch's torch.optim (and char-rnn's optim.rmsprop, which is the same update):
//   RMSprop  v ← αv + (1−α)g²;                p ← p − lr·g/(√v + ε)             α = 0.95, ε = 1e-8
//   Adam     m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
//            p ← p − (lr/(1−β₁ᵗ))·m/(√v/√(1−β₂ᵗ) + ε)                         β = 0.9, 0.999, ε = 1e-8
//   SGD      b ← μb + g;                       p ← p − lr·b                      μ = 0.9
// Each step is one SIMD loop over the whole arena; the moments share the parameters' layout, so
// their checkpoint names are `optimizer.<slot>.<parameter name>`.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The optimizer: RMSprop (α 0.95, ε 1e-8, as char-rnn), Adam (β 0.9/0.999) or SGD with momentum 0.9.
public enum OptimizerKind: String, Sendable, CaseIterable, Codable {
    case rmsprop, adam, sgd
    /// Moment buffers, named as PyTorch's optimizer state names them.
    package var slots: [String] {
        switch self {
        case .rmsprop: ["square_avg"]
        case .adam: ["exp_avg", "exp_avg_sq"]
        case .sgd: ["momentum_buffer"]
        }
    }
}

package final class Optimizer: @unchecked Sendable {
    package let kind: OptimizerKind
    package let count: Int
    /// One buffer per slot, same layout as the parameters.
    package let moments: [Storage]
    /// Steps taken (Adam's bias correction uses it).
    package var stepCount: Int = 0

    package static let rmspropAlpha: Float = 0.95
    package static let eps: Float = 1e-8
    package static let beta1: Float = 0.9, beta2: Float = 0.999
    package static let momentum: Float = 0.9

    package init(kind: OptimizerKind, count: Int) {
        self.kind = kind; self.count = count
        moments = kind.slots.map { _ in Storage(count: count) }
    }

    /// One update of `params` from `grads` (both `count` floats), elementwise, split across the pool.
    /// `range` limits it to those elements (data-parallel: this rank's chunk; the step count still
    /// advances once).
    package func step(params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, lr: Float, range: Range<Int>? = nil) {
        stepCount += 1
        let range = range ?? 0..<count
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "optimizer range out of bounds")
        let pool = WorkerPool.shared
        let parts = min(pool.width, max(1, range.count / 65_536))
        pool.run(parts: parts, with: StepJob(optimizer: Unmanaged.passUnretained(self), params: params, grads: grads, lr: lr,
                                             range: range, parts: parts)) {
            $0.assumingMemoryBound(to: StepJob.self).pointee.run(part: $1)
        }
    }

    /// Counts one step (Adam's bias correction) whose update a caller then runs range by range with
    /// `update(params:grads:range:lr:)`, interleaved with its own work on the same elements (the bf16
    /// copies rounded as each block is updated, Model/MixedPrecision.swift). The union of the ranges
    /// must be what `step` would update; each element gets `step`'s bits (the update is elementwise).
    package func countStep() { stepCount += 1 }

    /// The update of the elements `range` on the calling thread, within a step counted by `countStep`.
    package func update(params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, range: Range<Int>, lr: Float) {
        update(params: params + range.lowerBound, grads: grads + range.lowerBound, offset: range.lowerBound, n: range.count, lr: lr)
    }

    private struct StepJob {
        let optimizer: Unmanaged<Optimizer>, params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, lr: Float
        let range: Range<Int>, parts: Int
        func run(part p: Int) {
            let o = optimizer.takeUnretainedValue()
            let r = slice(range.count / vecWidth, part: p, of: parts)
            let lo = range.lowerBound + r.lowerBound * vecWidth
            let hi = p == parts - 1 ? range.upperBound : range.lowerBound + r.upperBound * vecWidth
            o.update(params: params + lo, grads: grads + lo, offset: lo, n: hi - lo, lr: lr)
        }
    }

    fileprivate func update(params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, offset: Int, n: Int, lr: Float) {
        switch kind {
        case .rmsprop:
            let v = moments[0].ptr + offset
            let a = Vec(repeating: Self.rmspropAlpha), oma = Vec(repeating: 1 - Self.rmspropAlpha)
            let lrv = Vec(repeating: lr), e = Vec(repeating: Self.eps)
            func step<L: Lanes>(_ l: L, _ i: Int) {
                let g = l.load(grads + i)
                let vv = a * l.load(v + i) + oma * g * g
                l.store(vv, v + i)
                l.store(l.load(params + i) - lrv * g / (vv.squareRoot() + e), params + i)
            }
            forEachLaneBlock(n, { step($0, $1) }, tail: { step($0, $1) })
        case .adam:
            let m = moments[0].ptr + offset, v = moments[1].ptr + offset
            // bias corrections in Double, as PyTorch computes them in Python floats
            let t = Double(stepCount)
            let bc1 = 1 - pow(Double(Self.beta1), t), bc2 = 1 - pow(Double(Self.beta2), t)
            let b1 = Vec(repeating: Self.beta1), b2 = Vec(repeating: Self.beta2)
            let stepSize = Vec(repeating: Float(Double(lr) / bc1)), invSqrtBC2 = Vec(repeating: Float(1 / bc2.squareRoot()))
            let e = Vec(repeating: Self.eps)
            func step<L: Lanes>(_ l: L, _ i: Int) {
                let g = l.load(grads + i)
                let mm = b1 * l.load(m + i) + (1 - b1) * g
                let vv = b2 * l.load(v + i) + (1 - b2) * g * g
                l.store(mm, m + i); l.store(vv, v + i)
                l.store(l.load(params + i) - stepSize * mm / (vv.squareRoot() * invSqrtBC2 + e), params + i)
            }
            forEachLaneBlock(n, { step($0, $1) }, tail: { step($0, $1) })
        case .sgd:
            let b = moments[0].ptr + offset
            let mu = Vec(repeating: Self.momentum), lrv = Vec(repeating: lr)
            func step<L: Lanes>(_ l: L, _ i: Int) {
                let bb = mu * l.load(b + i) + l.load(grads + i)
                l.store(bb, b + i)
                l.store(l.load(params + i) - lrv * bb, params + i)
            }
            forEachLaneBlock(n, { step($0, $1) }, tail: { step($0, $1) })
        }
    }
}

extension Optimizer {
    /// Clips the gradient (`norm` is the global norm) and steps, both over `range` (data-parallel:
    /// this rank's chunk, Distributed/Reducers.swift; nil: everything).
    package func clipAndStep(params: UnsafeMutablePointer<Float>, grads: UnsafeMutablePointer<Float>, norm: Float,
                            mode: ClipMode, clip: Float, lr: Float, range: Range<Int>?) {
        let r = range ?? 0..<count
        GradientClip.apply(grads + r.lowerBound, count: r.count, mode: mode, clip: clip, norm: norm)
        step(params: params, grads: grads, lr: lr, range: r)
    }
}

// MARK: - Gradient clipping

/// How gradients are clipped.
public enum ClipMode: String, Sendable, CaseIterable, Codable {
    /// Scale all gradients so their global L2 norm is at most `clip` (torch.nn.utils.clip_grad_norm_).
    case norm
    /// Clamp every element to [−clip, clip] (char-rnn; torch.nn.utils.clip_grad_value_).
    case value
}

package enum GradientClip {
    /// Global L2 norm of n floats, before clipping.
    package static func norm(_ g: UnsafePointer<Float>, count n: Int) -> Float { nrm2(n: n, x: g) }

    /// Clips in place; `norm` is the precomputed global norm. clip ≤ 0 disables clipping.
    package static func apply(_ g: UnsafeMutablePointer<Float>, count n: Int, mode: ClipMode, clip: Float, norm: Float) {
        guard clip > 0 else { return }
        switch mode {
        case .norm:
            let coef = clip / (norm + 1e-6)
            if coef < 1 { scal(n: n, alpha: coef, x: g) }
        case .value:
            forEachLaneBlock(n, { $0.store(vclamp($0.load(g + $1), -clip, clip), g + $1) },
                             tail: { $0.store(vclamp($0.load(g + $1), -clip, clip), g + $1) })
        }
    }
}
