// TrainingRun in process, one test per way a run starts: fresh, resume (bit for bit equal to an
// uninterrupted run), fine-tuning (--init-from) and continuing on a new corpus (--allow-new-corpus),
// plus the typed errors that refuse a run before any work it cannot finish.

import Foundation
import XCTest
@testable import CharRNN

final class TrainingRunTests: RunFolderTestCase {

    let model = ModelConfig(cell: .lstm, layers: 2, hidden: 16, dropout: 0.2, vocabSize: 1)

    func fresh(name: String?, maxIters: Int, events: inout [TrainingRun.Event]) throws -> TrainingRun {
        let r = TrainingRun.Request(mode: .fresh(model: model, softmax: .full), corpus: [corpusPath], train: trainConfig(maxIters: maxIters),
                                    outDir: out, name: name, tokenCache: .off)
        return try TrainingRun(r) { events.append($0) }
    }

    func train(_ name: String, maxIters: Int) throws -> TrainingRun {
        var events: [TrainingRun.Event] = []
        let run = try fresh(name: name, maxIters: maxIters, events: &events)
        _ = try run.trainer.run { _ in }
        return run
    }

    func resume(_ checkpoint: String, corpus: [String] = [], maxIters: Int?, allowNewCorpus: Bool = false,
                events: inout [TrainingRun.Event]) throws -> TrainingRun {
        let r = TrainingRun.Request(mode: .resume(checkpoint: checkpoint, maxIters: maxIters, epochs: nil, allowNewCorpus: allowNewCorpus),
                                    corpus: corpus, outDir: out, tokenCache: .off)
        return try TrainingRun(r) { events.append($0) }
    }

    /// (iteration, train loss, val loss) columns of a run's loss log.
    func losses(_ runDir: String) throws -> [String] {
        try String(contentsOfFile: RunFolder(runDir).lossLog, encoding: .utf8).split(separator: "\n").dropFirst().map {
            $0.split(separator: ",", omittingEmptySubsequences: false)[0...3].joined(separator: ",")
        }
    }

    func details(_ events: [TrainingRun.Event]) -> [String] {
        events.compactMap { if case let .detail(s) = $0 { return s } else { return nil } }
    }

    /// The model tensors of the checkpoint at `path`.
    func weights(_ path: String) throws -> [Float] {
        let c = try Checkpoint.load(path: path)
        let m = CharRNNModel(config: c.meta.model, maxT: 1, maxB: 1)
        try Checkpoint.restore(c, model: m)
        return m.params.toArray()
    }

    // MARK: - Modes

