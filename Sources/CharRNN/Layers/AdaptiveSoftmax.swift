// Layers/AdaptiveSoftmax.swift — adaptive softmax (Grave et al. 2017, "Efficient softmax approximation
// for GPUs"), laid out as PyTorch's nn.AdaptiveLogSoftmaxWithLoss(H, V, cutoffs, div_value, head_bias=True).
//
// Legend: N rows (T·B), H hidden, V vocabulary, S shortlist (head) size, C tail clusters,
// c_i class-rank bounds (c_0 = S, c_C = V), w_i = ⌊H / div^(i+1)⌋ tail projection width, n_i = c_{i+1} − c_i.
// Classes are ranks in frequency order: rank r is vocabulary id `order[r]` (most frequent first), so
// the head holds the most frequent tokens and each tail cluster rarer ones, as in the paper.
//
//   head   z = x · W_headᵀ + b_head                       (N, S + C)   decoder.head.weight (S+C, H), decoder.head.bias
//   tail i u_i = (x · W_i0ᵀ) · W_i1ᵀ                        (N_i, n_i)   decoder.tail.{i}.0.weight (w_i, H), .1.weight (n_i, w_i)
//   log p(rank r < S)      = log_softmax(z)_r
//   log p(rank r in tail i) = log_softmax(z)_{S+i} + log_softmax(u_i)_{r − c_i}
//
// Training evaluates each tail only on the rows whose target falls in it (the speed-up); the loss is
// exactly −log p(target) of the distribution above. Evaluation and sampling compute log p for every
// token (`fullLogProbs`), a normalized distribution over all V ids.
// The head's forward and backward are a LinearLayer over the head views (AdaptiveSoftmaxOutput in
// OutputLayer.swift drives both); this file does the head's cross-entropy and everything about the tails.
// In bf16 training the head's and the tails' products take bf16 operands (Model/MixedPrecision.swift).
// Caches (workspace): head targets, per-cluster row lists, gathered rows, projections, tail logits, dx of the tails.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Configuration

/// Where the adaptive softmax cuts the frequency-sorted vocabulary. Stored in the model config.
package struct AdaptiveSoftmaxConfig: Codable, Sendable, Equatable {
    /// PyTorch's `cutoffs` without the final V: the head holds ranks [0, cutoffs[0]) plus one entry per
    /// tail; tail i holds ranks [cutoffs[i], cutoffs[i+1]) (the last one up to V).
    package var cutoffs: [Int]
    /// Tail i projects H to ⌊H / divValue^(i+1)⌋ (PyTorch's `div_value`, default 4).
    package var divValue: Double
    /// Rank → vocabulary id, most frequent first (ties: lower id first).
    package var order: [Int]

    package init(cutoffs: [Int], divValue: Double = 4, order: [Int]) {
        self.cutoffs = cutoffs; self.divValue = divValue; self.order = order
    }

    /// S: number of tokens in the head.
    package var headSize: Int { cutoffs[0] }
    /// C: number of tail clusters.
    package var clusters: Int { cutoffs.count }
    /// Rank bounds [S, c_1, …, V].
    package var bounds: [Int] { cutoffs + [order.count] }
    /// w_i.
    package func tailWidth(_ i: Int, hidden: Int) -> Int { max(1, Int(Double(hidden) / pow(divValue, Double(i + 1)))) }

    /// Problems, or nil.
    package var problem: String? {
        let V = order.count
        if V < 2 { return "adaptive softmax needs at least 2 tokens" }
        if cutoffs.isEmpty { return "adaptive softmax needs at least one cutoff" }
        if !(divValue >= 1) { return "adaptive softmax div value must be ≥ 1" }
        var prev = 0
        for c in cutoffs {
            if c <= prev || c >= V { return "\(Setting.cutoffs) must be increasing, positive and below the vocabulary size \(V)" }
            prev = c
        }
        if Set(order).count != V || order.contains(where: { $0 < 0 || $0 >= V }) { return "adaptive softmax order is not a permutation" }
        return nil
    }

    /// Frequency order of `counts` (most frequent first) and cutoffs: `manual` when given (ranks, as
    /// PyTorch's `cutoffs`), else the cheapest of a few candidates by a cost model per token:
    ///   (S + C)·(H + κ) + Σ_i P_i·(w_i·H + n_i·(w_i + κ)),  κ = 16 (an exp and a normalization),
    /// where P_i is the fraction of tokens in tail i; the head covers 80, 85, 90 or 95% of the tokens,
    /// and an optional second cut sits at 97, 98, 99 or 99.5% coverage.
    package static func choose(counts: [Int], hidden H: Int, divValue: Double = 4, manual: [Int]? = nil) -> AdaptiveSoftmaxConfig {
        let V = counts.count
        let order = (0..<V).sorted { counts[$0] > counts[$1] || (counts[$0] == counts[$1] && $0 < $1) }
        if let manual { return AdaptiveSoftmaxConfig(cutoffs: manual, divValue: divValue, order: order) }
        guard V >= 2 else { return AdaptiveSoftmaxConfig(cutoffs: [1], divValue: divValue, order: order) }
        var prefix = [0]                                    // prefix[r] = tokens in ranks < r
        prefix.reserveCapacity(V + 1)
        for id in order { prefix.append(prefix.last! + counts[id]) }
        let total = max(1, prefix[V])
        func rank(covering q: Double) -> Int {              // smallest r with prefix[r] ≥ q·total, in [1, V−1]
            let need = q * Double(total)
            var r = 1
            while r < V - 1 && Double(prefix[r]) < need { r += 1 }
            return r
        }
        let kappa = 16.0
        func cost(_ cuts: [Int]) -> Double {
            let cfg = AdaptiveSoftmaxConfig(cutoffs: cuts, divValue: divValue, order: order)
            let b = cfg.bounds
            var c = Double(cuts[0] + cuts.count) * (Double(H) + kappa)
            for i in 0..<cuts.count {
                let w = Double(cfg.tailWidth(i, hidden: H)), n = Double(b[i + 1] - b[i])
                let P = Double(prefix[b[i + 1]] - prefix[b[i]]) / Double(total)
                c += P * (w * Double(H) + n * (w + kappa))
            }
            return c
        }
        var best: ([Int], Double)? = nil
        for q in [0.80, 0.85, 0.90, 0.95] {
            let s = rank(covering: q)
            var candidates = [[s]]
            for q2 in [0.97, 0.98, 0.99, 0.995] {
                let s2 = rank(covering: q2)
                if s2 > s && s2 < V { candidates.append([s, s2]) }
            }
            for cuts in candidates {
                let c = cost(cuts)
                if best == nil || c < best!.1 { best = (cuts, c) }
            }
        }
        return AdaptiveSoftmaxConfig(cutoffs: best!.0, divValue: divValue, order: order)
    }
}

