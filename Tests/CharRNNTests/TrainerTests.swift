// TrainerTests.swift — the trainer's refusals and stops: a stop request cuts a validation short and
// saves once; iteration counts beyond the bound are config errors, not traps; a --min-count that
// drops everything says so; same-size vocabularies name their first difference.

import Foundation
import XCTest
@testable import CharRNN

final class TrainerTests: RunFolderTestCase {
    override class var folderPrefix: String { "trainer" }

    func testAStopRequestCutsAValidationShortAndSavesOnceWithoutAnother() throws {
        var t = trainConfig(maxIters: 4); t.evalEvery = 1; t.seq = 4; t.batch = 2; t.trainFrac = 0.5; t.valFrac = 0.5
        let c = try Corpus(bytes: Array(syntheticCorpusText().utf8), name: "c.txt")
        let tr = try Trainer(corpus: c, corpusInfo: CorpusInfo(name: "c", path: "c.txt", bytes: 0, tokens: c.count),
                             model: ModelConfig(hidden: 4, vocabSize: c.vocabulary.count), train: t, runDir: dir + "/v")
        XCTAssertGreaterThan(tr.batches.nval, 100)
        var polls = 0
        // false for the first iteration's check and two validation minibatches, then a stop request
        tr.shouldStop = { polls += 1; return polls > 3 }
        var validations = 0
        let s = try tr.run { if case .validation = $0 { validations += 1 } }
        XCTAssertTrue(s.interrupted)
        XCTAssertEqual(s.iterations, 1)
        XCTAssertEqual(validations, 0, "the cut validation was reported")
        XCTAssertLessThan(polls, 10, "the validation ran on after the stop request")
        XCTAssertNil(s.lastValLoss)
        XCTAssertEqual(try Checkpoint.load(path: tr.latestPath).meta.progress.iteration, 1)
    }

    func testIterationCountsBeyondTheBoundAreConfigErrorsNotTraps() throws {
        var t = TrainConfig(); t.epochs = 1e9
        XCTAssertThrowsError(try Trainer.total(t, ntrain: 10_000_000)) { XCTAssertTrue("\($0)".contains("more than \(Bounds.maxIterations) iterations"), "\($0)") }
        XCTAssertEqual(try Trainer.total(t, ntrain: 2), 2_000_000_000)
        t.maxIters = Int.max
        XCTAssertEqual(t.problem, "--max-iters must be between 1 and \(Bounds.maxIterations) (got \(Int.max))")
        t.maxIters = nil
        for (e, got) in [(Double.infinity, "inf"), (1e16, "1e+16"), (-1, "-1")] {
            t.epochs = e
            XCTAssertEqual(t.problem, "--epochs must be positive and at most 1000000000 (got \(got))")
        }
        t = TrainConfig(); t.lr = Float(1e39)
        XCTAssertEqual(t.problem, "--lr must be between 1e-10 and 100 (got inf)")
        t = TrainConfig(); t.seq = 4_611_686_018_427_387_904; t.batch = 4
        XCTAssertEqual(t.problem, "--seq must be between 1 and \(Bounds.maxSeq) (got 4611686018427387904)")
        t = TrainConfig(); t.threads = 100_000
        XCTAssertNotNil(t.problem)
    }

    func testMinCountThatDropsEverythingSaysSo() throws {
        var o = LoadOptions(); o.minCount = 100_000
        let (c, _, _) = try CorpusLoader.load(paths: [corpusPath], options: o, cacheDirectory: nil)
        var t = trainConfig(maxIters: 1); t.minCount = 100_000
        let m = message { try Trainer(corpus: c, corpusInfo: CorpusInfo(name: "s", path: self.corpusPath, bytes: 0, tokens: c.count),
                                      model: ModelConfig(hidden: 4, vocabSize: c.vocabulary.count), train: t, runDir: self.dir + "/m") }
        XCTAssertTrue(m.contains("distinct characters occur fewer than --min-count 100000 times"), m)
        XCTAssertFalse(m.contains("only one distinct character (\"\")"), m)
    }

