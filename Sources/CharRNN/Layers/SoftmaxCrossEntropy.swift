// Layers/SoftmaxCrossEntropy.swift — fused softmax + cross-entropy over all T·B rows at once.
//
//   loss = (1/N) Σ_r [ log Σ_v exp(z_rv − m_r) + m_r − z_r,y_r ]     (max-subtracted log-sum-exp)
//   ∂loss/∂z_rv = (softmax(z_r)_v − [v = y_r]) / N
//
// The gradient overwrites the logits in place (the logits are not needed after this point).
// Without the gradient (evaluation), a target of −1 marks a row that is not scored: it adds 0 to
// the sum (the mean still divides by N), so `Evaluator` can leave out predictions of the unknown
// token while the rows still carry the state.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Mean cross-entropy of `rows` rows of V logits against targets. When `gradient` is true, the
/// logits are replaced by ∂loss/∂logits (scaled by `scale`/N, scale 1 for the mean loss).
/// Returns the mean loss in Double (summed in Double so long validation runs do not drift).
/// bf16 training's decoder (Layers/OutputLayer.swift) passes two more, done in the same pass over each
/// row while it is in cache: `bias`, added to every row first (the logits hold x·Wᵀ; z = (x·Wᵀ) + b
/// has the bits of a product added onto b), and `roundInto`, an operand prepared (rows × V) that
/// receives each gradient row rounded to bf16, dx's left operand.
package func softmaxCrossEntropy(logits: UnsafeMutablePointer<Float>, targets: UnsafePointer<Int32>, rows: Int, V: Int,
                                gradient: Bool, scale: Float = 1, bias: UnsafePointer<Float>? = nil,
                                roundInto: BF16Operand? = nil) -> Double {
    precondition(roundInto == nil || (gradient && roundInto!.rows == rows && roundInto!.k == V))
    precondition(rows > 0 && V > 0)
    // Rows are independent: split them across the pool; the per-part sums are added in part order,
    // so the result is deterministic for a given number of cores.
    let pool = WorkerPool.shared
    let parts = min(pool.width, max(1, rows * V / 8192), maxParts)
    var partial = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    withUnsafeMutableBytes(of: &partial) { raw in
        let job = SoftmaxJob(logits: logits, targets: targets, rows: rows, V: V, gradient: gradient, invN: scale / Float(rows),
                             parts: parts, sums: raw.baseAddress!.assumingMemoryBound(to: Double.self), bias: bias,
                             rounded: roundInto.map { Unmanaged.passUnretained($0) })
        pool.run(parts: parts, with: job) { $0.assumingMemoryBound(to: SoftmaxJob.self).pointee.run(part: $1) }
    }
    var total = 0.0
    withUnsafeBytes(of: &partial) { raw in
        let sums = raw.baseAddress!.assumingMemoryBound(to: Double.self)
        for p in 0..<parts { total += sums[p] }
    }
    return total / Double(rows)
}

let maxParts = 8

private struct SoftmaxJob {
    let logits: UnsafeMutablePointer<Float>, targets: UnsafePointer<Int32>, rows: Int, V: Int, gradient: Bool, invN: Float
    let parts: Int, sums: UnsafeMutablePointer<Double>
    let bias: UnsafePointer<Float>?, rounded: Unmanaged<BF16Operand>?
    func run(part p: Int) {
        let r = slice(rows, part: p, of: parts)
        if bias == nil && rounded == nil {
            sums[p] = softmaxCrossEntropyRows(logits: logits, targets: targets, rows: r, V: V, gradient: gradient, invN: invN)
            return
        }
        // row by row, so that each is in cache for the bias, the softmax and its rounding
        var total = 0.0
        for i in r {
            if let bias {
                let z = logits + i * V
                forEachLaneBlock(V, { $0.store($0.load(z + $1) + $0.load(bias + $1), z + $1) },
                                 tail: { $0.store($0.load(z + $1) + $0.load(bias + $1), z + $1) })
            }
            total += softmaxCrossEntropyRows(logits: logits, targets: targets, rows: i..<(i + 1), V: V, gradient: gradient, invN: invN)
            rounded?.takeUnretainedValue().roundRows(i..<(i + 1), from: logits, lda: V)
        }
        sums[p] = total
    }
}

/// Sum over `rows` of the cross-entropy; writes gradients (scaled by invN) when asked.
@inline(__always)
func softmaxCrossEntropyRows(logits: UnsafeMutablePointer<Float>, targets: UnsafePointer<Int32>, rows: Range<Int>, V: Int,
                             gradient: Bool, invN: Float) -> Double {
    var total = 0.0
    for r in rows {
        let z = logits + r * V
        let y = Int(targets[r])
        if y == -1 && !gradient { continue }   // not scored (see the file header)
        precondition(y >= 0 && y < V, "target id \(y) outside vocabulary of \(V)")
        // max
        var mv = Vec(repeating: -.infinity)
        var j = 0
        while j + vecWidth <= V { mv = vmax(mv, vload(z + j)); j += vecWidth }
        var m = mv.max()
        while j < V { m = max(m, z[j]); j += 1 }
        let zy = z[y]
        // Σ exp(z − m), keeping exp(z − m) in place when the gradient is wanted
        var sv = Vec()
        let mvec = Vec(repeating: m)
        // (a helper that returns its lanes: a nested function capturing `sv` would box it on the heap)
        forEachLaneBlock(V, { sv += expShiftedLanes($0, z, at: $1, max: mvec, keep: gradient) },
                         tail: { sv += expShiftedLanes($0, z, at: $1, max: mvec, keep: gradient) })
        let s = sv.sum()
        if gradient {
            total += log(Double(s)) + Double(m) - Double(zy)
            let k = Vec(repeating: invN / s)
            forEachLaneBlock(V, { $0.store($0.load(z + $1) * k, z + $1) }, tail: { $0.store($0.load(z + $1) * k, z + $1) })
            z[y] -= invN
        } else {
            total += log(Double(s)) + Double(m) - Double(zy)
        }
    }
    return total
}

/// exp(z[j…] − m) for one block of lanes, written back over z when `keep`; returns them (zero
/// outside the block).
@inline(__always)
func expShiftedLanes<L: Lanes>(_ l: L, _ z: UnsafeMutablePointer<Float>, at j: Int, max mvec: Vec, keep: Bool) -> Vec {
    let e = vexp(l.load(z + j) - mvec)
    if keep { l.store(e, z + j) }
    return l.keep(e)
}
