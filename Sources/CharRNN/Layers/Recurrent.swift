// Layers/Recurrent.swift — everything a recurrent layer does that does not depend on its cell, written
// once: parameters, caches and carried state, the batched input projection, the per-step recurrent
// product, the time loop split by streams across the pool, the per-minibatch weight-gradient GEMMs,
// dx, and the profiler hooks. LSTM.swift, GRU.swift and RNN.swift supply only the cell.
//
// Legend: T steps, B batch, D input width, H hidden, G = gates·H (LSTM 4H, GRU 3H, RNN H), V vocabulary.
// Layout: time-major rows, (T, B, ·). h (and the LSTM's c) has a leading slot, (T+1, B, H), slot 0 =
// carried state, so dW_hh is one GEMM over h[0..<T].
//
// Parameters (PyTorch nn.LSTM/nn.GRU/nn.RNN state_dict names and shapes):
//   rnn.weight_ih_l{k} (G, D)   rnn.weight_hh_l{k} (G, H)   rnn.bias_ih_l{k} (G)   rnn.bias_hh_l{k} (G)
//
// Forward:  gx = x · W_ihᵀ                  one GEMM over T·B rows, or a row gather of W_ihᵀ for one-hot x
//           per step t: gx[t] += h[t-1] · W_hhᵀ   (a cell that keeps it apart, GRU: gh[t] = h[t-1] · W_hhᵀ)
//                       then the cell's fused kernel: gates, h[t] (and c[t])
//           (one-hot x into LSTM or RNN: no gather pass; gx[t] = h[t-1] · W_hhᵀ and the kernel adds
//           the rows W_ihᵀ[token], `foldsGather`, with the same bits)
// Backward: per step t (right to left): the cell's kernel writes dGx[t], dGh[t] = ∂L/∂(input/hidden
//                       pre-activations), then ∂L/∂h[t-1] = dGh[t] · W_hh
//           dW_ih += dGxᵀ · x     dW_hh += dGhᵀ · h[0..<T]
//           db_ih += Σ_rows dGx   db_hh += Σ_rows dGh       dx = dGx · W_ih
//           (bf16: the bias sums come from the pass that rounds dG for dW; dx reads dG as the time
//           loop rounded it)
//
// Design: `RecurrentLayerCore` (a class with no overridable methods) holds the shared state and the
// per-minibatch GEMMs; a cell is a final subclass conforming to `RecurrentCell`, whose extension is
// the shared forward/backward/time loops. Every cell method those loops call is statically
// dispatched (the extension is specialised per cell); the only dynamic calls are the stack's
// `forward`/`backward`/`stepRows` (one per layer and minibatch or inference step) and the pool's
// entry into a part's time loop (one per part) — as many as the class vtable had before.
// Precision: with `mixed` set and `mixedActive` (a bf16 training forward and its backward), every
// product above except the one-hot gather/scatter takes bf16 operands with float32 sums
// (Tensor/BF16GEMM.swift; what is rounded where: Model/MixedPrecision.swift); the rest is unchanged.

/// The recurrent cell kinds, named as the CLI and checkpoints name them.
public enum CellKind: String, Sendable, CaseIterable, Codable {
    case lstm, gru, rnn
    /// Gate blocks per hidden unit (PyTorch's packing: LSTM i,f,g,o; GRU r,z,n; RNN one).
    public var gates: Int { switch self { case .lstm: 4; case .gru: 3; case .rnn: 1 } }
}

/// Input of a recurrent layer for one minibatch.
package enum LayerInput {
    /// Dense rows (T, B, D).
    case dense(UnsafePointer<Float>)
    /// Token ids (T, B): one-hot input, realised as a gather of W_ih's columns.
    case tokens(UnsafePointer<Int32>)
}

