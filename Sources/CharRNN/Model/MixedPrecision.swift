// Model/MixedPrecision.swift — what bf16 mixed-precision training (`--precision bf16`, issue 19) adds to
// a model: the bfloat16 copies of its weight matrices, packed for the products of Tensor/BF16GEMM.swift,
// and the scratch operands those products round their activations into. All allocated once, when the
// training step switches the model to bf16 (`CharRNNModel.enableBF16Training`); nothing per step.
//
// Where float32 values become bf16 (every rounding is to nearest even, `bf16RNE`, as VCVTNE2PS2BF16):
// - Weights: once per optimizer step, right after the update (`TrainingStep`), from the float32 master
//   weights into the packed copies below (and when training starts or resumes: the copies are marked
//   stale by `parametersChanged` and re-packed before the next forward). A process alone rounds each
//   block of 32 rows as soon as the optimizer has updated it (`updateAndPackBF16`, one pass over the
//   weights); under mpirun the copies are packed after the updated chunks are gathered. Forward and backward of the
//   next step read them. Once per step because the weights change only then: rounding per use would
//   give the same bits at more cost.
// - Activations and gradients, as produced: x and h[t-1] before the products that read them (the
//   input projection per minibatch, the recurrent product per step and stream slice), the gate
//   gradients dG before dx, dh and the weight gradients, the decoder's input and ∂loss/∂logits (and
//   for the adaptive softmax each tail's gathered rows, projections and their gradients). Each is
//   rounded where it is read, from the float32 value the fp32 path would read, so no value is rounded
//   twice, and the float32 caches the cells, dropout and the softmax use are untouched. Per minibatch
//   (not once per layer for all time) because the values exist only then.
// Everything else is float32: master weights, the gradients as summed (each product adds into them in
// float32), the optimizer moments, clipping, c, the gate nonlinearities, biases, the embedding, the
// one-hot gather and its scatter (a one-hot row picks W's values exactly, so there is no product to
// round), softmax and the loss. Validation and sampling read the float32 weights.

/// The scratch operands every bf16 product of one model rounds into, shared by its layers (they run
/// one after the other; the per-step operand is split by rows across the time loop's parts).
final class BF16Scratch: @unchecked Sendable {
    /// Row layout, (N × k): x of the input projection, the decoder's input and dlogits, and dG of all
    /// T steps (rounded step by step by the backward time loop, then read by dx).
    let rows: BF16Operand
    /// Pair layout, (m × N): the transposed left operand of the weight gradients (dGᵀ, dlogitsᵀ).
    let pairs: BF16Operand
    /// Panels, (N × n): the right operand of the weight gradients (x, h[0..<T], the decoder's input).
    let acts: BF16Panels
    /// Row layout, (B × H): h[t-1] of the forward recurrent product (the backward one rounds dG[t]
    /// into `rows`, where dx then finds all T steps of it).
    let step: BF16Operand
    /// (gradRows): the column sums of a weight gradient's left operand, read in the pass that rounds
    /// it (`BF16Operand.roundTransposed`): the bias gradient.
    let sums: Storage

    init(maxRows N: Int, maxB: Int, rowsK: Int, gradRows: Int, actsN: Int, hidden H: Int) {
        rows = BF16Operand(maxRows: N, maxK: rowsK)
        pairs = BF16Operand(maxRows: gradRows, maxK: N)
        acts = BF16Panels(maxK: N, maxN: actsN)
        step = BF16Operand(maxRows: maxB, maxK: H)
        sums = Storage(count: gradRows)
    }
}

