// EvaluatorTests.swift — `charrnn eval`'s evaluator: it checks memory before growing its buffers;
// characters the vocabulary maps to its unknown token are fed but never scored (the loss is the
// mean over the known targets, checked against log-probabilities of one sequential pass) and are
// counted; scoring a slice at a time, with several texts interleaved, gives the same bits as
// scoring at once.

import Foundation
import XCTest
@testable import CharRNN

final class EvaluatorTests: RunFolderTestCase {
    override class var folderPrefix: String { "eval" }

    func testEvalChecksMemoryBeforeGrowingItsBuffers() throws {
        let ck = try Checkpoint.load(path: try forged())
        let text = dir + "/t.txt"
        try String(repeating: "abc ab\nba!\n", count: 3000).write(toFile: text, atomically: true, encoding: .utf8)
        let ev = try Evaluator(checkpoint: ck, batch: 1_000_000, seq: 100_000_000)
        ev.availableBytes = { 1 << 20 }
        let m = message { try ev.evaluate(path: text) }
        XCTAssertTrue(m.contains("scoring \(text) with --batch 32999 --seq 1") && m.contains("use a smaller --batch"), m)
        ev.availableBytes = { nil }
        XCTAssertEqual(try ev.evaluate(path: text).scored, 32_999)
    }

    /// A small random LSTM over "", a, b, " " with the unknown token at id 0.
    func unknownTokenModel() -> (CharRNNModel, Vocabulary) {
        let vocab = Vocabulary(unit: .scalar, tokens: ["", "a", "b", " "], unknownID: 0)
        let m = CharRNNModel(config: ModelConfig(cell: .lstm, layers: 2, hidden: 6, vocabSize: 4), maxT: 1, maxB: 1)
        var rng = Xoshiro256(seed: 5)
        m.initialize(rng: &rng)
        for i in 0..<m.layout.count { m.params.ptr[i] *= 4 }   // sharper predictions
        m.parametersChanged()
        return (m, vocab)
    }

    func testUnknownCharactersAreFedButNotScored() throws {
        let (m, vocab) = unknownTokenModel()
        let text = "ab 你好 ba日 ab b"   // 3 unknown characters, 11 known
        let ev = Evaluator(model: m, vocabulary: vocab, normalize: .none, batch: 1, seq: 1000)
        let r = try ev.evaluate(text: text, name: "t")
        XCTAssertEqual([r.tokens, r.unknown, r.scored], [11, 3, 10])
        // reference: one sequential pass's log-probabilities; the loss is the mean over the known targets only
        let ids = vocab.encode(text, normalize: .none).ids
        XCTAssertEqual(ids.count, 14)
        let n = ids.count - 1
        let ref = CharRNNModel(config: m.config, maxT: n, maxB: 1)
        ref.params.ptr.update(from: m.params.ptr, count: m.layout.count)
        ref.parametersChanged()
        let lp = Storage(count: n * 4)
        ids.withUnsafeBufferPointer { ref.logProbs(x: $0.baseAddress!, T: n, B: 1, state: RecurrentState(config: m.config, batch: 1), out: lp.ptr) }
        var sum = 0.0, count = 0, withUnknown = 0.0
        for t in 0..<n {
            let y = Int(ids[t + 1])
            withUnknown -= Double(lp.ptr[t * 4 + y])
            if y != 0 { sum -= Double(lp.ptr[t * 4 + y]); count += 1 }
        }
        XCTAssertEqual(count, 10)
        XCTAssertEqual(r.loss, sum / Double(count), accuracy: 1e-5 * abs(sum / Double(count)))
        XCTAssertNotEqual(r.loss, withUnknown / Double(n), accuracy: 1e-4, "the unknown targets are left out")

        // a text of unknown characters only: nothing scored, not a near-perfect perplexity
        let only = try ev.evaluate(text: String(repeating: "你", count: 500), name: "u")
        XCTAssertEqual([only.tokens, only.unknown, only.scored], [0, 500, 0])
        XCTAssertTrue(only.loss.isNaN)
        // ids given directly count the unknown token's ids the same way
        let direct = ev.evaluate(ids: ids)
        XCTAssertEqual([direct.tokens, direct.unknown, direct.scored], [11, 3, 10])
        XCTAssertEqual(direct.loss, r.loss)
    }

    func testSlicedScoringIsTheSameAndJobsInterleave() throws {
        let (m, vocab) = unknownTokenModel()
        var rng = Xoshiro256(seed: 9)
        let a: [Int32] = (0..<503).map { _ in Int32(rng.next() % 4) }
        let b: [Int32] = (0..<97).map { _ in Int32(1 + rng.next() % 3) }
        let whole = Evaluator(model: m, vocabulary: vocab, normalize: .none, batch: 4, seq: 7)
        let ra = whole.evaluate(ids: a), rb = whole.evaluate(ids: b)
        XCTAssertEqual(rb.unknown, 0); XCTAssertEqual(rb.scored, 96)
        // the same evaluator settings, a few predictions per slice, the two texts' slices alternating
        let sliced = Evaluator(model: m, vocabulary: vocab, normalize: .none, batch: 4, seq: 7)
        let ja = sliced.begin(ids: a), jb = sliced.begin(ids: b)
        var slices = 0
        while !(ja.isDone && jb.isDone) {
            sliced.advance(ja, predictions: 5)
            sliced.advance(jb, predictions: 5)
            slices += 1
        }
        XCTAssertGreaterThan(slices, 10)
        XCTAssertEqual(ja.result, ra, "slicing changes nothing, bit for bit")
        XCTAssertEqual(jb.result, rb)
        XCTAssertTrue(sliced.advance(ja, predictions: 5), "a complete job stays complete")
    }
}