/// Offsets of one layer's parameters in the flat arena.
package struct RecurrentParams: Sendable {
    package let wIH: TensorView, wHH: TensorView, bIH: TensorView, bHH: TensorView

    /// The views of layer `k` in a layout built from its `NetworkSpec` tensors.
    package init(layout: ParameterLayout, layer k: Int) {
        guard let wIH = layout[StateDict.weightIH(k)], let wHH = layout[StateDict.weightHH(k)],
              let bIH = layout[StateDict.biasIH(k)], let bHH = layout[StateDict.biasHH(k)] else {
            preconditionFailure("layout has no recurrent layer \(k)")
        }
        self.wIH = wIH; self.wHH = wHH; self.bIH = bIH; self.bHH = bHH
    }
}

/// What the stack calls on a recurrent layer, whatever its cell: `LSTMLayer`, `GRULayer`, `RNNLayer`.
/// The cell-independent state (dimensions, parameters, caches, `output`, `dh0`, `dc0`) is the
/// `RecurrentLayerCore` every layer is; these three are written once, in the extension of `RecurrentCell`.
package protocol RecurrentLayer: RecurrentLayerCore {
    /// Runs the layer over T steps. `h0`/`c0` (B, H) are the carried state (c0 ignored unless LSTM);
    /// on return `hT`/`cT` receive the final state. Writes all caches needed by `backward`.
    func forward(_ x: LayerInput, T: Int, B: Int, p: UnsafePointer<Float>,
                 h0: UnsafePointer<Float>, c0: UnsafePointer<Float>?,
                 hT: UnsafeMutablePointer<Float>, cT: UnsafeMutablePointer<Float>?)

    /// Back-propagates dy (T, B, H) = ∂L/∂h[1...T] (read only). Consumes the forward caches (gradients
    /// are written over the gates in place), so each backward needs its own forward. Parameter gradients accumulate into g;
    /// dx (T, B, D) is written when non-nil. Truncated BPTT: no gradient arrives from beyond step T.
    /// After return, `dh0` holds ∂L/∂h0 (and `dc0` ∂L/∂c0 for LSTM).
    func backward(_ x: LayerInput, dy: UnsafePointer<Float>, T: Int, B: Int,
                  p: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>,
                  ones: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?)

    /// One inference step for `rows` streams given both products without biases: gx (rows, G) =
    /// x · W_ihᵀ and gh (rows, G) = h · W_hhᵀ (both overwritten). Updates h (rows, H) and, for the
    /// LSTM, c (rows, H) in place, with the same fused kernel as training. `bias` (G) is b_ih + b_hh;
    /// `scratch` holds rows·H floats.
    func stepRows(gx: UnsafeMutablePointer<Float>, gh: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>,
                  c: UnsafeMutablePointer<Float>?, rows: Int, bias: UnsafePointer<Float>, p: UnsafePointer<Float>,
                  scratch: UnsafeMutablePointer<Float>)
}