// MARK: - Layer

/// One tail cluster's two projections.
package struct AdaptiveTail: Sendable {
    package let proj: TensorView   // (w_i, H)   decoder.tail.{i}.0.weight
    package let out: TensorView    // (n_i, w_i) decoder.tail.{i}.1.weight
}

/// The head, the tails and the bookkeeping.
package struct AdaptiveSoftmaxLayer: Sendable {
    package let head: LinearLayer
    package let tails: [AdaptiveTail]
    package let config: AdaptiveSoftmaxConfig
    let H: Int, V: Int, S: Int, C: Int
    let bounds: [Int]             // (C + 1)
    let widths: [Int]             // (C)
    let rankOf: [Int32]           // (V) vocabulary id → rank
    let idOf: [Int32]             // (V) rank → vocabulary id

    /// Takes `decoder.head.weight`, `decoder.head.bias` and `decoder.tail.{i}.{0,1}.weight` from a
    /// layout built from the model's `NetworkSpec`.
    package init(config: AdaptiveSoftmaxConfig, hidden: Int, layout: ParameterLayout) {
        precondition(config.problem == nil, config.problem ?? "")
        H = hidden; V = config.order.count; S = config.headSize; C = config.clusters
        self.config = config
        bounds = config.bounds
        widths = (0..<C).map { config.tailWidth($0, hidden: hidden) }
        guard let hw = layout[StateDict.adaptiveHeadWeight], let hb = layout[StateDict.adaptiveHeadBias] else {
            preconditionFailure("layout has no adaptive softmax head")
        }
        head = LinearLayer(weight: hw, bias: hb)
        tails = (0..<C).map { i in
            guard let proj = layout[StateDict.adaptiveTailProj(i)], let out = layout[StateDict.adaptiveTailOut(i)] else {
                preconditionFailure("layout has no adaptive softmax tail \(i)")
            }
            return AdaptiveTail(proj: proj, out: out)
        }
        idOf = config.order.map { Int32($0) }
        var r = [Int32](repeating: 0, count: V)
        for (rank, id) in config.order.enumerated() { r[id] = Int32(rank) }
        rankOf = r
    }

    /// Head outputs (S + C).
    package var headOutputs: Int { S + C }

    // MARK: Training

    /// Cross-entropy of the adaptive distribution, and its gradients.
    /// - Parameters:
    ///   - x: (N, H) the decoder input (top layer output after dropout).
    ///   - targets: (N) vocabulary ids.
    ///   - head: (N, S + C) head logits (from `head.forward`); replaced by ∂loss/∂head logits (=).
    ///   - p, g: parameters and gradients; the tails' gradients accumulate (+=).
    ///   - ws: workspace; afterwards `ws.dxTail` (N, H) holds the tails' part of ∂loss/∂x (written =).
    /// - Returns: the mean loss −log p(target) over the N rows.
    package func trainLoss(x: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows N: Int, head: UnsafeMutablePointer<Float>,
                          p: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>, ws: AdaptiveSoftmaxWorkspace) -> Double {
        trainLoss(x: x, targets: targets, rows: N, head: head, p: p, g: g, ws: ws, bf16: nil)
    }

    /// `trainLoss`, the tails' six products in bf16 with float32 sums when `bf16` is given (bf16
    /// training, Model/MixedPrecision.swift).
    func trainLoss(x: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows N: Int, head: UnsafeMutablePointer<Float>,
                   p: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>, ws: AdaptiveSoftmaxWorkspace, bf16: AdaptiveBF16?) -> Double {
        precondition(N >= 1 && N <= ws.maxRows, "adaptive softmax: \(N) rows, workspace holds \(ws.maxRows)")
        let ht = ws.headTarget.ptr
        for r in 0..<N {
            let y = Int(targets[r])
            precondition(y >= 0 && y < V, "target id \(y) outside vocabulary of \(V)")
            let rank = Int(rankOf[y])
            ht[r] = Int32(rank < S ? rank : S + cluster(ofRank: rank))
        }
        // head: loss_head = mean CE(z, head target); z ← (softmax(z) − onehot)/N
        var loss = softmaxCrossEntropy(logits: head, targets: ht, rows: N, V: S + C, gradient: true)
        ws.dxTail.zero()
        for i in 0..<C {
            // rows whose target is in cluster i, and their targets within the cluster
            var Ni = 0
            for r in 0..<N where Int(ht[r]) == S + i {
                ws.rows.ptr[Ni] = Int32(r)
                ws.clusterTarget.ptr[Ni] = rankOf[Int(targets[r])] - Int32(bounds[i])
                Ni += 1
            }
            if Ni == 0 { continue }
            let w = widths[i], n = bounds[i + 1] - bounds[i]
            let W0 = p + tails[i].proj.offset, W1 = p + tails[i].out.offset
            let xs = ws.xs.ptr, P = ws.proj.ptr, U = ws.tailLogits.ptr, dP = ws.dProj.ptr
            for j in 0..<Ni { (xs + j * H).update(from: x + Int(ws.rows.ptr[j]) * H, count: H) }
            if let m = bf16 {
                loss += tail16(i, m, rows: Ni, N: N, g: g, ws: ws)
                continue
            }
            // P = xs · W0ᵀ (Ni, w);  U = P · W1ᵀ (Ni, n)
            gemm(.noTrans, .trans, m: Ni, n: w, k: H, a: xs, lda: H, b: W0, ldb: H, beta: 0, c: P, ldc: w)
            gemm(.noTrans, .trans, m: Ni, n: n, k: w, a: P, lda: w, b: W1, ldb: w, beta: 0, c: U, ldc: n)
            // loss += (Ni/N)·mean CE(U);  U ← ∂loss/∂U = (softmax − onehot)/N
            let share = Double(Ni) / Double(N)
            loss += share * softmaxCrossEntropy(logits: U, targets: ws.clusterTarget.ptr, rows: Ni, V: n, gradient: true,
                                                scale: Float(share))
            // U = P · W1ᵀ  ⇒  dW1 += dUᵀ · P,  dP = dU · W1
            gemm(.trans, .noTrans, m: n, n: w, k: Ni, a: U, lda: n, b: P, ldb: w, beta: 1, c: g + tails[i].out.offset, ldc: w)
            gemm(.noTrans, .noTrans, m: Ni, n: w, k: n, a: U, lda: n, b: W1, ldb: w, beta: 0, c: dP, ldc: w)
            // P = xs · W0ᵀ  ⇒  dW0 += dPᵀ · xs,  dxs = dP · W0 (reuses xs: it is not needed after dW0)
            gemm(.trans, .noTrans, m: w, n: H, k: Ni, a: dP, lda: w, b: xs, ldb: H, beta: 1, c: g + tails[i].proj.offset, ldc: H)
            gemm(.noTrans, .noTrans, m: Ni, n: H, k: w, a: dP, lda: w, b: W0, ldb: H, beta: 0, c: xs, ldc: H)
            for j in 0..<Ni { axpy(n: H, alpha: 1, x: xs + j * H, y: ws.dxTail.ptr + Int(ws.rows.ptr[j]) * H) }
        }
        return loss
    }

    /// `trainLoss`'s work on tail i (its Ni rows gathered in ws.xs) with bf16 products: the same
    /// steps, each product's operands rounded, float32 sums. Returns the tail's share of the loss.
    private func tail16(_ i: Int, _ m: AdaptiveBF16, rows Ni: Int, N: Int, g: UnsafeMutablePointer<Float>,
                        ws: AdaptiveSoftmaxWorkspace) -> Double {
        let w = widths[i], n = bounds[i + 1] - bounds[i], s = m.scratch
        let xs = ws.xs.ptr, P = ws.proj.ptr, U = ws.tailLogits.ptr, dP = ws.dProj.ptr
        let W0 = m.proj[i], W1 = m.out[i]
        // P = xs · W0ᵀ (Ni, w);  U = P · W1ᵀ (Ni, n)
        bf16Gemm(m: Ni, a: xs, lda: H, b: W0.wT, scratch: s.rows, c: P, ldc: w, accumulate: false)
        bf16Gemm(m: Ni, a: P, lda: w, b: W1.wT, scratch: s.rows, c: U, ldc: n, accumulate: false)
        let share = Double(Ni) / Double(N)
        let loss = share * softmaxCrossEntropy(logits: U, targets: ws.clusterTarget.ptr, rows: Ni, V: n, gradient: true,
                                               scale: Float(share))
        // dW1 += dUᵀ · P,  dP = dU · W1
        bf16GemmTN(m: n, n: w, k: Ni, a: U, lda: n, b: P, ldb: w, aScratch: s.pairs, bScratch: s.acts,
                   c: g + tails[i].out.offset, ldc: w, accumulate: true)
        bf16Gemm(m: Ni, a: U, lda: n, b: W1.w, scratch: s.rows, c: dP, ldc: w, accumulate: false)
        // dW0 += dPᵀ · xs,  dxs = dP · W0 (into xs: not read after dW0)
        bf16GemmTN(m: w, n: H, k: Ni, a: dP, lda: w, b: xs, ldb: H, aScratch: s.pairs, bScratch: s.acts,
                   c: g + tails[i].proj.offset, ldc: H, accumulate: true)
        bf16Gemm(m: Ni, a: dP, lda: w, b: W0.w, scratch: s.rows, c: xs, ldc: H, accumulate: false)
        for j in 0..<Ni { axpy(n: H, alpha: 1, x: xs + j * H, y: ws.dxTail.ptr + Int(ws.rows.ptr[j]) * H) }
        return loss
    }

    /// Cluster of a tail rank (rank ≥ S).
    @inline(__always)
    func cluster(ofRank rank: Int) -> Int {
        var i = 0
        while rank >= bounds[i + 1] { i += 1 }
        return i
    }

    // MARK: Exact distribution

    /// log p(v | x) for every vocabulary id v, for `rows` ≤ `ws.blockRows` rows.
    /// - Parameters:
    ///   - x: (rows, H).
    ///   - headLogits: (rows, S + C) precomputed head logits, or nil to compute them here.
    ///   - out: (rows, V) written (=), in vocabulary id order; each row's exp sums to 1.
    package func fullLogProbs(x: UnsafePointer<Float>, rows R: Int, headLogits: UnsafePointer<Float>?,
                             p: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, ws: AdaptiveSoftmaxWorkspace) {
        precondition(R >= 1 && R <= ws.blockRows, "adaptive softmax: \(R) rows, block holds \(ws.blockRows)")
        let K = S + C
        let z = ws.headBlock.ptr
        if let headLogits { z.update(from: headLogits, count: R * K) } else { head.forward(x: x, rows: R, p: p, out: z) }
        for r in 0..<R {
            let zr = z + r * K
            let lse = logSumExp(zr, n: K)
            for j in 0..<K { zr[j] -= lse }
            let o = out + r * V
            for j in 0..<S { o[Int(idOf[j])] = zr[j] }
        }
        for i in 0..<C {
            let w = widths[i], n = bounds[i + 1] - bounds[i]
            let P = ws.proj.ptr, U = ws.tailLogits.ptr
            gemm(.noTrans, .trans, m: R, n: w, k: H, a: x, lda: H, b: p + tails[i].proj.offset, ldb: H, beta: 0, c: P, ldc: w)
            gemm(.noTrans, .trans, m: R, n: n, k: w, a: P, lda: w, b: p + tails[i].out.offset, ldb: w, beta: 0, c: U, ldc: n)
            for r in 0..<R {
                let u = U + r * n
                let base = z[r * K + S + i] - logSumExp(u, n: n)
                let o = out + r * V
                for j in 0..<n { o[Int(idOf[bounds[i] + j])] = base + u[j] }
            }
        }
    }

    /// Mean −log p(target) over N rows from the full distribution (computed block by block). A
    /// target of −1 is not scored: its row adds 0 (the mean still divides by N), as in
    /// `softmaxCrossEntropy`.
    /// - Parameters:
    ///   - head: (N, S + C) head logits from `head.forward`; read only.
    package func exactLoss(x: UnsafePointer<Float>, targets: UnsafePointer<Int32>, rows N: Int, head: UnsafePointer<Float>,
                          p: UnsafePointer<Float>, ws: AdaptiveSoftmaxWorkspace) -> Double {
        var total = 0.0
        var r0 = 0
        while r0 < N {
            let R = min(ws.blockRows, N - r0)
            fullLogProbs(x: x + r0 * H, rows: R, headLogits: head + r0 * (S + C), p: p, out: ws.full.ptr, ws: ws)
            for r in 0..<R {
                let y = Int(targets[r0 + r])
                if y == -1 { continue }
                precondition(y >= 0 && y < V, "target id \(y) outside vocabulary of \(V)")
                total -= Double(ws.full.ptr[r * V + y])
            }
            r0 += R
        }
        return total / Double(N)
    }
}

