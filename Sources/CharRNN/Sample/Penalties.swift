// Sample/Penalties.swift — repetition penalties and logit bias: what they are (`LogitBias`, the
// checks of `SamplingOptions`' penalty fields), how a bias key names a token (`LogitBias.token`), how
// they reshape one stream's row of log p before the draw (`TokenDrawer.shape`), and the per-row
// counts of generated tokens they read (`PenaltyCounts`, held by the GenerationLoop).
//
// The "logits" the penalties act on are the model's log-probabilities, z = log p (V), the row the
// model's step writes. For each token c, with n(c) its count among the tokens generated so far in
// this completion (the prompt is not counted) and r(c) its count among the last `repeatWindow`
// generated (all of them when the window is 0):
//   z₁(c) = r(c) > 0 ? (z(c) > 0 ? z(c) / R : z(c) · R) : z(c)      repetition penalty (CTRL / llama.cpp)
//   z₂(c) = z₁(c) − F · n(c) − P · [n(c) > 0]                         frequency and presence (OpenAI)
//   z₃(c) = bias(c) == −100 ? −∞ : z₂(c) + bias(c)                    logit bias; −100 bans exactly
// then the draw as ever: softmax(z₃ / T), top-k, top-p (a banned token has probability 0 and is
// never drawn, also at T = 0). Since log p ≤ 0, R > 1 turns p into p^R for recent tokens (only a
// positive bias can make a value positive, and the bias comes after the penalty).
// Cost: nothing when every penalty is off and there is no bias (the row is drawn from as it is);
// otherwise one O(V) pass per draw into the drawer's scratch row, and O(1) counting per token.
// Legend: V vocabulary, S row slots of the loop (2 · maxStreams).

/// A bias added to one token's log-probability before the draw (the API's `logit_bias`).
public struct LogitBias: Sendable, Equatable {
    /// The token's id.
    public var id: Int
    /// In −100…100; −100 bans the token (never drawn).
    public var bias: Float
    public init(id: Int, bias: Float) { self.id = id; self.bias = bias }

    /// The bias that bans a token.
    public static let ban: Float = -100
    /// Biases lie in −range…range.
    public static let range: Float = 100

    /// Why a logit-bias key or value cannot be used.
    public enum Problem: Error, Sendable, Equatable, CustomStringConvertible {
        /// The key is neither one token of the vocabulary nor a token id.
        case notAToken(key: String, vocabularySize: Int)
        /// The key names the unknown token, which is never drawn.
        case unknownToken(key: String)
        /// The value is not a finite number in −100…100.
        case outOfRange(key: String, bias: Float)
        /// Two keys name the same token.
        case duplicate(key: String, other: String)
        /// Every token that can be drawn is banned.
        case bansEverything

        public var description: String {
            switch self {
            case let .notAToken(k, v):
                return "key \(k.debugDescription) is not one character of the model's vocabulary nor a token id in 0...\(v - 1)"
            case let .unknownToken(k):
                return "key \(k.debugDescription) names the unknown token, which is never generated"
            case let .outOfRange(k, b):
                return "the bias of \(k.debugDescription) must be a number in -100...100, got \(b)"
            case let .duplicate(k, o):
                return "keys \(o.debugDescription) and \(k.debugDescription) name the same token"
            case .bansEverything:
                return "every token is banned (-100): nothing could be generated"
            }
        }
    }

    /// The token a bias key names. A key equal to one token of the vocabulary (after the same
    /// normalization as a prompt) is that token, a digit included; otherwise a key of ASCII digits
    /// without a sign or leading zeros is a token id (OpenAI's form), in 0..<V. Anything else is nil.
    public static func token(_ key: String, in vocabulary: Vocabulary, normalize: Normalization) -> Int? {
        if !key.isEmpty {
            let (ids, unknown) = vocabulary.encode(key, normalize: normalize)
            if ids.count == 1 && unknown.isEmpty { return Int(ids[0]) }
        }
        let digits = key.utf8
        guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              digits.count == 1 || digits.first != 48, let id = Int(key), id < vocabulary.count else { return nil }
        return id
    }