/// The cell-independent part of a recurrent layer: dimensions, parameter views, the activation caches
/// and carried state for up to (maxT, maxB), and the per-minibatch GEMMs before and after the time
/// loop. Never used alone and has nothing to override: each cell is a final subclass that conforms
/// to `RecurrentCell`.
package class RecurrentLayerCore: @unchecked Sendable {
    package let kind: CellKind
    package let D: Int, H: Int, G: Int
    package let maxT: Int, maxB: Int
    package let params: RecurrentParams
    /// True when the input is one-hot tokens (D = V).
    package let oneHot: Bool
    /// The cell carries c beside h (LSTM).
    let hasCellState: Bool

    // Caches and carried state, allocated once.
    let gx: Storage        // (T, B, G) input projection (+ the hidden one, unless kept apart); cells overwrite it with what backward needs
    /// (T, B, G) h[t-1] · W_hhᵀ when the cell keeps it apart (GRU); otherwise the same buffer as gx.
    let gh: Storage
    let h: Storage         // (T+1, B, H) slot 0 = carried state
    let c: Storage         // (T+1, B, H) slot 0 = carried c, when the cell has it (LSTM); else empty
    /// (T, B, G) ∂L/∂ input-side pre-activations. The same buffer as gx: the backward kernel of step t
    /// reads what forward left in gx[t] and overwrites it with the gradient (all reads of a unit come
    /// before its writes), and nothing reads gx[t] afterwards — one (T, B, G) buffer less per layer.
    let dGx: Storage
    /// (T, B, G) ∂L/∂ hidden-side pre-activations: the same buffer as gh, for the same reason (so for
    /// LSTM and RNN also the same as dGx).
    let dGh: Storage
    let dhNext: Storage    // (B, H) ∂L/∂h[t-1] flowing left; after backward: ∂L/∂h0
    let dcNext: Storage    // (B, H) ∂L/∂c[t-1] flowing left; after backward: ∂L/∂c0 (LSTM; else empty)
    let biasSum: Storage   // (G) b_ih + b_hh, for cells that add both at once
    let whhT: PackedPanels // W_hhᵀ (H × G) packed for the per-step forward product, once per forward
    let whhP: PackedPanels // W_hh (G × H) packed for the per-step backward product, once per backward
    let wihT: Storage?     // (V, G) W_ihᵀ for the one-hot gather, refreshed each forward
    /// One-hot input of a cell that adds its two products (LSTM, RNN): the gather is folded into the
    /// forward cell kernel, which adds W_ihᵀ[token] to the stored recurrent product, instead of a pass
    /// that writes every row of gx before the time loop. (h·W_hhᵀ + W_ihᵀ[token]) + b has the bits of
    /// the gathered row plus the product, plus b, since addition is commutative.
    let foldsGather: Bool
    /// While a forward with `foldsGather` runs: its token ids (T·B, time-major).
    var foldedIDs: UnsafePointer<Int32>? = nil
    let dwihT: Storage?    // (V, G) scatter target for the one-hot dW_ih
    /// The bf16 weight copies and scratch, when the model trains in bf16.
    var mixed: RecurrentBF16?
    /// This forward (and the backward after it) runs the products in bf16; set by the stack per forward.
    var mixedActive = false
    /// `mixed` when this pass runs in bf16.
    @inline(__always) final var active16: RecurrentBF16? { mixedActive ? mixed : nil }

    init<Cell: RecurrentCell>(cell: Cell.Type, inputSize D: Int, hiddenSize H: Int, oneHot: Bool, maxT: Int, maxB: Int,
                              params: RecurrentParams) {
        precondition(D > 0 && H > 0 && maxT > 0 && maxB > 0, "layer dimensions must be positive")
        let kind = Cell.kind, G = kind.gates * H
        self.kind = kind; self.D = D; self.H = H; self.G = G
        self.maxT = maxT; self.maxB = maxB; self.params = params; self.oneHot = oneHot
        hasCellState = Cell.hasCellState
        gx = Storage(count: maxT * maxB * G)
        gh = Cell.keepsHiddenProduct ? Storage(count: maxT * maxB * G) : gx
        h = Storage(count: (maxT + 1) * maxB * H)
        c = Storage(count: hasCellState ? (maxT + 1) * maxB * H : 0)
        dGx = gx
        dGh = gh
        dhNext = Storage(count: maxB * H)
        dcNext = Storage(count: hasCellState ? maxB * H : 0)
        biasSum = Storage(count: G)
        whhT = PackedPanels(maxK: H, maxN: G)
        whhP = PackedPanels(maxK: G, maxN: H)
        wihT = oneHot ? Storage(count: D * G) : nil
        dwihT = oneHot ? Storage(count: D * G) : nil
        foldsGather = oneHot && !Cell.keepsHiddenProduct
    }

    /// h[1...T] as (T, B, H) rows for a minibatch of B streams.
    @inline(__always) package final func output(B: Int) -> UnsafeMutablePointer<Float> { h.ptr + B * H }

    /// ∂L/∂h0 after `backward` (B, H).
    package final var dh0: UnsafePointer<Float> { UnsafePointer(dhNext.ptr) }
    /// ∂L/∂c0 after `backward` (B, H), LSTM only.
    package final var dc0: UnsafePointer<Float>? { hasCellState ? UnsafePointer(dcNext.ptr) : nil }

    // MARK: - Before the time loop

    /// gx (T·B, G) = x · W_ihᵀ (dense) or gx[r] = W_ihᵀ[token r] (one-hot). Writes gx, except with
    /// `foldsGather`: then it refreshes W_ihᵀ and checks the ids, and the cell kernel adds the rows.
    final func projectInput(_ x: LayerInput, T: Int, B: Int, p: UnsafePointer<Float>) {
        let probe = Profiler.start()
        defer { Profiler.stop(.inputProjection, probe) }
        let rows = T * B
        switch x {
        case .dense(let xd):
            // forward: gx = x · W_ihᵀ
            if let m = active16 {
                bf16Gemm(m: rows, a: xd, lda: D, b: m.wihT!, scratch: m.scratch.rows, c: gx.ptr, ldc: G, accumulate: false)
                return
            }
            pgemm(.noTrans, .trans, m: rows, n: G, k: D, a: xd, lda: D, b: p + params.wIH.offset, ldb: D,
                  beta: 0, c: gx.ptr, ldc: G)
        case .tokens(let ids):
            let wt = wihT!.ptr, out = gx.ptr, G = G, D = D
            transpose(p + params.wIH.offset, rows: G, cols: D, into: wt)
            for r in 0..<rows {
                let tok = Int(ids[r])
                precondition(tok >= 0 && tok < D, "token id \(tok) outside vocabulary of \(D)")
            }
            if foldsGather { return }
            let pool = WorkerPool.shared
            pool.run(parts: pool.width, with: GatherJob(ids: ids, table: wt, out: out, rows: rows, G: G, parts: pool.width)) {
                $0.assumingMemoryBound(to: GatherJob.self).pointee.run(part: $1)
            }
        }
    }

    // MARK: - After the time loop

    /// Weight and bias gradients (accumulate) and dx (written, when given).
    final func accumulateGradients(_ x: LayerInput, T: Int, B: Int, p: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>,
                                   ones: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?) {
        let probe = Profiler.start()
        defer { Profiler.stop(.weightGradients, probe) }
        let rows = T * B
        let dGh = dGh.ptr
        if let m = active16 {
            accumulateGradients16(m, x, rows: rows, g: g, ones: ones, dx: dx)
            return
        }
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
        case .tokens:
            scatterOneHot(x, rows: rows, g: g)
        }
    }

    /// One-hot input: dW_ih += the scatter of dGx by token.
    private final func scatterOneHot(_ x: LayerInput, rows: Int, g: UnsafeMutablePointer<Float>) {
        guard case .tokens(let ids) = x else { return }
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

    /// `accumulateGradients` with bf16 products: the same sums, each product's operands rounded
    /// (dG once in the pair layout when dGx and dGh are one buffer), float32 sums added into g.
    private final func accumulateGradients16(_ m: RecurrentBF16, _ x: LayerInput, rows: Int, g: UnsafeMutablePointer<Float>,
                                             ones: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?) {
        let s = m.scratch, dGh = dGh.ptr, dGx = dGx.ptr, sums = s.sums.ptr, shared = dGx == dGh
        // dW_hh += dGhᵀ · h[0..<T]; db_hh += Σ dGh (and db_ih when dGx is dGh) from the same pass, and
        // with one-hot input the scatter of dGx by token too (dW_ih, below)
        var scatter: (ids: UnsafePointer<Int32>, table: UnsafeMutablePointer<Float>)? = nil
        if shared, case .tokens(let ids) = x { dwihT!.zero(); scatter = (ids, dwihT!.ptr) }
        bf16RoundWeightGradientOperands(a: dGh, k: rows, m: G, lda: G, into: s.pairs, columnSums: sums, scatter: scatter,
                                        b: h.ptr, n: H, ldb: H, into: s.acts)
        addVectors(g + params.bHH.offset, sums, into: g + params.bHH.offset, n: G)
        if shared { addVectors(g + params.bIH.offset, sums, into: g + params.bIH.offset, n: G) }
        bf16Gemm(a: s.pairs, b: s.acts, c: g + params.wHH.offset, ldc: H, accumulate: true)
        switch x {
        case .dense(let xd):
            // dW_ih += dGxᵀ · x,  dx = dGx · W_ih
            if shared {
                s.acts.pack(xd, k: rows, n: D, ldb: D)
            } else {
                bf16RoundWeightGradientOperands(a: dGx, k: rows, m: G, lda: G, into: s.pairs, columnSums: sums,
                                                b: xd, n: D, ldb: D, into: s.acts)
                addVectors(g + params.bIH.offset, sums, into: g + params.bIH.offset, n: G)
            }
            bf16Gemm(a: s.pairs, b: s.acts, c: g + params.wIH.offset, ldc: D, accumulate: true)
            guard let dx else { break }
            // the backward time loop left bf16(dGh) for all T·B rows in s.rows (nothing has rounded
            // into it since): when dGx is dGh, that is dx's left operand already
            if shared {
                precondition(s.rows.rows == rows && s.rows.k == G, "the time loop's rounded dG is gone")
                bf16Gemm(a: s.rows, b: m.wih!, c: dx, ldc: D, accumulate: false)
            } else {
                bf16Gemm(m: rows, a: dGx, lda: G, b: m.wih!, scratch: s.rows, c: dx, ldc: D, accumulate: false)
            }
        case .tokens:
            // the one-hot scatter of the float32 path (no product), done above in the rounding pass
            // when dGx is dGh
            if shared {
                addTransposed(dwihT!.ptr, rows: G, cols: D, into: g + params.wIH.offset)
            } else {
                pgemvTrans(m: rows, n: G, a: dGx, lda: G, x: ones, beta: 1, y: g + params.bIH.offset)
                scatterOneHot(x, rows: rows, g: g)
            }
        }
    }

    /// How many batch slices the time loop runs in parallel (each slice's streams are independent).
    final func timeLoopParts(B: Int) -> Int { min(WorkerPool.shared.width, max(1, B / 8)) }

    final func checkShape(T: Int, B: Int) {
        precondition(T >= 1 && T <= maxT && B >= 1 && B <= maxB, "minibatch (\(T), \(B)) exceeds workspace (\(maxT), \(maxB))")
    }
}

