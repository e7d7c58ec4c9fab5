// Layers/Recurrent.swift — what every recurrent layer shares: parameters, the batched input
// projection, the per-minibatch weight-gradient GEMMs and dx.
//
// Legend: T steps, B batch, D input width, H hidden, G = gates·H (LSTM 4H, GRU 3H, RNN H), V vocabulary.
// Layout: time-major rows, (T, B, ·). h has a leading slot, (T+1, B, H), slot 0 = carried state, so
// dW_hh is one GEMM over h[0..<T].
//
// Parameters (PyTorch nn.LSTM/nn.GRU/nn.RNN state_dict names and shapes):
//   rnn.weight_ih_l{k} (G, D)   rnn.weight_hh_l{k} (G, H)   rnn.bias_ih_l{k} (G)   rnn.bias_hh_l{k} (G)
//
// Forward (shared part):  gx = x · W_ihᵀ        one GEMM over T·B rows, or a row gather of W_ihᵀ for one-hot x
// Backward (shared part): dW_ih += dGxᵀ · x     dW_hh += dGhᵀ · h[0..<T]
//                         db_ih += Σ_rows dGx   db_hh += Σ_rows dGh       dx = dGx · W_ih
// where dGx/dGh are ∂L/∂(input/hidden pre-activations), written by the cell's time loop.

/// The recurrent cell kinds, named as the CLI and checkpoints name them.
public enum CellKind: String, Sendable, CaseIterable, Codable {
    case lstm, gru, rnn
    /// Gate blocks per hidden unit (PyTorch's packing: LSTM i,f,g,o; GRU r,z,n; RNN one).
    public var gates: Int { switch self { case .lstm: 4; case .gru: 3; case .rnn: 1 } }
}

/// Input of a recurrent layer for one minibatch.
public enum LayerInput {
    /// Dense rows (T, B, D).
    case dense(UnsafePointer<Float>)
    /// Token ids (T, B): one-hot input, realised as a gather of W_ih's columns.
    case tokens(UnsafePointer<Int32>)
}

/// Offsets of one layer's parameters in the flat arena.
public struct RecurrentParams: Sendable {
    public let wIH: TensorView, wHH: TensorView, bIH: TensorView, bHH: TensorView

    /// The views of layer `k` in a layout built from its `NetworkSpec` tensors.
    public init(layout: ParameterLayout, layer k: Int) {
        guard let wIH = layout[StateDict.weightIH(k)], let wHH = layout[StateDict.weightHH(k)],
              let bIH = layout[StateDict.biasIH(k)], let bHH = layout[StateDict.biasHH(k)] else {
            preconditionFailure("layout has no recurrent layer \(k)")
        }
        self.wIH = wIH; self.wHH = wHH; self.bIH = bIH; self.bHH = bHH
    }
}

/// Base class: owns the activation caches of one layer for up to (maxT, maxB) and implements the
/// parts of forward/backward that do not depend on the cell. Subclasses implement the time loops.
public class RecurrentLayer: @unchecked Sendable {
    public let kind: CellKind
    public let D: Int, H: Int, G: Int
    public let maxT: Int, maxB: Int
    public let params: RecurrentParams
    /// True when the input is one-hot tokens (D = V).
    public let oneHot: Bool