/// log Σ exp(z[0..<n]) (max-subtracted).
@inline(__always)
func logSumExp(_ z: UnsafePointer<Float>, n: Int) -> Float {
    var mv = Vec(repeating: -.infinity)
    var j = 0
    while j + vecWidth <= n { mv = vmax(mv, vload(z + j)); j += vecWidth }
    var m = mv.max()
    while j < n { m = max(m, z[j]); j += 1 }
    let mvec = Vec(repeating: m)
    var sv = Vec()
    forEachLaneBlock(n, { sv += vexp($0.load(z + $1) - mvec) }, tail: { sv += $0.keep(vexp($0.load(z + $1) - mvec)) })
    return m + log(sv.sum())
}

// MARK: - Workspace

/// Buffers of the adaptive softmax for up to `maxRows` training rows and `blockRows` rows of the full
/// distribution. Allocated once.
package final class AdaptiveSoftmaxWorkspace: @unchecked Sendable {
    package let maxRows: Int, blockRows: Int
    let headTarget: IntStorage     // (maxRows) head class of each row's target
    let rows: IntStorage           // (maxRows) rows of the current cluster
    let clusterTarget: IntStorage  // (maxRows) target rank within the current cluster
    let xs: Storage                // (maxRows, H) gathered rows; then their dx
    let proj: Storage              // (maxRows, w_max)
    let dProj: Storage             // (maxRows, w_max)
    let tailLogits: Storage        // (maxRows, n_max) tail logits, then their gradient
    package let dxTail: Storage     // (maxRows, H) the tails' part of ∂loss/∂x
    let headBlock: Storage         // (blockRows, S + C) head log-softmax of a block
    let full: Storage              // (blockRows, V) full log-probabilities of a block

    package init(layer a: AdaptiveSoftmaxLayer, maxRows: Int, blockRows: Int = 64) {
        self.maxRows = maxRows
        self.blockRows = max(1, min(blockRows, maxRows))
        let H = a.H, wMax = a.widths.max() ?? 1
        let nMax = (0..<a.C).map { a.bounds[$0 + 1] - a.bounds[$0] }.max() ?? 1
        let R = max(maxRows, self.blockRows)
        headTarget = IntStorage(count: maxRows); rows = IntStorage(count: maxRows); clusterTarget = IntStorage(count: maxRows)
        xs = Storage(count: maxRows * H)
        proj = Storage(count: R * wMax); dProj = Storage(count: maxRows * wMax)
        tailLogits = Storage(count: R * nMax)
        dxTail = Storage(count: maxRows * H)
        headBlock = Storage(count: self.blockRows * (a.S + a.C))
        full = Storage(count: self.blockRows * a.V)
    }
}