// MARK: - Cell interface

/// The one-hot input rows a forward cell kernel adds itself (`RecurrentLayerCore.foldsGather`): row b
/// of the part's step reads W_ihᵀ[ids[b]] (G floats) of `table`.
struct FoldedInput {
    let ids: UnsafePointer<Int32>, table: UnsafePointer<Float>, G: Int
    @inline(__always) func row(_ b: Int) -> UnsafePointer<Float> { table + Int(ids[b]) * G }
}

/// A cell's pre-activation at offset o of a row: (a + x) + bias with a folded one-hot row x, a + bias
/// without (the order of the gather path, whose gx row was x + a).
@inline(__always)
func preActivation<L: Lanes>(_ l: L, _ a: UnsafePointer<Float>, _ x: UnsafePointer<Float>?, _ bias: UnsafePointer<Float>,
                             _ o: Int) -> Vec {
    guard let x else { return l.load(a + o) + l.load(bias + o) }
    return (l.load(a + o) + l.load(x + o)) + l.load(bias + o)
}

extension RecurrentLayerCore {
    /// The folded one-hot rows of one part's step, or nil (dense input, or a cell that gathers).
    @inline(__always) func foldedInput(_ s: StepRows) -> FoldedInput? {
        guard let ids = foldedIDs else { return nil }
        return FoldedInput(ids: ids + s.row, table: UnsafePointer(wihT!.ptr), G: G)
    }
}