    func testSameSizeVocabulariesNameTheFirstDifference() throws {
        let path = try forged()
        let other = try Corpus(bytes: Array(String(repeating: "abd ab\nba!\n", count: 30).utf8), name: "c.txt")
        let m = message { try Trainer(resume: try Checkpoint.load(path: path), corpus: other, maxIters: nil, epochs: nil) }
        XCTAssertTrue(m.contains("both 6 tokens, first at id 5: \"d\" vs \"c\""), m)
        XCTAssertFalse(m.contains("6 vs 6"), m)
    }
}

/// A NaN/Inf gradient stops the run with its iteration and keeps the last checkpoint, or is skipped
/// with skipNonFinite (ten in a row still stop it).
final class TrainerNonFiniteTests: XCTestCase {
    func info(_ path: String) -> CorpusInfo { CorpusInfo(name: "x", path: path, bytes: 0, tokens: 0) }

    func smallTrainer(_ dir: String, iters: Int, evalEvery: Int) throws -> Trainer {
        let c = try Corpus(bytes: Array(String(repeating: "To be, or not to be: that is the question.\n", count: 40).utf8), name: "c.txt")
        var t = TrainConfig(); t.seq = 10; t.batch = 4; t.maxIters = iters; t.evalEvery = evalEvery; t.threads = 1
        return try Trainer(corpus: c, corpusInfo: info("c.txt"), model: ModelConfig(hidden: 8, vocabSize: c.vocabulary.count),
                           train: t, runDir: dir)
    }

    func testNaNGradientStopsWithTheIterationAndKeepsTheCheckpoint() throws {
        let dir = NSTemporaryDirectory() + "charrnn-nan-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tr = try smallTrainer(dir, iters: 20, evalEvery: 4)
        tr.gradientFault = { it, g in if it == 7 { g[5] = .infinity } }
        XCTAssertThrowsError(try tr.run { _ in }) { e in
            XCTAssertTrue("\(e)".hasPrefix("training diverged at iteration 7: "), "\(e)")
            XCTAssertTrue("\(e)".contains("the last good checkpoint is \(tr.latestPath)"), "\(e)")
        }
        let back = try Checkpoint.load(path: tr.latestPath)
        XCTAssertEqual(back.meta.progress.iteration, 4)
        let m = CharRNNModel(config: back.meta.model, maxT: 1, maxB: 1)
        try Checkpoint.restore(back, model: m)
        XCTAssertTrue(m.params.toArray().allSatisfy(\.isFinite))
    }

    func testSkipNonFiniteSkipsCountsAndStopsAfterTenInARow() throws {
        let dir = NSTemporaryDirectory() + "charrnn-skip-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tr = try smallTrainer(dir, iters: 12, evalEvery: 6)
        tr.skipNonFinite = true
        var skippedEvents: [Int] = []
        tr.gradientFault = { it, g in if it == 3 || it == 4 || it == 12 { g[0] = .nan } }
        let s = try tr.run { if case let .skipped(it, _, _, _) = $0 { skippedEvents.append(it) } }
        XCTAssertEqual(s.skippedSteps, 2 + 1)
        XCTAssertEqual(skippedEvents, [3, 4, 12])
        XCTAssertEqual(s.iterations, 12)
        XCTAssertTrue(tr.model.params.toArray().allSatisfy(\.isFinite))
        XCTAssertEqual(try Checkpoint.load(path: tr.latestPath).meta.progress.iteration, 12, "final checkpoint written after a skipped last step")
        XCTAssertEqual(try Checkpoint.load(path: tr.latestPath).meta.progress.optimizerSteps, 9)

        let dir2 = dir + "-b"
        defer { try? FileManager.default.removeItem(atPath: dir2) }
        let tr2 = try smallTrainer(dir2, iters: 40, evalEvery: 5)
        tr2.skipNonFinite = true
        tr2.gradientFault = { it, g in if it >= 8 { g[1] = -.infinity } }
        XCTAssertThrowsError(try tr2.run { _ in }) { e in
            XCTAssertTrue("\(e)".contains("10 steps in a row had a non-finite loss or gradient (iterations 8–17"), "\(e)")
            XCTAssertFalse("\(e)".contains("\n"))
        }
        XCTAssertEqual(try Checkpoint.load(path: tr2.latestPath).meta.progress.iteration, 5)
    }
}