    // Caches, allocated once.
    let gx: Storage        // (T, B, G) input projection; cells overwrite it with what backward needs
    let h: Storage         // (T+1, B, H) slot 0 = carried state
    /// (T, B, G) ∂L/∂ input-side pre-activations. The same buffer as gx: the backward kernel of step t
    /// reads what forward left in gx[t] and overwrites it with the gradient (all reads of a unit come
    /// before its writes), and nothing reads gx[t] afterwards — one (T, B, G) buffer less per layer.
    let dGx: Storage
    let dhNext: Storage    // (B, H) ∂L/∂h[t-1] flowing left; after backward: ∂L/∂h0
    let biasSum: Storage   // (G) b_ih + b_hh, for cells that add both at once
    let whhT: PackedPanels // W_hhᵀ (H × G) packed for the per-step forward product, once per forward
    let whhP: PackedPanels // W_hh (G × H) packed for the per-step backward product, once per backward
    let wihT: Storage?     // (V, G) W_ihᵀ for the one-hot gather, refreshed each forward
    let dwihT: Storage?    // (V, G) scatter target for the one-hot dW_ih
    /// ∂L/∂ hidden-side pre-activations; aliases dGx for LSTM and RNN.
    var dGhPtr: UnsafeMutablePointer<Float> { dGx.ptr }

    init(kind: CellKind, inputSize D: Int, hiddenSize H: Int, oneHot: Bool, maxT: Int, maxB: Int, params: RecurrentParams) {
        precondition(D > 0 && H > 0 && maxT > 0 && maxB > 0, "layer dimensions must be positive")
        self.kind = kind; self.D = D; self.H = H; self.G = kind.gates * H
        self.maxT = maxT; self.maxB = maxB; self.params = params; self.oneHot = oneHot
        gx = Storage(count: maxT * maxB * G)
        h = Storage(count: (maxT + 1) * maxB * H)
        dGx = gx
        dhNext = Storage(count: maxB * H)
        biasSum = Storage(count: G)
        whhT = PackedPanels(maxK: H, maxN: G)
        whhP = PackedPanels(maxK: G, maxN: H)
        wihT = oneHot ? Storage(count: D * G) : nil
        dwihT = oneHot ? Storage(count: D * G) : nil
    }

    /// h[1...T] as (T, B, H) rows for a minibatch of B streams.
    @inline(__always) public func output(B: Int) -> UnsafeMutablePointer<Float> { h.ptr + B * H }

    // MARK: - Shared forward

    /// gx (T·B, G) = x · W_ihᵀ (dense) or gx[r] = W_ihᵀ[token r] (one-hot). Writes gx.
    final func projectInput(_ x: LayerInput, T: Int, B: Int, p: UnsafePointer<Float>) {
        let probe = Profiler.start()
        defer { Profiler.stop(.inputProjection, probe) }
        let rows = T * B
        switch x {
        case .dense(let xd):
            // forward: gx = x · W_ihᵀ
            pgemm(.noTrans, .trans, m: rows, n: G, k: D, a: xd, lda: D, b: p + params.wIH.offset, ldb: D,
                  beta: 0, c: gx.ptr, ldc: G)
        case .tokens(let ids):
            let wt = wihT!.ptr, out = gx.ptr, G = G, D = D
            transpose(p + params.wIH.offset, rows: G, cols: D, into: wt)
            for r in 0..<rows {
                let tok = Int(ids[r])
                precondition(tok >= 0 && tok < D, "token id \(tok) outside vocabulary of \(D)")
            }
            let pool = WorkerPool.shared
            pool.run(parts: pool.width, with: GatherJob(ids: ids, table: wt, out: out, rows: rows, G: G, parts: pool.width)) {
                $0.assumingMemoryBound(to: GatherJob.self).pointee.run(part: $1)
            }
        }
    }

    // MARK: - Shared backward