/// The bf16 weight copies of one recurrent layer.
final class RecurrentBF16: @unchecked Sendable {
    let scratch: BF16Scratch
    /// W_ih (dense input only; a one-hot input gathers) and W_hh.
    let ih: MatrixBF16?, hh: MatrixBF16
    /// W_ihᵀ for gx = x · W_ihᵀ, and W_ih for dx = dGx · W_ih.
    var wihT: BF16Panels? { ih?.wT }
    var wih: BF16Panels? { ih?.w }
    /// W_hhᵀ for the forward recurrent product, W_hh for ∂L/∂h[t-1] = dGh[t] · W_hh.
    var whhT: BF16Panels { hh.wT }
    var whh: BF16Panels { hh.w }

    init(layer: RecurrentLayerCore, scratch: BF16Scratch) {
        self.scratch = scratch
        ih = layer.oneHot ? nil : MatrixBF16(layer.params.wIH)
        hh = MatrixBF16(layer.params.wHH)
    }

    func pack(_ p: UnsafePointer<Float>) {
        ih?.pack(p)
        hh.pack(p)
    }
}

/// The bf16 copies of one weight matrix W (out × in) for y = x · Wᵀ: Wᵀ for the forward product and
/// W for dx = dy · W.
final class MatrixBF16: @unchecked Sendable {
    let view: TensorView
    let rows: Int, cols: Int
    let wT: BF16Panels, w: BF16Panels

    init(_ view: TensorView) {
        self.view = view
        rows = view.shape[0]; cols = view.shape[1]
        wT = BF16Panels(maxK: cols, maxN: rows)
        w = BF16Panels(maxK: rows, maxN: cols)
    }

    func pack(_ p: UnsafePointer<Float>) {
        wT.packTransposed(p + view.offset, k: cols, n: rows, ldw: cols)
        w.pack(p + view.offset, k: rows, n: cols, ldb: cols)
    }

    /// Blocks of 32 rows of W, the unit of the fused update: block b is what panel b of Wᵀ and
    /// k-pairs [16b, 16b + 16) of W's panels hold.
    var blocks: Int { (rows + 31) / 32 }
    /// The arena elements of block b.
    func elements(ofBlock b: Int) -> Range<Int> { (view.offset + 32 * b * cols)..<(view.offset + min(rows, 32 * b + 32) * cols) }

    /// Sets both copies' shapes, before a pool job packs them block by block.
    func prepare() {
        wT.prepare(k: cols, n: rows)
        w.prepare(k: rows, n: cols)
    }

    /// Rounds block b of W (the arena p) into both copies, on the calling thread.
    func packBlock(_ b: Int, _ p: UnsafePointer<Float>) {
        wT.packTransposedPanel(b, from: p + view.offset, ldw: cols)
        w.packPairs((16 * b)..<min((rows + 1) / 2, 16 * b + 16), from: p + view.offset, ldb: cols)
    }
}

/// The bf16 weight copies of a linear layer: the full-softmax decoder (V, H) or the adaptive head.
final class DecoderBF16: @unchecked Sendable {
    let scratch: BF16Scratch
    let weight: MatrixBF16
    /// Wᵀ for logits = x · Wᵀ + b, W for dx = dlogits · W.
    var wT: BF16Panels { weight.wT }
    var w: BF16Panels { weight.w }

    init(decoder: LinearLayer, scratch: BF16Scratch) {
        self.scratch = scratch
        weight = MatrixBF16(decoder.weight)
    }

    func pack(_ p: UnsafePointer<Float>) { weight.pack(p) }
}

/// The bf16 weight copies of the adaptive softmax: the head, and each tail's projection W0 (w_i, H)
/// and output W1 (n_i, w_i).
final class AdaptiveBF16: @unchecked Sendable {
    let scratch: BF16Scratch
    let head: DecoderBF16
    let proj: [MatrixBF16], out: [MatrixBF16]

    init(layer: AdaptiveSoftmaxLayer, scratch: BF16Scratch) {
        self.scratch = scratch
        head = DecoderBF16(decoder: layer.head, scratch: scratch)
        proj = layer.tails.map { MatrixBF16($0.proj) }
        out = layer.tails.map { MatrixBF16($0.out) }
    }

