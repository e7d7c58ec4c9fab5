// ValidationSubsetTests.swift — bounded validation (--val-tokens): the subset is the val split's first
// minibatches with every stream, its loss is the prefix of the full pass (carried state included), the
// same at every validation, recorded in the checkpoint; old checkpoints (no valTokens) validate whole.
// Also the stream-block fill a data-parallel process uses.

import Foundation
import XCTest
@testable import CharRNN

final class ValidationSubsetTests: XCTestCase {
    func testValBatchesCountsWholeMinibatches() throws {
        let b = try Batches(tokenCount: 10_000, batch: 4, seq: 5, trainFrac: 0.5, valFrac: 0.5, file: "x")
        XCTAssertEqual(b.nval, 250)
        XCTAssertEqual(b.valBatches(maxTokens: nil), 250)
        XCTAssertEqual(b.valBatches(maxTokens: 1_000_000), 250)
        XCTAssertEqual(b.valBatches(maxTokens: 100), 5)        // 100 / (4·5)
        XCTAssertEqual(b.valBatches(maxTokens: 119), 5)        // at most N tokens
        XCTAssertEqual(b.valBatches(maxTokens: 1), 1)          // at least one minibatch
        // the default keeps a tinyshakespeare-sized split (23 minibatches of 50×50) whole
        let ts = try Batches(tokenCount: 1_115_394, batch: 50, seq: 50, trainFrac: 0.95, valFrac: 0.05, file: "ts")
        XCTAssertEqual(ts.valBatches(maxTokens: TrainConfig.defaultValTokens), ts.nval)
        // …and bounds a 383 M-token corpus's 19 M-token split to 100 minibatches
        let big = try Batches(tokenCount: 383_000_000, batch: 50, seq: 50, trainFrac: 0.95, valFrac: 0.05, file: "big")
        XCTAssertEqual(big.valBatches(maxTokens: TrainConfig.defaultValTokens), 100)
    }

    func testStreamBlockFillEqualsTheColumnsOfTheFullFill() throws {
        let text = syntheticCorpusText(lines: 60)
        let corpus = try Corpus(bytes: Array(text.utf8), name: "s")
        let b = try Batches(tokenCount: corpus.count, batch: 7, seq: 5, trainFrac: 0.9, valFrac: 0.1, file: "s")
        let full = IntStorage(count: 35), fy = IntStorage(count: 35)
        let part = IntStorage(count: 35), py = IntStorage(count: 35)
        for (split, k) in [(Batches.Split.train, 0), (.train, b.ntrain - 1), (.val, b.nval - 1)] {
            b.fill(split, index: k, corpus: corpus, x: full.ptr, y: fy.ptr)
            for streams in [0..<7, 0..<3, 3..<7, 6..<7] {
                b.fill(split, index: k, corpus: corpus, streams: streams, x: part.ptr, y: py.ptr)
                let Br = streams.count
                for t in 0..<5 {
                    for s in streams {
                        XCTAssertEqual(part.ptr[t * Br + s - streams.lowerBound], full.ptr[t * 7 + s], "\(split) \(k) \(streams) x")
                        XCTAssertEqual(py.ptr[t * Br + s - streams.lowerBound], fy.ptr[t * 7 + s], "\(split) \(k) \(streams) y")
                    }
                }
            }
        }
    }

    func makeTrainer(_ dir: String, valTokens: Int?) throws -> Trainer {
        let text = syntheticCorpusText()
        let corpus = try Corpus(bytes: Array(text.utf8), name: "synthetic")
        let info = CorpusInfo(name: "synthetic", path: dir + "/synthetic.txt", bytes: text.utf8.count, tokens: corpus.count)
        try text.write(toFile: info.path, atomically: true, encoding: .utf8)
        var t = TrainConfig()
        t.seq = 16; t.batch = 8; t.maxIters = 12; t.evalEvery = 6; t.lr = 3e-2; t.threads = 1
        t.trainFrac = 0.7; t.valFrac = 0.3; t.valTokens = valTokens
        let cfg = ModelConfig(cell: .lstm, layers: 1, hidden: 16, embed: 0, dropout: 0, vocabSize: corpus.vocabulary.count)
        return try Trainer(corpus: corpus, corpusInfo: info, model: cfg, train: t, runDir: dir + "/run")
    }