    /// After the time loop: weight and bias gradients (accumulate) and dx (written, when given).
    final func accumulateGradients(_ x: LayerInput, T: Int, B: Int, p: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>,
                                   ones: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?) {
        let probe = Profiler.start()
        defer { Profiler.stop(.weightGradients, probe) }
        let rows = T * B
        let dGh = dGhPtr
        // forward: gx[t] += h[t-1] · W_hhᵀ  ⇒  dW_hh += dGhᵀ · h[0..<T]
        pgemm(.trans, .noTrans, m: G, n: H, k: rows, a: dGh, lda: G, b: h.ptr, ldb: H,
              beta: 1, c: g + params.wHH.offset, ldc: H)
        // both biases enter additively ⇒ column sums of their pre-activation gradients
        pgemvTrans(m: rows, n: G, a: dGx.ptr, lda: G, x: ones, beta: 1, y: g + params.bIH.offset)
        pgemvTrans(m: rows, n: G, a: dGh, lda: G, x: ones, beta: 1, y: g + params.bHH.offset)
        switch x {
        case .dense(let xd):
            // forward: gx = x · W_ihᵀ  ⇒  dW_ih += dGxᵀ · x,  dx = dGx · W_ih
            pgemm(.trans, .noTrans, m: G, n: D, k: rows, a: dGx.ptr, lda: G, b: xd, ldb: D,
                  beta: 1, c: g + params.wIH.offset, ldc: D)
            if let dx {
                pgemm(.noTrans, .noTrans, m: rows, n: D, k: G, a: dGx.ptr, lda: G, b: p + params.wIH.offset, ldb: D,
                      beta: 0, c: dx, ldc: D)
            }
        case .tokens(let ids):
            // forward: gx[r] = W_ihᵀ[token r]  ⇒  dW_ihᵀ[token r] += dGx[r]  (scatter-add, then transpose-add).
            // Parts own disjoint column blocks, so repeated tokens never race.
            let dwt = dwihT!.ptr, src = dGx.ptr, G = G
            dwihT!.zero()
            let pool = WorkerPool.shared
            let parts = min(pool.width, max(1, G / 64))
            pool.run(parts: parts, with: ScatterJob(ids: ids, src: src, table: dwt, rows: rows, G: G, parts: parts)) {
                $0.assumingMemoryBound(to: ScatterJob.self).pointee.run(part: $1)
            }
            addTransposed(dwt, rows: G, cols: D, into: g + params.wIH.offset)
        }
    }

    // MARK: - Cell interface

    /// Runs the layer over T steps. `h0`/`c0` (B, H) are the carried state (c0 ignored unless LSTM);
    /// on return `hT`/`cT` receive the final state. Writes all caches needed by `backward`.
    public func forward(_ x: LayerInput, T: Int, B: Int, p: UnsafePointer<Float>,
                        h0: UnsafePointer<Float>, c0: UnsafePointer<Float>?,
                        hT: UnsafeMutablePointer<Float>, cT: UnsafeMutablePointer<Float>?) {
        preconditionFailure("abstract")
    }

    /// Back-propagates dy (T, B, H) = ∂L/∂h[1...T] (read only). Consumes the forward caches (gradients
    /// are written over the gates in place), so each backward needs its own forward. Parameter gradients accumulate into g;
    /// dx (T, B, D) is written when non-nil. Truncated BPTT: no gradient arrives from beyond step T.
    /// After return, `dh0` holds ∂L/∂h0 (and `dc0` ∂L/∂c0 for LSTM).
    public func backward(_ x: LayerInput, dy: UnsafePointer<Float>, T: Int, B: Int,
                         p: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>,
                         ones: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?) {
        preconditionFailure("abstract")
    }

    /// ∂L/∂h0 after `backward` (B, H).
    public var dh0: UnsafePointer<Float> { UnsafePointer(dhNext.ptr) }
    /// ∂L/∂c0 after `backward` (B, H), LSTM only.
    public var dc0: UnsafePointer<Float>? { nil }

    // MARK: - Inference step (B streams, no caches)

    /// One inference step for `rows` streams given both products without biases: gx (rows, G) =
    /// x · W_ihᵀ and gh (rows, G) = h · W_hhᵀ (both overwritten). Updates h (rows, H) and, for the
    /// LSTM, c (rows, H) in place, with the same fused kernel as training. `bias` (G) is b_ih + b_hh;
    /// `scratch` holds rows·H floats.
    public func stepRows(gx: UnsafeMutablePointer<Float>, gh: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>,
                         c: UnsafeMutablePointer<Float>?, rows: Int, bias: UnsafePointer<Float>, p: UnsafePointer<Float>,
                         scratch: UnsafeMutablePointer<Float>) {
        preconditionFailure("abstract")
    }