/// Where one time-loop part's streams sit at step t in the layer's time-major buffers: row block
/// `s.g(buf, t)` of a (T, B, G) buffer, `s.h(buf, t)` of a (T or T+1, B, H) one. `rows` streams.
struct StepRows {
    let t: Int, rows: Int
    let BH: Int, BG: Int     // one step's stride in (·, B, H) and (·, B, G) buffers
    let oh: Int, og: Int     // the part's first stream, in floats, within a step of those buffers
    let row: Int             // the part's first row of step t among the minibatch's T·B (time-major)
    @inline(__always) func h(_ base: UnsafeMutablePointer<Float>, _ slot: Int) -> UnsafeMutablePointer<Float> { base + slot * BH + oh }
    @inline(__always) func g(_ base: UnsafeMutablePointer<Float>, _ slot: Int) -> UnsafeMutablePointer<Float> { base + slot * BG + og }
}

/// What a cell supplies; its extension below is every recurrent layer's forward, backward, time
/// loops and inference step. A conforming type is a final subclass of `RecurrentLayerCore` whose
/// requirements below are statically dispatched by the (specialised) extension.
protocol RecurrentCell: RecurrentLayer {
    /// Gate blocks per hidden unit, and the name.
    static var kind: CellKind { get }
    /// Carries a second state c beside h (LSTM): the core keeps c (T+1, B, H) and dcNext, and
    /// forward/backward copy c0/cT and zero dcNext.
    static var hasCellState: Bool { get }
    /// The hidden product h·W_hhᵀ goes to its own buffer gh (=) instead of being added into gx, and the
    /// two biases stay apart (GRU: r multiplies the hidden n-term with its bias). Otherwise the
    /// kernels see gx + gh and b_ih + b_hh summed once per forward (`biasSum`).
    static var keepsHiddenProduct: Bool { get }
    /// h[t] depends on h[t-1] directly, not only through W_hh (GRU: z ⊙ h): the backward kernel
    /// writes that part of ∂L/∂h[t-1] into dhNext and the recurrent product adds to it (+=);
    /// otherwise the product overwrites dhNext (=).
    static var hasDirectHiddenPath: Bool { get }