    /// The bounded loss is the mean over the prefix of the full pass, state carried as in the full pass.
    func testBoundedLossIsThePrefixOfTheFullPass() throws {
        try WorkerPool.configure(threads: 1)
        let dir = tempDir("valsub")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tr = try makeTrainer(dir, valTokens: 3 * 8 * 16 + 5)
        XCTAssertGreaterThan(tr.batches.nval, 5)
        XCTAssertEqual(tr.valBatches, 3)
        // reference: the full pass's per-minibatch losses, state reset once at the start
        let state = RecurrentState(config: tr.model.config, batch: 8)
        let x = IntStorage(count: 128), y = IntStorage(count: 128)
        var losses: [Double] = []
        for k in 0..<tr.batches.nval {
            tr.batches.fill(.val, index: k, corpus: tr.corpus, x: x.ptr, y: y.ptr)
            losses.append(tr.model.evaluate(x: x.ptr, y: y.ptr, T: 16, B: 8, state: state))
        }
        let expected = losses[0..<3].reduce(0, +) / 3
        XCTAssertEqual(tr.validate(), expected)
        XCTAssertEqual(tr.validate(), expected, "the same subset every time")
        XCTAssertNotEqual(expected, losses.reduce(0, +) / Double(losses.count), "the subset is not the whole split")
        XCTAssertTrue(tr.validationSummary.contains("the first 3 of \(tr.batches.nval) val minibatches"), tr.validationSummary)
        // best is chosen on the subset, and valTokens is recorded in the checkpoint
        let s = try tr.run { _ in }
        let loaded = try Checkpoint.load(path: tr.bestPath)
        XCTAssertEqual(loaded.meta.train.valTokens, 3 * 8 * 16 + 5)
        XCTAssertEqual(s.bestValLoss, loaded.meta.progress.bestValLoss)
        let best = CharRNNModel(config: loaded.meta.model, maxT: 16, maxB: 8)
        try Checkpoint.restore(loaded, model: best)
        state.reset()
        var sub = 0.0
        for k in 0..<3 {
            tr.batches.fill(.val, index: k, corpus: tr.corpus, x: x.ptr, y: y.ptr)
            sub += best.evaluate(x: x.ptr, y: y.ptr, T: 16, B: 8, state: state)
        }
        XCTAssertEqual(sub / 3, s.bestValLoss!, accuracy: 1e-12)
    }

    func testAllValidatesTheWholeSplitAndOldConfigsDecodeAsAll() throws {
        try WorkerPool.configure(threads: 1)
        let dir = tempDir("valall")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tr = try makeTrainer(dir, valTokens: nil)
        XCTAssertEqual(tr.valBatches, tr.batches.nval)
        XCTAssertTrue(tr.validationSummary.hasPrefix("validation: the whole val split"), tr.validationSummary)
        // a train config written before --val-tokens existed has no key: the whole split
        var json = String(decoding: try JSONEncoder().encode(TrainConfig()), as: UTF8.self)
        XCTAssertTrue(json.contains("\"valTokens\":250000"), json)
        json = json.replacingOccurrences(of: "\"valTokens\":250000,", with: "").replacingOccurrences(of: ",\"valTokens\":250000", with: "")
        XCTAssertNil(try JSONDecoder().decode(TrainConfig.self, from: Data(json.utf8)).valTokens)
        var bad = TrainConfig(); bad.valTokens = 0
        XCTAssertNotNil(bad.problem)
    }
}
