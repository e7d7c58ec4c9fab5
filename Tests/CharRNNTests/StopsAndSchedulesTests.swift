// StopsAndSchedulesTests.swift — issue 20's training stops and schedules: the learning-rate rule
// against hand-computed values, `step` as char-rnn's decay (the config and checkpoint of a run that
// uses none of the new settings are what they were), cosine logged and resumed exactly, --patience
// stopping where the rule says (and a resume that continues only when the patience allows it), and
// --max-time stopping early with a validation and a save, then resuming bit for bit; --cold-start-every
// restarting the streams whose turn it is, and resuming bit for bit.

import Foundation
import XCTest
@testable import CharRNN

final class StopsAndSchedulesTests: XCTestCase {
    func config(maxIters: Int) -> TrainConfig {
        var t = TrainConfig()
        t.seq = 16; t.batch = 8; t.maxIters = maxIters; t.evalEvery = 5; t.optim = .adam
        t.lr = 1e-2; t.threads = 1; t.trainFrac = 0.9; t.valFrac = 0.1
        return t
    }

    func trainer(_ dir: String, _ train: TrainConfig) throws -> Trainer {
        let text = syntheticCorpusText()
        let corpus = try Corpus(bytes: Array(text.utf8), name: "synthetic")
        let info = CorpusInfo(name: "synthetic", path: dir + "/synthetic.txt", bytes: text.utf8.count, tokens: corpus.count)
        try text.write(toFile: info.path, atomically: true, encoding: .utf8)
        let cfg = ModelConfig(cell: .lstm, layers: 1, hidden: 16, embed: 0, dropout: 0, vocabSize: corpus.vocabulary.count)
        return try Trainer(corpus: corpus, corpusInfo: info, model: cfg, train: train, runDir: dir + "/run")
    }

    /// loss.csv as rows of named fields.
    func rows(_ dir: String) throws -> [[String: String]] {
        let lines = try String(contentsOfFile: dir + "/run/loss.csv", encoding: .utf8).split(separator: "\n").map(String.init)
        let names = lines[0].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        return lines.dropFirst().map { line in
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            XCTAssertEqual(f.count, names.count, line)
            return Dictionary(uniqueKeysWithValues: zip(names, f))
        }
    }

    func trainLosses(_ rows: [[String: String]]) -> [Int: String] {
        var out: [Int: String] = [:]
        for r in rows { out[Int(r["iteration"]!)!] = r["train_loss"]! + "|" + r["learning_rate"]! }
        return out
    }

    // MARK: - Schedules

    func testCosineAndWarmupAgainstHandValues() {
        var t = TrainConfig()
        t.lr = 1; t.schedule = .cosine; t.warmupIters = 4; t.minLR = 0.1
        let rule = LearningRate(t, total: 14)
        // warmup: lr·(i+1)/(W+1)
        XCTAssertEqual(rule.rate(iteration: 0, current: 99), 0.2)
        XCTAssertEqual(rule.rate(iteration: 3, current: 99), 0.8)
        // the peak at i = W, half way at r = 1/2, min at the end and after it
        XCTAssertEqual(rule.rate(iteration: 4, current: 99), 1)
        XCTAssertEqual(rule.rate(iteration: 9, current: 99), 0.55, accuracy: 1e-7)
        XCTAssertEqual(rule.rate(iteration: 13, current: 99), Float(0.1 + 0.45 * (1 + cos(0.9 * Double.pi))), accuracy: 1e-7)
        XCTAssertEqual(rule.rate(iteration: 14, current: 99), 0.1, accuracy: 1e-7)
        XCTAssertEqual(rule.rate(iteration: 1000, current: 99), 0.1, accuracy: 1e-7)
        // no floor given: down to 0
        t.minLR = nil; t.warmupIters = nil
        XCTAssertEqual(LearningRate(t, total: 10).rate(iteration: 5, current: 99), 0.5, accuracy: 1e-7)
        XCTAssertEqual(LearningRate(t, total: 10).rate(iteration: 0, current: 99), 1)
        // constant: the peak after the warmup, whatever the current rate
        t.schedule = .constant; t.warmupIters = 3
        XCTAssertEqual(LearningRate(t, total: 10).rate(iteration: 1, current: 99), 0.5)
        XCTAssertEqual(LearningRate(t, total: 10).rate(iteration: 7, current: 99), 1)
    }

