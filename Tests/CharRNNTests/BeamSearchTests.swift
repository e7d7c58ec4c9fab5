// BeamSearchTests.swift — `sample --beam W` (BeamSearch): on a model small enough to enumerate every
// string of the length, W = V^L finds the exact likeliest string (and, with a stop string, the
// hypothesis of the best mean log p, cut before the stop), computed by enumeration with the
// model's step; W = 1 is greedy decoding (the generation loop at temperature 0); a wider beam never
// scores below a narrower one's greedy path.

import XCTest
@testable import CharRNN

final class BeamSearchTests: XCTestCase {
    typealias E = BatchEngineTests

    static let tokens = ["\n", "a", "b"]
    static let vocabulary = Vocabulary(unit: .scalar, tokens: tokens)

    static func tinyModel(_ cell: CellKind, seed: UInt64) -> CharRNNModel {
        let m = CharRNNModel(config: ModelConfig(cell: cell, layers: 1, hidden: 6, vocabSize: 3), maxT: 1, maxB: 1)
        var rng = Xoshiro256(seed: seed)
        for i in 0..<m.layout.count { m.params.ptr[i] = (rng.nextFloat() * 2 - 1) * 1.5 }
        m.parametersChanged()
        return m
    }

    /// Σ log p of each token of `ids` after `prompt` (prefix sums), one stream stepped alone.
    static func prefixSums(_ m: CharRNNModel, prompt: [Int32], _ ids: [Int32]) -> [Double] {
        let V = m.config.vocabSize
        let state = InferenceState(config: m.config, streams: 1)
        let lp = Storage(count: V), tok = IntStorage(count: 1)
        for t in prompt { tok.ptr[0] = t; m.step(tokens: tok.ptr, state: state, logProbs: lp.ptr) }
        var s = 0.0, out: [Double] = []
        for t in ids {
            s += Double(lp.ptr[Int(t)]); out.append(s)
            tok.ptr[0] = t; m.step(tokens: tok.ptr, state: state, logProbs: lp.ptr)
        }
        return out
    }

    /// Every string of L tokens, as ids.
    static func allStrings(V: Int, L: Int) -> [[Int32]] {
        (0..<Int(pow(Double(V), Double(L)))).map { n in var n = n; return (0..<L).map { _ in defer { n /= V }; return Int32(n % V) } }
    }

    func testExhaustiveBeamFindsTheLikeliestString() {
        for (k, cell) in [CellKind.lstm, .gru, .rnn].enumerated() {
            let m = Self.tinyModel(cell, seed: 40 + UInt64(k))
            for (prompt, L) in [([Int32(1)], 4), ([Int32(2), 1], 3), ([], 4)] {
                let feed = prompt.isEmpty ? [Int32(0)] : prompt   // the start token
                let strings = Self.allStrings(V: 3, L: L)
                let scored = strings.map { ($0, Self.prefixSums(m, prompt: feed, $0).last!) }
                let best = scored.max { $0.1 < $1.1 }!
                let r = BeamSearch(model: m, vocabulary: Self.vocabulary, width: strings.count).run(prompt: prompt, length: L)
                XCTAssertEqual(r.tokens, best.0, "\(cell) prompt \(prompt) L \(L): the likeliest string")
                XCTAssertEqual(r.logProb, best.1, accuracy: 1e-9)
                XCTAssertEqual(r.finish, .length)
                XCTAssertEqual(r.text, Array(best.0.map { Self.tokens[Int($0)] }.joined().utf8))
                // a beam narrower than V^L may miss it, but never scores below greedy
                let greedy = BeamSearch(model: m, vocabulary: Self.vocabulary, width: 1).run(prompt: prompt, length: L)
                XCTAssertGreaterThanOrEqual(BeamSearch(model: m, vocabulary: Self.vocabulary, width: 3).run(prompt: prompt, length: L).logProb, greedy.logProb - 1e-12)
            }
        }
    }

    /// With a stop string: among every string of L tokens, each ends at its first stop (its text cut
    /// before it) or runs L tokens; the best mean log p per token wins — as the exhaustive beam finds.
    func testExhaustiveBeamWithStopStrings() {
        for (k, stop) in [["ba"], ["\n"], ["ab", "bb"]].enumerated() {
            let m = Self.tinyModel(.gru, seed: 50 + UInt64(k))
            let L = 4, prompt: [Int32] = [1]
            var best: (mean: Double, text: String, n: Int)? = nil
            for s in Self.allStrings(V: 3, L: L) {
                let sums = Self.prefixSums(m, prompt: prompt, s)
                var text = "", hyp: (Double, String, Int)? = nil
                for (i, t) in s.enumerated() {
                    text += Self.tokens[Int(t)]
                    if let cut = stop.compactMap({ text.range(of: $0)?.lowerBound }).min() {
                        hyp = (sums[i] / Double(i + 1), String(text[..<cut]), i + 1); break
                    }
                }
                let h = hyp ?? (sums[L - 1] / Double(L), text, L)
                if best == nil || h.0 > best!.mean { best = h }
            }
            let r = BeamSearch(model: m, vocabulary: Self.vocabulary, width: 81).run(prompt: prompt, length: L, stop: stop)
            XCTAssertEqual(String(decoding: r.text, as: UTF8.self), best!.text, "stop \(stop)")
            XCTAssertEqual(r.tokens.count, best!.n, "stop \(stop)")
            XCTAssertEqual(r.meanLogProb, best!.mean, accuracy: 1e-9, "stop \(stop)")
            XCTAssertFalse(stop.contains { String(decoding: r.text, as: UTF8.self).contains($0) })
        }
    }

    /// W = 1 is greedy: the generation loop at temperature 0 (`sample --temp 0`), prompt or start token.
    func testWidthOneIsGreedy() {
        for (n, c) in [E.config(.lstm, embed: 0, adaptive: false), E.config(.gru, embed: 8, adaptive: true)].enumerated() {
            let m = E.model(c, seed: 80 + UInt64(n))
            for prompt in ["the ", "", "é"] {
                let r = GenerationRequest(prompt: E.ids(prompt), seed: 1, options: SamplingOptions(temperature: 0), maxTokens: 80)
                let greedy = GenerationLoopTests.sample(m, r)[0]
                let beam = BeamSearch(model: m, vocabulary: E.vocabulary, width: 1).run(prompt: E.ids(prompt), length: 80)
                XCTAssertEqual(String(decoding: beam.text, as: UTF8.self), greedy, "\(c.cell) prompt \(prompt.debugDescription)")
                XCTAssertEqual(beam.tokens.count, 80)
                let wide = BeamSearch(model: m, vocabulary: E.vocabulary, width: 8).run(prompt: E.ids(prompt), length: 80)
                XCTAssertGreaterThanOrEqual(wide.meanLogProb, beam.meanLogProb - 1e-12, "a wider beam keeps the greedy path's score or better")
                XCTAssertEqual(wide, BeamSearch(model: m, vocabulary: E.vocabulary, width: 8).run(prompt: E.ids(prompt), length: 80), "deterministic")
            }
        }
        let m = E.model(E.config(.rnn, embed: 0, adaptive: false))
        XCTAssertEqual(BeamSearch(model: m, vocabulary: E.vocabulary, width: 4).run(prompt: E.ids("a"), length: 0).tokens, [])
    }
}