    /// The biases of (key, value) pairs, sorted by id: each key names one token (`token`), each value
    /// is in −100…100, no token twice, and not every drawable token banned.
    public static func resolve(_ pairs: [(key: String, bias: Float)], vocabulary: Vocabulary,
                               normalize: Normalization) throws(Problem) -> [LogitBias] {
        var out: [LogitBias] = [], keys: [Int: String] = [:]
        for (key, bias) in pairs {
            guard let id = token(key, in: vocabulary, normalize: normalize) else {
                throw .notAToken(key: key, vocabularySize: vocabulary.count)
            }
            if id == vocabulary.unknownID { throw .unknownToken(key: key) }
            if !(bias >= -range && bias <= range) { throw .outOfRange(key: key, bias: bias) }
            if let other = keys[id] { throw .duplicate(key: key, other: other) }
            keys[id] = key
            out.append(LogitBias(id: id, bias: bias))
        }
        out.sort { $0.id < $1.id }
        let drawable = vocabulary.count - (vocabulary.unknownID == nil ? 0 : 1)
        if out.filter({ $0.bias <= ban }).count >= drawable { throw .bansEverything }
        return out
    }
}

extension SamplingOptions {
    /// Some penalty needs the counts of generated tokens.
    public var countsTokens: Bool { frequencyPenalty != 0 || presencePenalty != 0 || repetitionPenalty != 1 }
    /// The row of log p is reshaped before the draw (a penalty or a bias).
    public var shapesLogits: Bool { countsTokens || !logitBias.isEmpty }

    /// Why the penalty and bias fields cannot be used, or nil (part of `problem`).
    var penaltyProblem: String? {
        if !(frequencyPenalty >= -2 && frequencyPenalty <= 2) { return "\(Setting.frequencyPenalty) must be in -2...2" }
        if !(presencePenalty >= -2 && presencePenalty <= 2) { return "\(Setting.presencePenalty) must be in -2...2" }
        if !(repetitionPenalty > 0 && repetitionPenalty <= 100) { return "\(Setting.repetitionPenalty) must be in (0, 100] (1 = off)" }
        if repeatWindow < 0 { return "\(Setting.repeatWindow) must be ≥ 0 (0 = all generated characters)" }
        for (k, b) in logitBias.enumerated() {
            if !(b.bias >= -LogitBias.range && b.bias <= LogitBias.range) { return "\(Setting.logitBias) values must be in -100...100" }
            if b.id < 0 || (k > 0 && b.id <= logitBias[k - 1].id) { return "\(Setting.logitBias) ids must be distinct and sorted" }
        }
        return nil
    }

    /// `problem`, and the bias checked against a vocabulary: ids in range, not the unknown token,
    /// and at least one drawable token not banned.
    public func problem(vocabulary: Vocabulary) -> String? {
        if let p = problem { return p }
        if let b = logitBias.first(where: { $0.id >= vocabulary.count || $0.id == vocabulary.unknownID }) {
            return "\(Setting.logitBias): token id \(b.id) is not a token that can be generated"
        }
        let drawable = vocabulary.count - (vocabulary.unknownID == nil ? 0 : 1)
        if logitBias.filter({ $0.bias <= LogitBias.ban }).count >= drawable { return "\(Setting.logitBias): \(LogitBias.Problem.bansEverything)" }
        return nil
    }

    /// The window of the repetition penalty for a row drawing `maxTokens`: 0 (all generated) when
    /// the window is 0 or holds every token the row can draw.
    func effectiveWindow(maxTokens: Int) -> Int { repeatWindow >= maxTokens ? 0 : repeatWindow }
}

// MARK: - Shaping one row

