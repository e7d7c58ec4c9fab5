// Sample/BeamSearch.swift — deterministic beam search over characters (`charrnn sample --beam W`).
//
// Legend: W beam width, V vocabulary, L characters to generate.
// The prompt is fed as `sample` feeds it (an empty prompt feeds the start token, a newline; a
// vocabulary without one starts from the uniform distribution, log p = −log V). Then, per step,
// every live beam b (a string of t characters with score S_b = Σ log p of its characters under the
// model) is extended by every token v but the unknown one: S_b + log p_b(v). The candidates are
// ranked by score (ties: lower beam, then lower id); in rank order, a candidate that completes a
// stop string is finished (its text ends before the stop string, as `sample --stop` cuts it), the
// others become the next live beams until W are live. Only the top 2W candidates are looked at, so
// when more than W of them finish, fewer than W beams go on. After L steps (or when none is live)
// the result is the hypothesis — finished, or live with L characters — of the highest mean log p
// per generated character (S / characters drawn, the stop string's included): the length
// normalisation that lets a finished short text compete with a long one. Without stop strings
// every hypothesis has L characters, so the result is the likeliest string the beam kept, and with
// W ≥ V^L it is the likeliest string of L characters. W = 1 is greedy decoding (`--temp 0`).
// Each live beam is one stream of a W-stream state, stepped together by the batched
// `CharRNNModel.step(rows:)`; after the ranking the survivors' states are copied into a second
// state (`copyStream`) and the two swap. The beams' characters are kept as back-pointers (L, W).
// Allocation: the states, rows and candidate lists at init; the back-pointers once per `run`.

import Foundation

/// The outcome of a beam search.
public struct BeamResult: Sendable, Equatable {
    /// The generated token ids (the stop string's included when `finish` is `.stop`).
    public var tokens: [Int32]
    /// The generated text (UTF-8), cut before the stop string.
    public var text: [UInt8]
    /// Σ log p of `tokens` under the model.
    public var logProb: Double
    /// `logProb` per token (the ranking's score); 0 when nothing was generated.
    public var meanLogProb: Double { tokens.isEmpty ? 0 : logProb / Double(tokens.count) }
    /// `.stop` (a stop string ended it) or `.length`.
    public var finish: FinishReason
}

/// Beam search over characters with W beams (see the file header). One thread at a time.
public final class BeamSearch {
    package let model: CharRNNModel
    public let vocabulary: Vocabulary
    /// W, the beams kept per step.
    public let width: Int

    private let V: Int
    private var live: InferenceState           // (W) stream j = live beam j
    private var next: InferenceState           // (W) the survivors, copied from `live`
    private let logProbs: Storage              // (W, V)
    private let tokens: IntStorage             // (W)
    private let top: UnsafeMutablePointer<Int> // (2W) candidate indices b·V + v, best first
    private let topScore: UnsafeMutablePointer<Double>  // (2W)
    private var score: [Double]                // (W) S_b of the live beams
    private var nextScore: [Double]            // (W)
    private var textLength: [Int]              // (W) bytes of each live beam's text
    private var nextLength: [Int]              // (W)
    private let tokenBytes: [UInt8]            // every token's UTF-8, concatenated
    private let tokenOffsets: [Int]            // (V + 1)

    /// - Parameters:
    ///   - model: the weights (any workspace size); used only by this search's thread.
    ///   - width: W ≥ 1.
    package init(model: CharRNNModel, vocabulary: Vocabulary, width W: Int) {
        precondition(vocabulary.count == model.config.vocabSize && W >= 1)
        self.model = model; self.vocabulary = vocabulary; width = W
        V = model.config.vocabSize
        live = InferenceState(config: model.config, streams: W)
        next = InferenceState(config: model.config, streams: W)
        logProbs = Storage(count: W * V)
        tokens = IntStorage(count: W)
        top = .allocate(capacity: 2 * W); topScore = .allocate(capacity: 2 * W)
        score = Array(repeating: 0, count: W); nextScore = score
        textLength = Array(repeating: 0, count: W); nextLength = textLength
        var bytes: [UInt8] = [], offsets = [0]
        for t in vocabulary.tokens { bytes += Array(t.utf8); offsets.append(bytes.count) }
        tokenBytes = bytes; tokenOffsets = offsets
    }

    deinit { top.deallocate(); topScore.deallocate() }