    /// How many batch slices the time loop runs in parallel (each slice's streams are independent).
    final func timeLoopParts(B: Int) -> Int { min(WorkerPool.shared.width, max(1, B / 8)) }

    /// Runs the cell's forward (dy == nil) or backward time loop, the batch split across the pool.
    final func runTimeLoop(T: Int, B: Int, p: UnsafePointer<Float>, dy: UnsafePointer<Float>?) {
        let parts = timeLoopParts(B: B)
        WorkerPool.shared.run(parts: parts, with: TimeLoopJob(layer: Unmanaged.passUnretained(self), T: T, B: B, p: p, dy: dy, parts: parts)) {
            $0.assumingMemoryBound(to: TimeLoopJob.self).pointee.run(part: $1)
        }
    }

    /// Forward time loop over the streams `rows` (weights already packed, caches' slot 0 filled);
    /// `timed`: feed the profiler (part 0 only).
    func forwardRows(_ rows: Range<Int>, T: Int, B: Int, p: UnsafePointer<Float>, timed: Bool) { preconditionFailure("abstract") }
    /// Backward time loop over the streams `rows` (dhNext/dcNext rows zeroed, W_hh packed); `timed` as forward.
    func backwardRows(_ rows: Range<Int>, T: Int, B: Int, p: UnsafePointer<Float>, dy: UnsafePointer<Float>, timed: Bool) { preconditionFailure("abstract") }

    final func checkShape(T: Int, B: Int) {
        precondition(T >= 1 && T <= maxT && B >= 1 && B <= maxB, "minibatch (\(T), \(B)) exceeds workspace (\(maxT), \(maxB))")
    }
}

// MARK: - Parallel parts of the one-hot input (allocation-free pool jobs)

/// gx[r] = W_ihᵀ[token r] for the rows of one part.
private struct GatherJob {
    let ids: UnsafePointer<Int32>, table: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, rows: Int, G: Int, parts: Int
    func run(part: Int) {
        for r in slice(rows, part: part, of: parts) { (out + r * G).update(from: table + Int(ids[r]) * G, count: G) }
    }
}

/// dW_ihᵀ[token r] += dGx[r] over one block of columns (parts own disjoint columns: no races).
private struct ScatterJob {
    let ids: UnsafePointer<Int32>, src: UnsafePointer<Float>, table: UnsafeMutablePointer<Float>, rows: Int, G: Int, parts: Int
    func run(part: Int) {
        let cols = slice(G / vecWidth, part: part, of: parts)
        let j0 = cols.lowerBound * vecWidth, j1 = part == parts - 1 ? G : cols.upperBound * vecWidth
        for r in 0..<rows {
            let row = table + Int(ids[r]) * G, s = src + r * G
            let rj = row + j0, sj = s + j0
            forEachLaneBlock(j1 - j0, { $0.store($0.load(rj + $1) + $0.load(sj + $1), rj + $1) },
                             tail: { $0.store($0.load(rj + $1) + $0.load(sj + $1), rj + $1) })
        }
    }
}

/// One part of a layer's time loop: the streams of one batch slice (allocation-free pool job).
private struct TimeLoopJob {
    let layer: Unmanaged<RecurrentLayer>, T: Int, B: Int, p: UnsafePointer<Float>, dy: UnsafePointer<Float>?, parts: Int
    func run(part: Int) {
        let l = layer.takeUnretainedValue(), r = slice(B, part: part, of: parts)
        // part 0 runs on the calling thread: the only one that feeds the profiler
        if let dy { l.backwardRows(r, T: T, B: B, p: p, dy: dy, timed: part == 0) } else { l.forwardRows(r, T: T, B: B, p: p, timed: part == 0) }
    }
}
