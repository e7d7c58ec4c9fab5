// Layers/OutputLayer.swift — the last layer of the network: from the top recurrent layer's output
// x (N, H) to a distribution over the V vocabulary ids. Two implementations:
//
//   FullSoftmaxOutput      logits = x · Wᵀ + b (nn.Linear), p = softmax(logits)
//   AdaptiveSoftmaxOutput  a head over the frequent ids plus tail clusters (Layers/AdaptiveSoftmax.swift)
//
// Each serves training (loss, gradients), validation (exact mean −log p) and inference (log p of
// every id, for B streams at a time). Rows are time-major, N = T·B. Each owns its workspace, sized
// for `maxRows` rows at build; nothing is allocated per call (the inference step's packed weights
// are made once, by `prepareStep`).

/// The output layer of a CharRNNModel.
package protocol OutputLayer: AnyObject, Sendable {
    /// Rows one call may take (training minibatch rows, or inference streams).
    var maxRows: Int { get }

    /// Forward, mean cross-entropy −log p(target) over the rows, and backward.
    /// - Parameters:
    ///   - x: (N, H) the decoder input (the top layer's output after dropout).
    ///   - targets: (N) vocabulary ids.
    ///   - g: gradients, accumulated (+=).
    ///   - ones: (N) of 1, for bias column sums.
    ///   - dx: (N, H) ∂loss/∂x, written (=).
    /// - Returns: the mean loss.
    func trainLoss(x: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows N: Int, p: UnsafePointer<Float>,
                   g: UnsafeMutablePointer<Float>, ones: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) -> Double

    /// Mean −log p(target) of the exact distribution over N rows, without gradients. A target of −1
    /// is not scored (its row adds 0; the mean still divides by N).
    func exactLoss(x: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows N: Int, p: UnsafePointer<Float>) -> Double

    /// log p(v | x) of every id v by GEMMs over the rows: out (rows, V), written; rows ≤ maxRows.
    func logProbs(x: UnsafePointer<Float>, rows: Int, p: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>)

    /// Makes (or refreshes, after the parameters changed) what `stepLogProbs` reads from `p`, its
    /// packed matrices stored in `precision`.
    func prepareStep(p: UnsafePointer<Float>, precision: WeightPrecision)

    /// log p(v | x) of every id for the B streams of one inference step: out (rows, V), written. A
    /// stream's row is the same bits whether it is stepped alone or among others. Needs `prepareStep`.
    func stepLogProbs(x: UnsafePointer<Float>, rows: Int, p: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>)
}

/// In place: each of `rows` rows of V scores becomes log-softmax (row − log Σ exp(row)).
@inline(__always)
func logSoftmaxRows(_ z: UnsafeMutablePointer<Float>, rows: Int, V: Int) {
    for r in 0..<rows {
        let row = z + r * V
        let lse = logSumExp(row, n: V)
        for j in 0..<V { row[j] -= lse }
    }
}

/// Cores worth using for one inference product of `work` multiply-adds over `panels` panels: only
/// when each gets a sizeable share.
@inline(__always)
func inferenceParts(panels: Int, work: Int) -> Int {
    work < 400_000 ? 1 : min(WorkerPool.shared.width, panels)
}

// MARK: - Full softmax

/// nn.Linear(H, V) and a softmax over all V ids (`decoder.weight` (V, H), `decoder.bias` (V)).
package final class FullSoftmaxOutput: OutputLayer, @unchecked Sendable {
    package let decoder: LinearLayer
    package let maxRows: Int
    let logits: Storage           // (maxRows, V) logits; in training replaced by ∂loss/∂logits
    var packed: PackedPanels?     // decoder Wᵀ (H × V) in panels, for the inference step
    /// The bf16 copies of W when the model trains in bf16: `trainLoss` (training only) then uses them.
    var mixed: DecoderBF16?

    package init(decoder: LinearLayer, maxRows: Int) {
        self.decoder = decoder; self.maxRows = maxRows
        logits = Storage(count: maxRows * decoder.outFeatures)
    }

    package func trainLoss(x: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows N: Int, p: UnsafePointer<Float>,
                          g: UnsafeMutablePointer<Float>, ones: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) -> Double {
        let V = decoder.outFeatures
        if let m = mixed {
            // bf16: the softmax's pass over each row adds the bias and rounds ∂loss/∂logits for dx
            decoder.forward16(x: x, rows: N, p: p, out: logits.ptr, m: m, addBias: false)
            m.scratch.rows.prepare(rows: N, k: V)
            let loss = softmaxCrossEntropy(logits: logits.ptr, targets: targets, rows: N, V: V, gradient: true,
                                           bias: p + decoder.bias.offset, roundInto: m.scratch.rows)
            decoder.backward16(x: x, dout: logits.ptr, rows: N, p: p, g: g, dx: dx, m: m, doutRounded: true)
            return loss
        }
        decoder.forward(x: x, rows: N, p: p, out: logits.ptr)
        let loss = softmaxCrossEntropy(logits: logits.ptr, targets: targets, rows: N, V: V, gradient: true)
        // logits = x · Wᵀ + b  ⇒  dW += dlogitsᵀ · x,  db += Σ dlogits,  dx = dlogits · W
        decoder.backward(x: x, dout: logits.ptr, rows: N, p: p, g: g, ones: ones, dx: dx)
        return loss
    }

    package func exactLoss(x: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows N: Int, p: UnsafePointer<Float>) -> Double {
        decoder.forward(x: x, rows: N, p: p, out: logits.ptr)
        return softmaxCrossEntropy(logits: logits.ptr, targets: targets, rows: N, V: decoder.outFeatures, gradient: false)
    }

    package func logProbs(x: UnsafePointer<Float>, rows: Int, p: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
        precondition(rows >= 1 && rows <= maxRows)
        decoder.forward(x: x, rows: rows, p: p, out: out)
        logSoftmaxRows(out, rows: rows, V: decoder.outFeatures)
    }

    package func prepareStep(p: UnsafePointer<Float>, precision: WeightPrecision) {
        let V = decoder.outFeatures, H = decoder.inFeatures
        let pk = packed.flatMap { $0.precision == precision ? $0 : nil } ?? PackedPanels(maxK: H, maxN: V, precision: precision)
        pk.packTransposed(p + decoder.weight.offset, k: H, n: V, ld: H)
        packed = pk
    }

    package func stepLogProbs(x: UnsafePointer<Float>, rows B: Int, p: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
        guard let packed else { preconditionFailure("stepLogProbs before prepareStep") }
        let V = decoder.outFeatures, H = decoder.inFeatures
        // logits = b + W · x per row, then log-softmax
        for r in 0..<B { (out + r * V).update(from: p + decoder.bias.offset, count: V) }
        let parts = inferenceParts(panels: packed.panels, work: B * V * H)
        let job = DecoderStepJob(x: x, rows: B, H: H, b: packed, out: out, V: V, parts: parts)
        WorkerPool.shared.run(parts: parts, with: job) { $0.assumingMemoryBound(to: DecoderStepJob.self).pointee.run(part: $1) }
        logSoftmaxRows(out, rows: B, V: V)
    }
}