    func pack(_ p: UnsafePointer<Float>) {
        head.pack(p)
        for m in proj { m.pack(p) }     // (not proj + out: that would allocate an array per step)
        for m in out { m.pack(p) }
    }
}

/// A model's bf16 training state: the scratch, each layer's copies, the decoder's, and whether the
/// copies hold the current float32 weights.
final class BF16Training: @unchecked Sendable {
    let scratch: BF16Scratch
    let layers: [RecurrentBF16]
    /// The full softmax's decoder, or the adaptive softmax's head and tails.
    let decoder: DecoderBF16?
    let adaptive: AdaptiveBF16?
    /// False until the first pack and after `CharRNNModel.parametersChanged`.
    var fresh = false
    /// Every matrix with bf16 copies, and the units of the fused update (`updateAndPackBF16`) in
    /// arena order: each block of 32 rows of a matrix, and the rest of the arena (biases, the
    /// embedding, a one-hot W_ih) in runs of at most `FusedUnit.run` elements. Allocated once.
    let matrices: [MatrixBF16]
    let units: UnsafeMutableBufferPointer<FusedUnit>

    init(model m: CharRNNModel) {
        let N = m.maxT * m.maxB, H = m.config.hidden
        // every (out × in) matrix of the output layer: its products round rows of width in or out
        // (the forward input, dout), its weight gradient out-wide pairs and in-wide panels
        var matrices: [TensorView] = []
        if let full = m.output as? FullSoftmaxOutput { matrices = [full.decoder.weight] }
        if let a = m.output as? AdaptiveSoftmaxOutput { matrices = [a.layer.head.weight] + a.layer.tails.flatMap { [$0.proj, $0.out] } }
        var rowsK = H, gradRows = 1, actsN = H
        for v in matrices {
            rowsK = max(rowsK, v.shape[0], v.shape[1])
            gradRows = max(gradRows, v.shape[0])
            actsN = max(actsN, v.shape[1])
        }
        for l in m.layers {
            rowsK = max(rowsK, l.G, l.oneHot ? 0 : l.D)
            gradRows = max(gradRows, l.G)
            actsN = max(actsN, l.oneHot ? 0 : l.D)
        }
        let s = BF16Scratch(maxRows: N, maxB: m.maxB, rowsK: rowsK, gradRows: gradRows, actsN: actsN, hidden: H)
        scratch = s
        layers = m.layers.map { RecurrentBF16(layer: $0, scratch: s) }
        decoder = (m.output as? FullSoftmaxOutput).map { DecoderBF16(decoder: $0.decoder, scratch: s) }
        adaptive = (m.output as? AdaptiveSoftmaxOutput).map { AdaptiveBF16(layer: $0.layer, scratch: s) }
        var all = layers.flatMap { [$0.ih, $0.hh].compactMap { $0 } }
        if let d = decoder { all.append(d.weight) }
        if let a = adaptive { all += [a.head.weight] + a.proj + a.out }
        self.matrices = all
        let list = FusedUnit.plan(matrices: all, count: m.layout.count)
        units = .allocate(capacity: list.count)
        _ = units.initialize(from: list)
    }

    deinit { units.deallocate() }
}

/// One unit of the fused update: the arena elements `range`, and the block of a matrix they are
/// (`matrix` < 0: elements no copy holds).
struct FusedUnit {
    let range: Range<Int>
    let matrix: Int, block: Int

    /// Largest run of plain elements in one unit (128 KB of parameters).
    static let run = 32_768