    /// Training forward of step `s.t` for one part's streams, after the recurrent product: reads
    /// gx[t] (gh[t]), h[t-1] (c[t-1]); writes the gates' cache and h[t] (c[t]).
    func forwardStep(_ s: StepRows, p: UnsafePointer<Float>)
    /// Training backward of step `s.t` for one part's streams, before the recurrent product: reads
    /// the forward caches of step t, dy (rows, H) and dh (rows, H) = ∂L/∂h[t] from step t+1; writes
    /// dGx[t] and dGh[t] (and, with `hasDirectHiddenPath`, dh = the direct part of ∂L/∂h[t-1]).
    func backwardStep(_ s: StepRows, dy: UnsafePointer<Float>, dh: UnsafeMutablePointer<Float>)
    /// The inference step's fused kernel (see `RecurrentLayer.stepRows`), after gx += gh when the
    /// hidden product is not kept apart.
    func stepKernel(gx: UnsafeMutablePointer<Float>, gh: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>,
                    c: UnsafeMutablePointer<Float>?, rows: Int, bias: UnsafePointer<Float>, p: UnsafePointer<Float>,
                    scratch: UnsafeMutablePointer<Float>)

    // The pool's entries into one part's time loop (requirements so that a part's job reaches the
    // cell's specialised loop through the witness table); supplied by the extension.
    func forwardRows(_ r: Range<Int>, T: Int, B: Int, p: UnsafePointer<Float>, timed: Bool)
    func backwardRows(_ r: Range<Int>, T: Int, B: Int, p: UnsafePointer<Float>, dy: UnsafePointer<Float>, timed: Bool)
}