    /// Searches for the likeliest continuation of `prompt` of `length` tokens (see the file header).
    /// - Parameters:
    ///   - prompt: token ids, each in 0..<V (empty: the start token).
    ///   - length: L ≥ 0, tokens to generate.
    ///   - stop: stop strings (empty ones ignored).
    public func run(prompt: [Int32], length L: Int, stop: [String] = []) -> BeamResult {
        precondition(L >= 0 && prompt.allSatisfy { $0 >= 0 && Int($0) < V }, "prompt token outside the vocabulary")
        let W = width
        let stops = stop.map { Array($0.utf8) }.filter { !$0.isEmpty }
        let longestStop = stops.reduce(0) { max($0, $1.count) }
        // 1. the prompt (or the start token) on stream 0
        live.reset(stream: 0)
        let feed = prompt.isEmpty ? (vocabulary.startID.map { [Int32($0)] } ?? []) : prompt
        for t in feed {
            tokens.ptr[0] = t
            model.step(tokens: tokens.ptr, state: live, rows: 1, logProbs: logProbs.ptr)
        }
        if feed.isEmpty { logProbs.ptr.update(repeating: -Float(log(Double(V))), count: V) }
        var alive = 1
        score[0] = 0; textLength[0] = 0
        // back-pointers: beam j after step t came from beam parent[t·W + j] of step t − 1 with token[t·W + j]
        var parent = [Int32](repeating: 0, count: L * W), token = [Int32](repeating: 0, count: L * W)
        var best: (mean: Double, sum: Double, steps: Int, beam: Int, token: Int32, cut: Int)? = nil   // the best finished hypothesis
        var tail = [UInt8](repeating: 0, count: longestStop + 64)
        var stepsDone = 0
        for t in 0..<L {
            // 2. the 2W best candidates, ranked (ties: lower index b·V + v, by scanning in that order)
            let K = min(2 * W, alive * V)
            var filled = 0
            for b in 0..<alive {
                let row = logProbs.ptr + b * V
                for v in 0..<V where v != vocabulary.unknownID || V == 1 {
                    let s = score[b] + Double(row[v])
                    if filled == K && !(s > topScore[K - 1]) { continue }
                    var i = filled == K ? K - 1 : filled
                    if filled < K { filled += 1 }
                    while i > 0 && s > topScore[i - 1] { topScore[i] = topScore[i - 1]; top[i] = top[i - 1]; i -= 1 }
                    topScore[i] = s; top[i] = b * V + v
                }
            }
            // 3. in rank order: finished hypotheses are recorded, the others survive until W are live
            var survivors = 0
            for r in 0..<filled where survivors < W {
                let b = top[r] / V, v = top[r] % V
                if !stops.isEmpty, let cut = stopCut(beam: b, step: t, token: v, parent: parent, history: token, stops: stops,
                                                     longest: longestStop, tail: &tail) {
                    let mean = topScore[r] / Double(t + 1)
                    if best == nil || mean > best!.mean { best = (mean, topScore[r], t, b, Int32(v), cut) }
                    continue
                }
                next.copyStream(b, of: live, to: survivors)
                parent[t * W + survivors] = Int32(b); token[t * W + survivors] = Int32(v)
                nextScore[survivors] = topScore[r]
                nextLength[survivors] = textLength[b] + tokenOffsets[v + 1] - tokenOffsets[v]
                tokens.ptr[survivors] = Int32(v)
                survivors += 1
            }
            swap(&live, &next); swap(&score, &nextScore); swap(&textLength, &nextLength)
            alive = survivors
            stepsDone = t + 1
            if alive == 0 { break }
            if t + 1 < L { model.step(tokens: tokens.ptr, state: live, rows: alive, logProbs: logProbs.ptr) }
        }
        // 4. the best hypothesis: a live beam of L tokens (live beam 0 has the highest score) or a finished one
        func ids(step t: Int, beam j: Int) -> [Int32] {   // the tokens of live beam j after step t
            var out = [Int32](repeating: 0, count: t + 1), b = j
            for s in stride(from: t, through: 0, by: -1) { out[s] = token[s * W + b]; b = Int(parent[s * W + b]) }
            return out
        }
        let result: BeamResult
        if L > 0 && alive > 0 && (best == nil || score[0] / Double(L) >= best!.mean) {
            let path = ids(step: stepsDone - 1, beam: 0)
            result = BeamResult(tokens: path, text: text(path), logProb: score[0], finish: .length)
        } else if let f = best {
            let path = (f.steps > 0 ? ids(step: f.steps - 1, beam: f.beam) : []) + [f.token]
            result = BeamResult(tokens: path, text: Array(text(path).prefix(f.cut)), logProb: f.sum, finish: .stop)
        } else {
            result = BeamResult(tokens: [], text: [], logProb: 0, finish: .length)
        }
        return result
    }

    /// The UTF-8 of `ids`.
    private func text(_ ids: [Int32]) -> [UInt8] {
        var out: [UInt8] = []
        for id in ids { out += tokenBytes[tokenOffsets[Int(id)]..<tokenOffsets[Int(id) + 1]] }
        return out
    }

    /// Where the text of live beam b extended by token v must be cut when a stop string completes
    /// in v's bytes (the start of the earliest-starting such occurrence, in bytes of the text), or nil.
    private func stopCut(beam b: Int, step t: Int, token v: Int, parent: [Int32], history: [Int32], stops: [[UInt8]],
                         longest: Int, tail: inout [UInt8]) -> Int? {
        let vb = tokenOffsets[v + 1] - tokenOffsets[v]
        guard vb > 0 else { return nil }
        let textBefore = textLength[b], total = textBefore + vb
        // the last n bytes of the text (those an occurrence ending in v can touch), built backwards
        let n = min(total, longest - 1 + vb)
        if tail.count < n { tail = [UInt8](repeating: 0, count: n) }
        var at = n
        var id = v, beam = b, s = t
        while at > 0 {
            let lo = tokenOffsets[id], hi = tokenOffsets[id + 1]
            for k in stride(from: hi - 1, through: lo, by: -1) where at > 0 { at -= 1; tail[at] = tokenBytes[k] }
            s -= 1
            if s < 0 { break }
            id = Int(history[s * width + beam]); beam = Int(parent[s * width + beam])
        }
        var cut: Int? = nil
        for stop in stops where stop.count <= n {
            // occurrences ending inside v's bytes: end e in (n − vb, n]
            for e in max(stop.count, n - vb + 1)...n {
                var match = true
                for k in 0..<stop.count where tail[e - stop.count + k] != stop[k] { match = false; break }
                if match { let start = total - n + e - stop.count; cut = min(cut ?? start, start); break }
            }
        }
        return cut
    }
}