    /// The units for `matrices` over an arena of `count` elements: every element in exactly one.
    static func plan(matrices: [MatrixBF16], count: Int) -> [FusedUnit] {
        var pieces: [(range: Range<Int>, matrix: Int, block: Int)] = []
        for (i, m) in matrices.enumerated() {
            for b in 0..<m.blocks { pieces.append((m.elements(ofBlock: b), i, b)) }
        }
        pieces.sort { $0.range.lowerBound < $1.range.lowerBound }
        var out: [FusedUnit] = [], at = 0
        func plain(upTo end: Int) {
            while at < end {
                let e = min(end, at + run)
                out.append(FusedUnit(range: at..<e, matrix: -1, block: 0))
                at = e
            }
        }
        for p in pieces {
            precondition(p.range.lowerBound >= at, "bf16 matrices overlap in the arena")
            plain(upTo: p.range.lowerBound)
            out.append(FusedUnit(range: p.range, matrix: p.matrix, block: p.block))
            at = p.range.upperBound
        }
        plain(upTo: count)
        precondition(at == count, "bf16 matrices outside the arena")
        return out
    }
}

extension CharRNNModel {
    /// Switches training (`trainStep`) to bf16 products: allocates the packed copies and scratch once
    /// (a second call does nothing). Validation, `logProbs` and the inference step stay float32.
    package func enableBF16Training() {
        if bf16 != nil { return }
        let t = BF16Training(model: self)
        for (l, m) in zip(layers, t.layers) { l.mixed = m }
        (output as? FullSoftmaxOutput)?.mixed = t.decoder
        (output as? AdaptiveSoftmaxOutput)?.mixed = t.adaptive
        bf16 = t
    }

    /// Rounds the float32 weights into the bf16 copies (no-op in fp32): the training step calls it
    /// right after each update; `trainStep` calls it when the copies are stale.
    package func packBF16Weights() {
        guard let t = bf16 else { return }
        let p = UnsafePointer(params.ptr)
        for m in t.layers { m.pack(p) }
        t.decoder?.pack(p)
        t.adaptive?.pack(p)
        t.fresh = true
    }

    /// One optimizer step over the whole arena (a process alone: nothing to gather first) with the
    /// bf16 copies rounded in the same pass: each block of 32 rows of a matrix is updated and at once
    /// rounded into both its copies while it is in cache, instead of a second pass over the weights
    /// (and one pool join per copy) after the update. The weights and copies have the bits of
    /// `optimizer.step` then `packBF16Weights` (both are elementwise). Gradients already clipped.
    package func updateAndPackBF16(optimizer: Optimizer, lr: Float) {
        guard let t = bf16 else { preconditionFailure("updateAndPackBF16 on a model not training in bf16") }
        precondition(optimizer.count == layout.count)
        optimizer.countStep()
        for m in t.matrices { m.prepare() }
        let pool = WorkerPool.shared, parts = min(pool.width, max(1, layout.count / 65_536))
        let job = FusedUpdateJob(training: .passUnretained(t), optimizer: .passUnretained(optimizer), params: params.ptr,
                                 grads: UnsafePointer(grads.ptr), lr: lr, count: layout.count, parts: parts)
        pool.run(parts: parts, with: job) { $0.assumingMemoryBound(to: FusedUpdateJob.self).pointee.run(part: $1) }
        t.fresh = true
    }

    /// Whether `trainStep` runs its products in bf16.
    package var trainsInBF16: Bool { bf16 != nil }
}

/// One part of the fused update: the units that start in its share of the elements (allocation-free
/// pool job; the training state and optimizer are borrowed for the call).
private struct FusedUpdateJob {
    let training: Unmanaged<BF16Training>, optimizer: Unmanaged<Optimizer>
    let params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, lr: Float
    let count: Int, parts: Int

    func run(part: Int) {
        let t = training.takeUnretainedValue(), o = optimizer.takeUnretainedValue()
        let lo = count * part / parts, hi = count * (part + 1) / parts
        // the units are contiguous in arena order: each part takes those starting in its share
        for u in t.units where u.range.lowerBound >= lo && u.range.lowerBound < hi {
            o.update(params: params, grads: grads, range: u.range, lr: lr)
            if u.matrix >= 0 { t.matrices[u.matrix].packBlock(u.block, params) }
        }
    }
}