extension RecurrentCell {
    // MARK: - Forward

    package func forward(_ x: LayerInput, T: Int, B: Int, p: UnsafePointer<Float>,
                        h0: UnsafePointer<Float>, c0: UnsafePointer<Float>?,
                        hT: UnsafeMutablePointer<Float>, cT: UnsafeMutablePointer<Float>?) {
        checkShape(T: T, B: B)
        let BH = B * H
        projectInput(x, T: T, B: B, p: p)
        if !Self.keepsHiddenProduct { addVectors(p + params.bIH.offset, p + params.bHH.offset, into: biasSum.ptr, n: G) }
        h.ptr.update(from: h0, count: BH)
        if Self.hasCellState {
            guard let c0 else { preconditionFailure("\(kind) forward needs c0") }
            c.ptr.update(from: c0, count: BH)
        }
        if let m = active16 { m.scratch.step.prepare(rows: B, k: H) } else { whhT.packTransposed(p + params.wHH.offset, k: H, n: G, ld: H) }
        if foldsGather, case .tokens(let ids) = x { foldedIDs = ids }
        runTimeLoop(T: T, B: B, p: p, dy: nil)
        foldedIDs = nil
        hT.update(from: h.ptr + T * BH, count: BH)
        if Self.hasCellState {
            guard let cT else { preconditionFailure("\(kind) forward needs cT") }
            cT.update(from: c.ptr + T * BH, count: BH)
        }
    }

    /// Forward time loop over the streams `r` (weights packed, slot 0 of the state filled); `timed`:
    /// feed the profiler (part 0 only).
    func forwardRows(_ r: Range<Int>, T: Int, B: Int, p: UnsafePointer<Float>, timed: Bool) {
        let BH = B * H, BG = B * G
        let gh = gh.ptr, h = h.ptr
        let nb = r.count, oh = r.lowerBound * H, og = r.lowerBound * G
        let m16 = active16
        // gx[t] += h[t-1] · W_hhᵀ; = when kept apart (into gh) or when the cell kernel adds the one-hot rows
        let accumulate = !Self.keepsHiddenProduct && foldedIDs == nil
        var probe = timed ? Profiler.start() : Profiler.idle
        for t in 0..<T {
            // this part's streams only (gh is gx unless kept apart)
            if let m = m16 {
                m.scratch.step.roundRows(r, from: h + t * BH, lda: H)
                bf16GemmRows(r, a: m.scratch.step, b: m.whhT, c: gh + t * BG, ldc: G, accumulate: accumulate)
            } else {
                packedGemm(m: nb, a: h + t * BH + oh, lda: H, b: whhT, c: gh + t * BG + og, ldc: G, accumulate: accumulate)
            }
            if timed { probe = Profiler.stop(.recurrentProducts, probe) }
            forwardStep(StepRows(t: t, rows: nb, BH: BH, BG: BG, oh: oh, og: og, row: t * B + r.lowerBound), p: p)
            if timed { probe = Profiler.stop(.gates, probe) }
        }
    }

    // MARK: - Backward

    package func backward(_ x: LayerInput, dy: UnsafePointer<Float>, T: Int, B: Int,
                         p: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>,
                         ones: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?) {
        checkShape(T: T, B: B)
        // truncated BPTT: nothing flows back from the next minibatch
        dhNext.zero()
        if Self.hasCellState { dcNext.zero() }
        // bf16: dG[t] is rounded into all T·B rows of `rows`, so dx (accumulateGradients) reuses it
        if let m = active16 { m.scratch.rows.prepare(rows: T * B, k: G) } else { whhP.pack(p + params.wHH.offset, k: G, n: H, ld: H) }
        runTimeLoop(T: T, B: B, p: p, dy: dy)
        accumulateGradients(x, T: T, B: B, p: p, g: g, ones: ones, dx: dx)
    }