/// One part of the decoder's inference product: the panels of one slice (allocation-free pool job).
private struct DecoderStepJob {
    let x: UnsafePointer<Float>, rows: Int, H: Int, b: PackedPanels, out: UnsafeMutablePointer<Float>, V: Int, parts: Int
    func run(part: Int) {
        packedGemmRows(m: rows, a: x, lda: H, b: b, c: out, ldc: V, accumulate: true, panels: slice(b.panels, part: part, of: parts))
    }
}

// MARK: - Adaptive softmax

/// PyTorch's nn.AdaptiveLogSoftmaxWithLoss: a head (`decoder.head.*`) and tail clusters
/// (`decoder.tail.{i}.*`); training evaluates each tail only on the rows whose target is in it,
/// validation and inference use the exact distribution over all V ids.
package final class AdaptiveSoftmaxOutput: OutputLayer, @unchecked Sendable {
    package let layer: AdaptiveSoftmaxLayer
    package let maxRows: Int
    let ws: AdaptiveSoftmaxWorkspace
    let head: Storage             // (maxRows, S + C) head logits; in training replaced by their gradient
    /// The bf16 copies of the head and tails when the model trains in bf16: `trainLoss` then uses them.
    var mixed: AdaptiveBF16?

    package init(layer: AdaptiveSoftmaxLayer, maxRows: Int) {
        self.layer = layer; self.maxRows = maxRows
        ws = AdaptiveSoftmaxWorkspace(layer: layer, maxRows: maxRows)
        head = Storage(count: maxRows * layer.headOutputs)
    }

    package func trainLoss(x: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows N: Int, p: UnsafePointer<Float>,
                          g: UnsafeMutablePointer<Float>, ones: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) -> Double {
        if let m = mixed { layer.head.forward16(x: x, rows: N, p: p, out: head.ptr, m: m.head) } else {
            layer.head.forward(x: x, rows: N, p: p, out: head.ptr)
        }
        let loss = layer.trainLoss(x: x, targets: targets, rows: N, head: head.ptr, p: p, g: g, ws: ws, bf16: mixed)
        // head: z = x · W_headᵀ + b  ⇒  as nn.Linear; the tails' part of dx is added after
        if let m = mixed { layer.head.backward16(x: x, dout: head.ptr, rows: N, p: p, g: g, dx: dx, m: m.head) } else {
            layer.head.backward(x: x, dout: head.ptr, rows: N, p: p, g: g, ones: ones, dx: dx)
        }
        axpy(n: N * layer.H, alpha: 1, x: ws.dxTail.ptr, y: dx)
        return loss
    }

    package func exactLoss(x: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows N: Int, p: UnsafePointer<Float>) -> Double {
        layer.head.forward(x: x, rows: N, p: p, out: head.ptr)
        return layer.exactLoss(x: x, targets: targets, rows: N, head: head.ptr, p: p, ws: ws)
    }

    package func logProbs(x: UnsafePointer<Float>, rows: Int, p: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
        precondition(rows >= 1 && rows <= maxRows)
        var r0 = 0
        while r0 < rows {
            let R = min(ws.blockRows, rows - r0)
            layer.fullLogProbs(x: x + r0 * layer.H, rows: R, headLogits: nil, p: p, out: out + r0 * layer.V, ws: ws)
            r0 += R
        }
    }

    package func prepareStep(p: UnsafePointer<Float>, precision: WeightPrecision) {}   // float32 GEMMs, one row at a time

    package func stepLogProbs(x: UnsafePointer<Float>, rows B: Int, p: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
        // one row at a time, so that a stream's result does not depend on how many share the step
        for r in 0..<B {
            layer.fullLogProbs(x: x + r * layer.H, rows: 1, headLogits: nil, p: p, out: out + r * layer.V, ws: ws)
        }
    }
}
