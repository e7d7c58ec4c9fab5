// Sample/Logprobs.swift — what the generation loop reports about each token it gives out when a
// row asks for log-probabilities (the API's `logprobs`, `charrnn sample --logprobs`): the token, its
// log p under the model and the model's likeliest alternatives, and where its text sits in the row's
// text. The loop fills these (GenerationLoop's "Log-probabilities" extension); this file owns the
// value type, the top-N selection and the rule for best-of.
//
// The numbers are the model's: log p from the model's log-softmax row the token was drawn from (or,
// for an echoed prompt token, the row after the tokens before it), before temperature, top-k/top-p
// and any penalty — the quantity `charrnn eval` sums (eval's loss is −Σ/P over the same predictions).
// Alternatives are the N largest log p of that row (ties: lowest id), the unknown token included.

/// One token the loop gave out, with its log-probabilities. A plain value: no heap storage.
public struct TokenLogprob: Sendable {
    /// The token id.
    public var token: Int32
    /// UTF-8 bytes of the token's text that the row's text holds: all of them, except for a
    /// multi-scalar token cut by a stop string, which keeps the part before the stop.
    public var bytes: Int32
    /// Unicode scalars of the row's text before this token (the echoed prompt included).
    public var offset: Int
    /// ln p(token | the tokens before it); NaN for the first prompt token (nothing predicts it).
    public var logprob: Float
    /// Alternatives held in `topTokens`/`topLogprobs` (0...5; 0 for the first prompt token).
    public var topCount: Int32
    /// The likeliest tokens of the row, likeliest first (first `topCount` lanes used).
    public var topTokens: SIMD8<Int32>
    /// Their log p.
    public var topLogprobs: SIMD8<Float>
    /// The token is part of the echoed prompt, not drawn.
    public var isPrompt: Bool

    /// The largest number of alternatives (OpenAI's limit).
    public static let maxTop = 5

    /// The alternatives as pairs, likeliest first (allocates; for drivers).
    public var top: [(token: Int, logprob: Float)] {
        (0..<Int(topCount)).map { (Int(topTokens[$0]), topLogprobs[$0]) }
    }

    /// The token's log p with nothing known before it: none (NaN).
    public var isScored: Bool { !logprob.isNaN }

    /// An entry for `token` scored from the row `z` of V log-probabilities with `n` alternatives
    /// (`z` nil: not scored, no alternatives).
    package init(token: Int, bytes: Int, z: UnsafePointer<Float>?, V: Int, top n: Int, isPrompt: Bool) {
        self.token = Int32(token); self.bytes = Int32(bytes); offset = 0; self.isPrompt = isPrompt
        topTokens = SIMD8(repeating: -1); topLogprobs = SIMD8(repeating: -.infinity); topCount = 0
        guard let z else { logprob = .nan; return }
        logprob = z[token]
        let n = min(max(n, 0), Self.maxTop, V)
        guard n > 0 else { return }
        // insertion into the n best so far: V·n comparisons at most, no allocation
        var count = 0
        for v in 0..<V {
            let x = z[v]
            if count == n && !(x > topLogprobs[n - 1]) { continue }
            var j = min(count, n - 1)
            while j > 0 && topLogprobs[j - 1] < x {
                topLogprobs[j] = topLogprobs[j - 1]; topTokens[j] = topTokens[j - 1]; j -= 1
            }
            topLogprobs[j] = x; topTokens[j] = Int32(v)
            count = min(count + 1, n)
        }
        topCount = Int32(count)
    }
}

extension Vocabulary {
    /// The text an entry stands for in its row's text: the token's text, or its first `bytes` bytes.
    public func text(of e: TokenLogprob) -> String {
        let t = tokens[Int(e.token)]
        let n = Int(e.bytes)
        return n >= t.utf8.count ? t : String(decoding: t.utf8.prefix(n), as: UTF8.self)
    }
}

/// best_of: which of several candidates are returned.
public enum BestOf {
    /// Mean log p per character of a candidate's generated tokens (Σ log p / characters of the
    /// generated text); -∞ for a candidate that generated no text (nothing to prefer it for).
    /// Echoed prompt entries are not counted.
    public static func meanLogprob(_ entries: [TokenLogprob], vocabulary: Vocabulary) -> Double {
        var sum = 0.0, chars = 0
        for e in entries where !e.isPrompt {
            sum += Double(e.logprob)
            chars += vocabulary.text(of: e).unicodeScalars.count
        }
        return chars == 0 ? -.infinity : sum / Double(chars)
    }

    /// The indices of the `n` best candidates by `score` (highest first; ties: lowest index).
    public static func pick(_ n: Int, of scores: [Double]) -> [Int] {
        Array(scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }.prefix(n))
    }
}