    /// Backward time loop over the streams `r` (dhNext/dcNext rows zeroed, W_hh packed); `timed` as forward.
    func backwardRows(_ r: Range<Int>, T: Int, B: Int, p: UnsafePointer<Float>, dy: UnsafePointer<Float>, timed: Bool) {
        let BH = B * H, BG = B * G
        let dGh = dGh.ptr, dh = dhNext.ptr
        let nb = r.count, oh = r.lowerBound * H, og = r.lowerBound * G
        let m16 = active16
        var probe = timed ? Profiler.start() : Profiler.idle
        for t in stride(from: T - 1, through: 0, by: -1) {
            backwardStep(StepRows(t: t, rows: nb, BH: BH, BG: BG, oh: oh, og: og, row: t * B + r.lowerBound), dy: dy + t * BH + oh, dh: dh + oh)
            if timed { probe = Profiler.stop(.gates, probe) }
            // forward: gx[t] (or gh[t]) += h[t-1] · W_hhᵀ  ⇒  ∂L/∂h[t-1] = dGh[t] · W_hh  (+ the direct part)
            if let m = m16 {
                let rt = (t * B + r.lowerBound)..<(t * B + r.upperBound)   // step t's rows of this part
                m.scratch.rows.roundRows(rt, from: dGh, lda: G)
                bf16GemmRows(r, a: m.scratch.rows, firstRow: t * B, b: m.whh, c: dh, ldc: H, accumulate: Self.hasDirectHiddenPath)
            } else {
                packedGemm(m: nb, a: dGh + t * BG + og, lda: G, b: whhP, c: dh + oh, ldc: H,
                           accumulate: Self.hasDirectHiddenPath)
            }
            if timed { probe = Profiler.stop(.recurrentProducts, probe) }
        }
    }

    // MARK: - Time loop across the pool

    /// Runs the forward (dy == nil) or backward time loop, the batch split across the pool.
    func runTimeLoop(T: Int, B: Int, p: UnsafePointer<Float>, dy: UnsafePointer<Float>?) {
        let parts = timeLoopParts(B: B)
        WorkerPool.shared.run(parts: parts, with: TimeLoopJob(layer: self, T: T, B: B, p: p, dy: dy, parts: parts)) {
            $0.assumingMemoryBound(to: TimeLoopJob.self).pointee.run(part: $1)
        }
    }

    // MARK: - Inference step

    package func stepRows(gx: UnsafeMutablePointer<Float>, gh: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>,
                         c: UnsafeMutablePointer<Float>?, rows: Int, bias: UnsafePointer<Float>, p: UnsafePointer<Float>,
                         scratch: UnsafeMutablePointer<Float>) {
        if !Self.keepsHiddenProduct { addVectors(gx, gh, into: gx, n: rows * G) }   // W_ih x + W_hh h
        stepKernel(gx: gx, gh: gh, h: h, c: c, rows: rows, bias: bias, p: p, scratch: scratch)
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

/// One part of a layer's time loop: the streams of one batch slice (allocation-free pool job; the
/// layer is borrowed, not retained, for the duration of `run`).
private struct TimeLoopJob {
    unowned(unsafe) let layer: any RecurrentCell
    let T: Int, B: Int, p: UnsafePointer<Float>, dy: UnsafePointer<Float>?, parts: Int
    func run(part: Int) {
        // part 0 runs on the calling thread: the only one that feeds the profiler
        let l = layer, r = slice(B, part: part, of: parts)
        if let dy { l.backwardRows(r, T: T, B: B, p: p, dy: dy, timed: part == 0) } else { l.forwardRows(r, T: T, B: B, p: p, timed: part == 0) }
    }
}
