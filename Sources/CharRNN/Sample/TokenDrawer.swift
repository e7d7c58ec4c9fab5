// Sample/TokenDrawer.swift — the draw: the sampling options and TokenDrawer, which shapes one
// stream's next-token distribution — repetition penalties and logit bias on the row of log p (see
// Penalties.swift), then softmax(· / T), the unknown and banned tokens masked, top-k and top-p
// (nucleus) truncation; temperature 0 is argmax — and draws from it with the stream's generator.
// GenerationLoop (the one generation loop, `sample` and `serve`) draws through it. All buffers are
// allocated at init; a draw allocates nothing.

/// Controls of the next-token distribution.
public struct SamplingOptions: Sendable {
    /// Divides the logits; 0 is argmax (the likeliest token).
    public var temperature: Float = 0.8
    /// Draw among the k likeliest tokens only; 0 = off.
    public var topK: Int = 0          // 0 = off
    /// Draw among the smallest set of likeliest tokens whose probability reaches p (nucleus); 1 = off.
    public var topP: Float = 1        // 1 = off
    // Penalties and bias (Penalties.swift), applied to the row of log p before temperature/top-k/top-p.
    /// Subtracted from log p of a token once per time it was generated in this completion (−2…2; 0 = off).
    public var frequencyPenalty: Float = 0
    /// Subtracted from log p of a token generated at least once in this completion (−2…2; 0 = off).
    public var presencePenalty: Float = 0
    /// R > 0: log p of each token among the last `repeatWindow` generated is divided by R when
    /// positive, multiplied by R when negative (log p ≤ 0, so R > 1 makes it p^R); 1 = off.
    public var repetitionPenalty: Float = 1
    /// The last N generated tokens that `repetitionPenalty` looks at; 0 = all generated.
    public var repeatWindow: Int = 0
    /// Added to log p of a token; −100 bans it (−∞, never drawn). Sorted by id, ids distinct.
    public var logitBias: [LogitBias] = []
    /// Options of one draw.
    public init(temperature: Float = 0.8, topK: Int = 0, topP: Float = 1) {
        self.temperature = temperature; self.topK = topK; self.topP = topP
    }
    /// Why the options cannot be used, or nil.
    public var problem: String? {
        if !(temperature >= 0) || !temperature.isFinite { return "\(Setting.temp) must be ≥ 0" }
        if topK < 0 { return "\(Setting.topK) must be ≥ 0" }
        if !(topP > 0 && topP <= 1) { return "\(Setting.topP) must be in (0, 1]" }
        return penaltyProblem
    }
}

extension Vocabulary {
    /// The token a sample starts from when nothing was primed: a newline (or CRLF), if the
    /// vocabulary has one; otherwise the first distribution is uniform.
    public var startID: Int? { id(of: "\n") ?? id(of: "\r\n") }
}

/// Shapes one stream's next-token distribution and draws from it: softmax(log p / T), the unknown
/// token masked, then top-k and top-p (nucleus) truncation. T = 0 is argmax. Holds the scratch of
/// one draw (allocated once); draws for several streams one after another.
package final class TokenDrawer: @unchecked Sendable {
    package let V: Int
    let unknownID: Int?                // masked: never drawn
    let probs: Storage                 // (V) the shaped distribution
    let order: UnsafeMutablePointer<Int32>  // (V) indices for top-k / top-p
    let shaped: Storage                // (V) log p with penalties and bias (Penalties.swift)

    package init(vocabSize V: Int, unknownID: Int?) {
        self.V = V; self.unknownID = unknownID
        probs = Storage(count: V)
        shaped = Storage(count: V)
        order = .allocate(capacity: V)
    }

    deinit { order.deallocate() }

    /// The likeliest id of a row of V scores (ties: lowest id), never the unknown token.
    package func argmax(_ z: UnsafePointer<Float>) -> Int {
        var best = unknownID == 0 && V > 1 ? 1 : 0
        for i in 1..<V where z[i] > z[best] && i != unknownID { best = i }
        return best
    }

    /// Draws an id from softmax(z / T) restricted by top-k / top-p, advancing `rng` once (not at T = 0,
    /// nor at a T whose inverse overflows: both are argmax).
    /// - Parameter z: (V) log-probabilities (or any scores: only differences matter).
    package func draw(_ z: UnsafePointer<Float>, options: SamplingOptions, rng: inout Xoshiro256) -> Int {
        let T = options.temperature
        // T → 0 is argmax; a T so small that 1/T overflows (below about 3e-39) is that limit too,
        // not (z − m)·∞ = NaN for the likeliest token
        if T == 0 || !(1 / T).isFinite { return argmax(z) }
        let pr = probs.ptr
        var m = -Float.infinity
        for i in 0..<V { m = max(m, z[i]) }
        var sv = Vec()
        let invT = Vec(repeating: 1 / T), mv = Vec(repeating: m)
        // pr = exp((z − m)/T), sixteen at a time (the helper returns its lanes: a nested function that
        // captured `sv` would box it on the heap at every draw)
        forEachLaneBlock(V, { sv += expScaledLanes($0, z: z, at: $1, max: mv, invT: invT, into: pr) },
                         tail: { sv += expScaledLanes($0, z: z, at: $1, max: mv, invT: invT, into: pr) })
        var s = sv.sum()
        if let u = unknownID, V > 1 { s -= pr[u]; pr[u] = 0 }   // the unknown token is never sampled
        s -= maskBanned(options)                                // nor are banned ones (exp clamps −∞ to 1e-38)
        let k = options.topK > 0 ? min(options.topK, V) : V
        if k == V && options.topP >= 1 {
            // plain categorical draw
            let u = Float(rng.nextDouble()) * s
            var acc: Float = 0
            for i in 0..<V { acc += pr[i]; if u < acc { return i } }
            return lastNonzero()
        }
        // sort ids by probability (descending, ties by id) — only when truncating
        for i in 0..<V { order[i] = Int32(i) }
        var buf = UnsafeMutableBufferPointer(start: order, count: V)
        buf.sort { (a: Int32, b: Int32) -> Bool in
            let pa = pr[Int(a)], pb = pr[Int(b)]
            return pa > pb || (pa == pb && a < b)
        }
        var keep = k
        if options.topP < 1 {
            let target = options.topP * s
            var acc: Float = 0
            for r in 0..<k {
                acc += pr[Int(order[r])]
                if acc >= target { keep = r + 1; break }
            }
        }
        var kept: Float = 0
        for r in 0..<keep { kept += pr[Int(order[r])] }
        let u = Float(rng.nextDouble()) * kept
        var acc: Float = 0
        for r in 0..<keep {
            acc += pr[Int(order[r])]
            if u < acc { return Int(order[r]) }
        }
        // u rounded up to `kept`: the last kept token that can be drawn (not a masked one)
        var r = keep - 1
        while r > 0 && pr[Int(order[r])] == 0 { r -= 1 }
        return Int(order[r])
    }

    private func lastNonzero() -> Int {
        var i = V - 1
        while i > 0 && probs.ptr[i] == 0 { i -= 1 }
        return i
    }
}

/// pr[i…] = exp((z[i…] − m)/T) for one block of lanes; returns them (zero outside the block).
@inline(__always)
func expScaledLanes<L: Lanes>(_ l: L, z: UnsafePointer<Float>, at i: Int, max mv: Vec, invT: Vec, into pr: UnsafeMutablePointer<Float>) -> Vec {
    let e = vexp((l.load(z + i) - mv) * invT)
    l.store(e, pr + i)
    return l.keep(e)
}