    func testFreshRunNamesItsFolderRecordsTheCorpusAndReportsItsSetUp() throws {
        var events: [TrainingRun.Event] = []
        let run = try fresh(name: nil, maxIters: 10, events: &events)
        XCTAssertEqual(run.plan, .fresh)
        let folder = (run.trainer.runDir as NSString).lastPathComponent
        XCTAssertNotNil(folder.range(of: #"^synthetic-\d{8}-\d{6}$"#, options: .regularExpression), folder)
        XCTAssertEqual((run.trainer.runDir as NSString).deletingLastPathComponent, out)
        let info = run.trainer.meta.corpus
        XCTAssertEqual(info.hash, try CorpusHash.file(corpusPath))
        XCTAssertEqual(info.bytes, try RunContinuation.fileSize(corpusPath))
        XCTAssertEqual(run.trainer.model.config.vocabSize, run.trainer.corpus.vocabulary.count)
        XCTAssertEqual(run.trainer.model.config.hidden, 16)
        let d = details(events)
        XCTAssertTrue(d.contains { $0.hasPrefix("corpus \(corpusPath) (") && $0.contains("decoded in") }, "\(d)")
        XCTAssertTrue(d.contains { $0.hasPrefix("\(run.trainer.corpus.count) tokens (scalar), vocabulary ") }, "\(d)")
        XCTAssertTrue(d.contains { $0.hasPrefix("memory estimate: ") }, "\(d)")
        XCTAssertEqual(d.last, "minibatches of 8×16: train \(run.trainer.batches.ntrain), val \(run.trainer.batches.nval), test 0; "
                       + "10 iterations; model lstm 2×16, \(run.trainer.model.config.parameterCount) parameters → \(run.trainer.runDir)")
        XCTAssertEqual(events.first.map { if case .loading(0, _) = $0 { true } else { false } }, true, "a load starts at 0 bytes")
        XCTAssertFalse(events.contains { if case .resuming = $0 { true } else { false } })
        _ = try run.trainer.run { _ in }
        let files = try FileManager.default.contentsOfDirectory(atPath: run.trainer.runDir).sorted()
        XCTAssertEqual(files, [".lock", "best.safetensors", "latest.safetensors", "loss.csv"])
    }

    func testResumeContinuesBitForBitLikeAnUninterruptedRun() throws {
        let full = try train("full", maxIters: 30)
        let part = try train("part", maxIters: 20)
        var events: [TrainingRun.Event] = []
        let resumed = try resume(part.trainer.runDir, maxIters: 30, events: &events)
        XCTAssertEqual(resumed.plan, .resume)
        XCTAssertEqual(resumed.trainer.runDir, part.trainer.runDir)
        XCTAssertEqual(resumed.trainer.meta.progress.iteration, 20)
        guard case let .resuming(runDir, iteration, _)? = events.last else { return XCTFail("no resuming event: \(events)") }
        XCTAssertEqual(runDir, part.trainer.runDir)
        XCTAssertEqual(iteration, 20)
        XCTAssertTrue(events.contains { if case .checkpointRead(RunFolder(part.trainer.runDir).latest) = $0 { true } else { false } }, "\(events)")
        _ = try resumed.trainer.run { _ in }
        XCTAssertEqual(try losses(part.trainer.runDir), try losses(full.trainer.runDir))
        XCTAssertEqual(try losses(part.trainer.runDir).count, 30)
        XCTAssertTrue(try weights(RunFolder(part.trainer.runDir).latest) == weights(RunFolder(full.trainer.runDir).latest),
                      "the resumed run's latest checkpoint differs from the uninterrupted run's")
        XCTAssertTrue(resumed.trainer.model.params.toArray() == full.trainer.model.params.toArray(), "final weights differ")
    }

    func testAFinishLineAtOrBeforeTheCheckpointIsRefusedNotDone() throws {
        let part = try train("short", maxIters: 20)
        for iters in [20, 5] {
            var events: [TrainingRun.Event] = []
            XCTAssertThrowsError(try resume(part.trainer.runDir, maxIters: iters, events: &events)) { e in
                XCTAssertTrue("\(e)".contains("--max-iters \(iters) is not beyond the checkpoint's iteration 20"), "\(e)")
            }
        }
        var events: [TrainingRun.Event] = []
        XCTAssertNoThrow(try resume(part.trainer.runDir, maxIters: 21, events: &events))
    }

    func testInitFromStartsANewRunFromTheCheckpointWeights() throws {
        let base = try train("base", maxIters: 20)
        var t = trainConfig(maxIters: 5)
        t.unit = .grapheme                                     // the checkpoint's unit wins
        let r = TrainingRun.Request(mode: .initFrom(checkpoint: base.trainer.runDir, dropout: 0), corpus: [corpusPath], train: t,
                                    outDir: out, name: "ft", tokenCache: .off)
        var events: [TrainingRun.Event] = []
        let ft = try TrainingRun(r) { events.append($0) }
        let source = RunFolder(base.trainer.runDir).best
        XCTAssertEqual(ft.plan, .initFrom(source: source))
        XCTAssertEqual(ft.trainer.runDir, out + "/ft")
        XCTAssertEqual(ft.trainer.meta.progress.iteration, 0)
        XCTAssertEqual(ft.trainer.meta.train.unit, .scalar)
        XCTAssertEqual(ft.trainer.meta.train.maxIters, 5)
        XCTAssertEqual(ft.trainer.model.config.dropout, 0, "dropout replaced")
        XCTAssertEqual(ft.trainer.model.config.hidden, 16)
        XCTAssertEqual(ft.trainer.meta.extra[RunContinuation.initFromKey], source)
        XCTAssertEqual(ft.trainer.meta.corpus.hash, try CorpusHash.file(corpusPath))
        XCTAssertTrue(try ft.trainer.model.params.toArray() == weights(source), "starts from the checkpoint's weights")
        XCTAssertTrue(events.contains { if case .fineTuning(source, 20) = $0 { true } else { false } }, "\(events)")
        let summary = try ft.trainer.run { _ in }
        XCTAssertEqual(summary.iterations, 5)
        XCTAssertTrue(FileManager.default.fileExists(atPath: ft.trainer.latestPath))
    }

    func testChangedCorpusIsRefusedUnlessAllowedThenTheRunContinuesOnIt() throws {
        let part = try train("a", maxIters: 10)
        // Same size and characters, different content: only the content hash can tell.
        let text = try String(contentsOfFile: corpusPath, encoding: .utf8)
        try text.replacingOccurrences(of: "quick", with: "kciuq").write(toFile: corpusPath, atomically: true, encoding: .utf8)
        var events: [TrainingRun.Event] = []
        XCTAssertThrowsError(try resume(part.trainer.runDir, maxIters: 20, events: &events)) { e in
            guard case let TrainError.corpusChanged(checkpoint, change)? = e as? TrainError else { return XCTFail("\(e)") }
            XCTAssertEqual(checkpoint, part.trainer.latestPath)
            XCTAssertTrue(change.contains("content hash"), change)
            XCTAssertTrue("\(e)".hasSuffix("pass --allow-new-corpus to continue on it with the run's vocabulary"), "\(e)")
        }
        events = []
        let moved = try resume(part.trainer.runDir, maxIters: 20, allowNewCorpus: true, events: &events)
        XCTAssertEqual(moved.plan, .newCorpus(path: corpusPath))
        XCTAssertEqual(moved.trainer.meta.corpus.hash, try CorpusHash.file(corpusPath))
        XCTAssertTrue(events.contains { if case .continuingOnNewCorpus(corpusPath, moved.trainer.corpus.count) = $0 { true } else { false } })
        XCTAssertEqual(try moved.trainer.run { _ in }.iterations, 20)
        XCTAssertEqual(try Checkpoint.load(path: part.trainer.latestPath).meta.corpus.hash, try CorpusHash.file(corpusPath))

        // A corpus with a character outside the vocabulary (which has no unknown token) is refused by name.
        try (text + "🦊\n").write(toFile: dir + "/other.txt", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try resume(part.trainer.runDir, corpus: [dir + "/other.txt"], maxIters: 30, allowNewCorpus: true, events: &events)) { e in
            guard case let TrainError.tokensOutsideVocabulary(_, count, _, shown)? = e as? TrainError else { return XCTFail("\(e)") }
            XCTAssertEqual(count, 1)
            XCTAssertEqual(shown, ["\"🦊\""])
        }
    }

    /// A fine-tuned run, a run continued on a new corpus and a run with an unknown token were built
    /// on a vocabulary the loader would not build from their corpus: each resumes on the checkpoint's
    /// own vocabulary and mapping (it used to fail with "vocabulary differs").
    func testRunsWithAForeignVocabularyResume() throws {
        let base = try train("base", maxIters: 10)
        // fine-tune on a text with fewer distinct characters
        let small = dir + "/small.txt"
        try String(repeating: "the quick fox\n", count: 200).write(toFile: small, atomically: true, encoding: .utf8)
        let ftReq = TrainingRun.Request(mode: .initFrom(checkpoint: base.trainer.runDir, dropout: nil), corpus: [small],
                                        train: trainConfig(maxIters: 4), outDir: out, name: "ft", tokenCache: .off)
        let ft = try TrainingRun(ftReq)
        _ = try ft.trainer.run { _ in }
        var events: [TrainingRun.Event] = []
        let again = try resume(ft.trainer.runDir, maxIters: 8, events: &events)
        XCTAssertEqual(again.plan, .resume)
        XCTAssertEqual(again.trainer.corpus.vocabulary, base.trainer.corpus.vocabulary)
        XCTAssertEqual(try again.trainer.run { _ in }.iterations, 8)

        // --max-vocab: the unknown token stands for the rarest characters
        var t = trainConfig(maxIters: 4)
        t.maxVocab = 6
        let capped = TrainingRun.Request(mode: .fresh(model: model, softmax: .full), corpus: [corpusPath], train: t,
                                         outDir: out, name: "cap", tokenCache: .off)
        let cap = try TrainingRun(capped)
        _ = try cap.trainer.run { _ in }
        let capAgain = try resume(cap.trainer.runDir, maxIters: 8, events: &events)
        XCTAssertEqual(capAgain.trainer.corpus.vocabulary, cap.trainer.corpus.vocabulary)
        XCTAssertEqual(try capAgain.trainer.run { _ in }.iterations, 8)

        // continued on a new corpus, then resumed on it
        let moved = try resume(base.trainer.runDir, corpus: [small], maxIters: 14, allowNewCorpus: true, events: &events)
        XCTAssertEqual(moved.plan, .newCorpus(path: small))
        _ = try moved.trainer.run { _ in }
        let movedAgain = try resume(base.trainer.runDir, maxIters: 16, events: &events)
        XCTAssertEqual(movedAgain.plan, .resume)
        XCTAssertEqual(try movedAgain.trainer.run { _ in }.iterations, 16)
    }

    // MARK: - Refusals

    func testCheckpointIsCheckedBeforeAnyCorpusWork() throws {
        let part = try train("nomoments", maxIters: 10)
        let c = try Checkpoint.load(path: part.trainer.latestPath)
        let m = CharRNNModel(config: c.meta.model, maxT: 1, maxB: 1)
        try Checkpoint.restore(c, model: m)
        let bare = dir + "/bare.safetensors"
        try Checkpoint.save(to: bare, model: m, optimizer: nil, state: nil, meta: c.meta)
        var events: [TrainingRun.Event] = []
        // The corpus does not exist: the checkpoint's missing optimizer state must be reported first.
        XCTAssertThrowsError(try resume(bare, corpus: [dir + "/missing.txt"], maxIters: 20, events: &events)) { e in
            XCTAssertEqual(e as? TrainError, .noOptimizerState(checkpoint: bare))
        }
        XCTAssertTrue(events.isEmpty, "\(events)")
    }

    func testOneDistinctCharacterIsNothingToLearn() throws {
        try String(repeating: "a", count: 5000).write(toFile: corpusPath, atomically: true, encoding: .utf8)
        var events: [TrainingRun.Event] = []
        XCTAssertThrowsError(try fresh(name: "one", maxIters: 5, events: &events)) { e in
            XCTAssertEqual(e as? TrainError, .nothingToLearn(file: corpusPath, token: "\"a\""))
            XCTAssertEqual("\(e)", "\(corpusPath): the corpus has only one distinct character (\"a\"); there is nothing to learn")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/one"), "no run folder for a refused run")
    }
}