    func testStepIsCharRNNsDecay() {
        var t = TrainConfig()
        XCTAssertEqual(t.schedule, .step)
        let rule = LearningRate(t, total: 100)
        // the current rate untouched, bit for bit
        for x: Float in [2e-3, 0.0017342, 1e-10] { XCTAssertEqual(rule.rate(iteration: 50, current: x).bitPattern, x.bitPattern) }
        t.lrDecay = 0.5; t.lrDecayAfter = 2
        XCTAssertEqual(LearningRate.decayed(0.4, train: t, epochs: 1), 0.4)
        XCTAssertEqual(LearningRate.decayed(0.4, train: t, epochs: 2), 0.4 * 0.5)
        t.minLR = 0.3
        XCTAssertEqual(LearningRate.decayed(0.4, train: t, epochs: 3), 0.3)
        // warmup on step: a factor on the current rate
        t.warmupIters = 1
        XCTAssertEqual(LearningRate(t, total: 100).rate(iteration: 0, current: 0.4), 0.2)
        XCTAssertEqual(LearningRate(t, total: 100).rate(iteration: 1, current: 0.4), 0.4)
    }

    /// A run that uses none of the new settings records the config it recorded before they existed.
    func testDefaultConfigRecordsNoNewKeys() throws {
        let json = String(decoding: try JSONEncoder().encode(TrainConfig()), as: UTF8.self)
        for key in ["lrSchedule", "warmupIters", "minLR", "patience", "minDelta"] { XCTAssertFalse(json.contains(key), json) }
        var t = TrainConfig()
        t.schedule = .cosine; t.warmupIters = 7; t.minLR = 1e-4; t.patience = 3; t.minDelta = 0.01; t.coldStartEvery = 9
        XCTAssertEqual(try JSONDecoder().decode(TrainConfig.self, from: JSONEncoder().encode(t)), t)
    }

    func testScheduleSettingsAreChecked() {
        var t = TrainConfig()
        t.minLR = 1; XCTAssertNotNil(t.problem)                          // above --lr
        t.minLR = 0; t.schedule = .constant; XCTAssertNotNil(t.problem)  // constant has no floor
        t = TrainConfig(); t.warmupIters = -1; XCTAssertNotNil(t.problem)
        t = TrainConfig(); t.patience = 0; XCTAssertNotNil(t.problem)    // 0 is spelled nil
        t = TrainConfig(); t.minDelta = -0.1; XCTAssertNotNil(t.problem)
        t = TrainConfig(); t.minDelta = .nan; XCTAssertNotNil(t.problem)
        t = TrainConfig(); t.coldStartEvery = 0; XCTAssertNotNil(t.problem)  // 0 is spelled nil
    }

    /// The cosine run's learning_rate column is the formula's, and a resume continues it exactly.
    func testCosineRunLogsTheScheduleAndResumesExactly() throws {
        try WorkerPool.configure(threads: 1)
        let a = tempDir("cos-full"), b = tempDir("cos-part")
        var t = config(maxIters: 24)
        t.schedule = .cosine; t.warmupIters = 6; t.minLR = 1e-4
        _ = try trainer(a, t).run { _ in }
        let full = try rows(a)
        let rule = LearningRate(t, total: 24)
        for r in full {
            let i = Int(r["iteration"]!)! - 1
            XCTAssertEqual(r["learning_rate"], "\(rule.rate(iteration: i, current: 0))", "iteration \(i + 1)")
        }
        XCTAssertEqual(full.first?["learning_rate"], "\(Float(1e-2 / 7))")
        // stopped (as by Ctrl-C) after iteration 10 of the same 24-iteration cosine, then resumed
        let part = try trainer(b, t)
        var stop = false
        part.shouldStop = { stop }
        XCTAssertTrue(try part.run { if case let .iteration(it, _, _, _, _, _, _) = $0, it == 10 { stop = true } }.interrupted)
        XCTAssertEqual(try Checkpoint.load(path: b + "/run/latest.safetensors").meta.progress.iteration, 10)
        let resumed = try Trainer(resume: try Checkpoint.load(path: b + "/run/latest.safetensors"), corpus: part.corpus, maxIters: nil, epochs: nil)
        XCTAssertEqual(resumed.meta.train.schedule, .cosine)
        _ = try resumed.run { _ in }
        XCTAssertEqual(trainLosses(full), trainLosses(try rows(b)))
        XCTAssertEqual(CheckpointSummary(checkpoint: try Checkpoint.load(path: b + "/run/latest.safetensors")).lrSchedule, "cosine")
    }