extension TokenDrawer {
    /// Writes into the drawer's scratch row the log-probabilities `z` with the penalties and bias
    /// of `options` applied (the file header's z₃), and returns it. Does not allocate.
    /// - Parameters:
    ///   - z: (V) the model's log p of the next token.
    ///   - counts: (V) n(c), times each token was generated in this completion; nil = none yet.
    ///   - recent: (V) r(c), times among the last `repeatWindow` generated; nil = `counts`.
    package func shape(_ z: UnsafePointer<Float>, options o: SamplingOptions, counts: UnsafePointer<Int32>?,
                       recent: UnsafePointer<Int32>?) -> UnsafePointer<Float> {
        let out = shaped.ptr
        out.update(from: z, count: V)
        if let counts {
            let R = o.repetitionPenalty, F = o.frequencyPenalty, P = o.presencePenalty
            let r = recent ?? counts
            if R != 1 {
                for c in 0..<V where r[c] > 0 { out[c] = out[c] > 0 ? out[c] / R : out[c] * R }
            }
            if F != 0 || P != 0 {
                for c in 0..<V where counts[c] > 0 { out[c] -= F * Float(counts[c]) + P }
            }
        }
        for b in o.logitBias { out[b.id] = b.bias <= LogitBias.ban ? -.infinity : out[b.id] + b.bias }
        return UnsafePointer(out)
    }

    /// Zeroes the probability of every banned token in the drawer's distribution; returns the
    /// probability mass removed.
    func maskBanned(_ options: SamplingOptions) -> Float {
        var removed: Float = 0
        for b in options.logitBias where b.bias <= LogitBias.ban { removed += probs.ptr[b.id]; probs.ptr[b.id] = 0 }
        return removed
    }
}

// MARK: - Counts of generated tokens, per row slot

/// n(c) and r(c) of the file header for S row slots, and each slot's ring of its last `window`
/// tokens. The counts are allocated once (S · 2 · V); the rings share one block of S · capacity,
/// regrown (contents kept) only when a slot's window is longer than every window before, so after
/// the longest window joined once nothing is allocated again. `record` never allocates.
package final class PenaltyCounts {
    let V: Int
    let slots: Int
    private let counts: IntStorage            // (S, 2, V): [s][0] all generated, [s][1] the last `window`
    private var rings: UnsafeMutablePointer<Int32>   // (S, capacity) slot s's last `window` tokens, a ring
    private var capacity = 0
    private var window: [Int]                 // (S) 0 = all generated
    private var recorded: [Int]               // (S) tokens recorded since `reset`

    package init(slots S: Int, vocabSize V: Int) {
        self.V = V; slots = S
        counts = IntStorage(count: S * 2 * V)
        rings = .allocate(capacity: 1)
        window = Array(repeating: 0, count: S)
        recorded = Array(repeating: 0, count: S)
    }

    deinit { rings.deallocate() }

    /// Starts slot s afresh (a row joins): no token generated; `window` is the repetition window
    /// (0 = all generated).
    package func reset(_ s: Int, window w: Int) {
        precondition(s >= 0 && s < slots && w >= 0)
        (counts.ptr + s * 2 * V).update(repeating: 0, count: w > 0 ? 2 * V : V)
        if w > capacity {
            let grown = UnsafeMutablePointer<Int32>.allocate(capacity: slots * w)
            for k in 0..<slots where window[k] > 0 { (grown + k * w).update(from: rings + k * capacity, count: window[k]) }
            rings.deallocate()
            rings = grown; capacity = w
        }
        window[s] = w; recorded[s] = 0
    }

    /// Counts token t as generated by slot s.
    @inline(__always)
    package func record(_ s: Int, _ t: Int) {
        let all = counts.ptr + s * 2 * V
        all[t] += 1
        let w = window[s]
        if w > 0 {
            let recent = all + V, ring = rings + s * capacity, k = recorded[s] % w
            if recorded[s] >= w { recent[Int(ring[k])] -= 1 }   // leaves the window
            ring[k] = Int32(t)
            recent[t] += 1
        }
        recorded[s] += 1
    }

    /// (V) n(c) of slot s.
    package func all(_ s: Int) -> UnsafePointer<Int32> { UnsafePointer(counts.ptr + s * 2 * V) }
    /// (V) r(c) of slot s, or nil when its window holds every generated token (r = n).
    package func recent(_ s: Int) -> UnsafePointer<Int32>? { window[s] > 0 ? UnsafePointer(counts.ptr + s * 2 * V + V) : nil }
}