    // MARK: - Patience

    func testPatienceRule() {
        XCTAssertFalse(Trainer.withoutImprovement(3, best: nil, minDelta: 0))     // the first validation
        XCTAssertTrue(Trainer.withoutImprovement(.nan, best: nil, minDelta: 0))
        XCTAssertFalse(Trainer.withoutImprovement(2.9, best: 3, minDelta: 0))
        XCTAssertTrue(Trainer.withoutImprovement(3, best: 3, minDelta: 0))
        XCTAssertTrue(Trainer.withoutImprovement(2.95, best: 3, minDelta: 0.1))   // better, but by less than min-delta
        XCTAssertFalse(Trainer.withoutImprovement(2.85, best: 3, minDelta: 0.1))
        XCTAssertTrue(Trainer.withoutImprovement(.nan, best: 3, minDelta: 0))
    }

    /// No validation can improve by 10 nats: the first validation (iteration 5) sets the best, the
    /// next three do not improve it, and --patience 3 stops the run at iteration 20 of 60.
    func testPatienceStopsWhereTheRuleSaysAndResumesOnlyWhenAllowed() throws {
        try WorkerPool.configure(threads: 1)
        let a = tempDir("pat"), ref = tempDir("pat-ref")
        var t = config(maxIters: 60)
        t.patience = 3; t.minDelta = 10
        let tr = try trainer(a, t)
        let s = try tr.run { _ in }
        XCTAssertEqual(s.plannedStop, .patience)
        XCTAssertFalse(s.interrupted)
        XCTAssertEqual(s.iterations, 20)
        let log = try rows(a)
        XCTAssertEqual(log.last?["iteration"], "20")
        XCTAssertEqual(log.last?["event"], LossLog.earlyStopEvent)
        XCTAssertFalse(log.last?["val_loss"]?.isEmpty ?? true)
        XCTAssertEqual(log.filter { $0["event"] != "" }.count, 1)
        let latest = try Checkpoint.load(path: a + "/run/latest.safetensors")
        XCTAssertEqual(latest.meta.progress.iteration, 20)
        XCTAssertEqual(latest.meta.progress.sinceImprovement, 3)
        XCTAssertEqual(latest.file.metadata["patience_count"], "3")
        XCTAssertTrue(FileManager.default.fileExists(atPath: a + "/run/best.safetensors"))

        // resumed as it is: nothing to train, and it says why
        let again = try Trainer(resume: try ResumePoint(latest, maxIters: nil, epochs: nil), corpus: tr.corpus)
        let s2 = try again.run { _ in }
        XCTAssertEqual(s2.plannedStop, .patience)
        XCTAssertEqual(s2.iterations, 20); XCTAssertEqual(s2.startIteration, 20)
        XCTAssertEqual(try rows(a).count, log.count)

        // --patience 5: two more validations, stopping at 30 exactly as a run with patience 5 from the start
        let more = try Trainer(resume: try ResumePoint(latest, maxIters: nil, epochs: nil, patience: 5), corpus: tr.corpus)
        let s3 = try more.run { _ in }
        XCTAssertEqual(s3.plannedStop, .patience)
        XCTAssertEqual(s3.iterations, 30)
        t.patience = 5
        let whole = try trainer(ref, t)
        XCTAssertEqual(try whole.run { _ in }.iterations, 30)
        XCTAssertEqual(trainLosses(try rows(ref)), trainLosses(try rows(a)))
        XCTAssertEqual(whole.model.params.toArray(), more.model.params.toArray())

        // --patience 0: no early stopping, to the finish line
        let off = try Trainer(resume: try ResumePoint(try Checkpoint.load(path: a + "/run/latest.safetensors"), maxIters: nil, epochs: nil, patience: 0),
                              corpus: tr.corpus)
        let s4 = try off.run { _ in }
        XCTAssertNil(s4.plannedStop)
        XCTAssertEqual(s4.iterations, 60)
        XCTAssertNil(try Checkpoint.load(path: a + "/run/latest.safetensors").file.metadata["patience_count"])
    }

    // MARK: - Time budget

    /// A budget spent by the first step: the run validates and saves at iteration 1 and stops; the
    /// resume trains on bit for bit as the run that never stopped (the extra validation changes nothing).
    func testMaxTimeStopsEarlyAndResumesExactly() throws {
        try WorkerPool.configure(threads: 1)
        let a = tempDir("time"), ref = tempDir("time-ref")
        let t = config(maxIters: 12)
        let tr = try trainer(a, t)
        tr.maxTime = 1e-9
        let s = try tr.run { _ in }
        XCTAssertEqual(s.plannedStop, .maxTime)
        XCTAssertFalse(s.interrupted)
        XCTAssertEqual(s.iterations, 1)
        let log = try rows(a)
        XCTAssertEqual(log.count, 1)
        XCTAssertEqual(log[0]["event"], LossLog.maxTimeEvent)
        XCTAssertFalse(log[0]["val_loss"]!.isEmpty)
        XCTAssertTrue(FileManager.default.fileExists(atPath: a + "/run/best.safetensors"))
        let latest = try Checkpoint.load(path: a + "/run/latest.safetensors")
        XCTAssertEqual(latest.meta.progress.iteration, 1)
        // the budget is not recorded: the resume has none unless given its own
        let resumed = try Trainer(resume: latest, corpus: tr.corpus, maxIters: nil, epochs: nil)
        let s2 = try resumed.run { _ in }
        XCTAssertNil(s2.plannedStop)
        XCTAssertEqual(s2.iterations, 12)
        let whole = try trainer(ref, t)
        whole.maxTime = 1e6                                          // a budget that is not spent changes nothing
        XCTAssertNil(try whole.run { _ in }.plannedStop)
        XCTAssertEqual(trainLosses(try rows(ref)), trainLosses(try rows(a)))
        XCTAssertEqual(whole.model.params.toArray(), resumed.model.params.toArray())
    }

    // MARK: - Cold starts

    /// Cold starts are on by default and recorded; a config written before they existed (no key)
    /// decodes as never, so such a run resumes as it trained.
    func testColdStartsAreTheDefaultAndOldConfigsHaveNone() throws {
        XCTAssertEqual(TrainConfig().coldStartEvery, TrainConfig.defaultColdStartEvery)
        let json = String(decoding: try JSONEncoder().encode(TrainConfig()), as: UTF8.self)
        XCTAssertTrue(json.contains("\"coldStartEvery\":\(TrainConfig.defaultColdStartEvery)"), json)
        let old = json.replacingOccurrences(of: ",\"coldStartEvery\":\(TrainConfig.defaultColdStartEvery)", with: "")
            .replacingOccurrences(of: "\"coldStartEvery\":\(TrainConfig.defaultColdStartEvery),", with: "")
        XCTAssertFalse(old.contains("coldStartEvery"), old)
        XCTAssertNil(try JSONDecoder().decode(TrainConfig.self, from: Data(old.utf8)).coldStartEvery)
    }

    /// The streams that restart before an iteration are those with (iteration + global index) mod n = 0:
    /// a block of a data-parallel run (here streams 3..<7 of the batch) restarts what the whole batch would.
    func testColdStartsZeroTheStreamsWhoseTurnItIs() {
        let cfg = ModelConfig(cell: .lstm, layers: 2, hidden: 3, embed: 0, dropout: 0, vocabSize: 5)
        let s = RecurrentState(config: cfg, batch: 4)
        func fill() { for x in s.h + s.c { x.ptr.update(repeating: 1, count: x.count) } }
        func rows() -> [[Float]] { (s.h + s.c).map { x in (0..<4).map { j in x.toArray()[3 * j] + x.toArray()[3 * j + 2] } } }
        fill()
        TrainingStep.coldStarts(s, streams: 3..<7, iteration: 7, every: 5)     // 7 + 3 = 10: stream 3 only
        XCTAssertEqual(rows(), Array(repeating: [0, 2, 2, 2], count: 4))
        XCTAssertEqual(s.h[0].toArray(), [0, 0, 0] + Array(repeating: 1, count: 9))
        fill()
        TrainingStep.coldStarts(s, streams: 3..<7, iteration: 9, every: 2)     // 12 and 14: streams 3 and 5
        XCTAssertEqual(rows(), Array(repeating: [0, 2, 0, 2], count: 4))
        fill()
        TrainingStep.coldStarts(s, streams: 3..<7, iteration: 4, every: 1)     // every stream, every time
        XCTAssertEqual(rows(), Array(repeating: [0, 0, 0, 0], count: 4))
        let gru = RecurrentState(config: ModelConfig(cell: .gru, layers: 1, hidden: 2, embed: 0, dropout: 0, vocabSize: 5), batch: 2)
        gru.h[0].ptr.update(repeating: 1, count: 4)
        TrainingStep.coldStarts(gru, streams: 0..<2, iteration: 3, every: 2)   // 3 + 1: stream 1 (a GRU has no c)
        XCTAssertEqual(gru.h[0].toArray(), [1, 1, 0, 0])
    }

    /// A run with --cold-start-every records it, trains otherwise than one that carries its state, and
    /// a resume continues it bit for bit (the restarts depend on the iteration and the stream only).
    func testColdStartRunIsRecordedAndResumesExactly() throws {
        try WorkerPool.configure(threads: 1)
        let a = tempDir("cold-full"), b = tempDir("cold-part"), c = tempDir("cold-off")
        var t = config(maxIters: 16)
        t.coldStartEvery = 3
        let whole = try trainer(a, t)
        _ = try whole.run { _ in }
        var never = config(maxIters: 16)
        never.coldStartEvery = nil
        _ = try trainer(c, never).run { _ in }
        let full = trainLosses(try rows(a)), carried = trainLosses(try rows(c))
        XCTAssertEqual(full[1], carried[1])                                  // the first minibatch starts from zero either way
        XCTAssertNotEqual(full[2], carried[2])                               // streams 1, 4 and 7 restart before iteration 2
        let part = try trainer(b, t)
        var stop = false
        part.shouldStop = { stop }
        XCTAssertTrue(try part.run { if case let .iteration(it, _, _, _, _, _, _) = $0, it == 7 { stop = true } }.interrupted)
        let resumed = try Trainer(resume: try Checkpoint.load(path: b + "/run/latest.safetensors"), corpus: part.corpus, maxIters: nil, epochs: nil)
        XCTAssertEqual(resumed.meta.train.coldStartEvery, 3)
        _ = try resumed.run { _ in }
        XCTAssertEqual(full, trainLosses(try rows(b)))
        XCTAssertEqual(whole.model.params.toArray(), resumed.model.params.toArray())
        XCTAssertEqual(CheckpointSummary(checkpoint: try Checkpoint.load(path: b + "/run/latest.safetensors")).coldStartEvery, 3)
    }

    // MARK: - loss.csv

    /// A log written before the event column gets it on resume, so the file keeps one shape.
    func testLegacyLossLogGetsTheEventColumn() {
        let legacy = LossLog.legacyHeader + "\n1,0.1,2.0,,0.1,1.0,1.0,1.0\n2,0.2,1.9,2.1,0.1,1.0,1.0,2.0\n3,0.3,1.8,,0.1,1.0,1.0,3.0\n"
        let kept = String(decoding: LossLog.prefix(of: Data(legacy.utf8), through: 2), as: UTF8.self)
        XCTAssertEqual(kept, LossLog.header + "\n1,0.1,2.0,,0.1,1.0,1.0,1.0,\n2,0.2,1.9,2.1,0.1,1.0,1.0,2.0,\n")
        let parsed = Array(kept.utf8).withUnsafeBytes { try? LossHistory.parseReport($0, file: "loss.csv") }
        XCTAssertEqual(parsed?.rows.count, 2)
        XCTAssertEqual(parsed?.unreadableLines, 0)
    }
}
