// TrainingStepTests.swift — `charrnn bench` times the step `train` runs: the same `TrainingStep`, called
// with train's defaults, reaches the trainer's losses bit for bit on the same minibatches.

import Foundation
import XCTest
@testable import CharRNN

final class TrainingStepTests: XCTestCase {
    /// Bench and Trainer on the same tokens (bench's layout made to cut the trainer's minibatches),
    /// with dropout so that the step's generator use is compared too: the same loss at every step.
    func testBenchTimesTheTrainersStep() throws {
        try WorkerPool.configure(threads: 1)
        let (T, B) = (16, 8)
        // pad the corpus so that it has at least B tokens beyond the layout's (bench needs B·(R+1))
        var text = syntheticCorpusText()
        func fits(_ n: Int) -> Bool { n - (n / (B * T)) * (B * T) >= B }
        while !fits(text.unicodeScalars.count) { text += " " }
        let corpus = try Corpus(bytes: Array(text.utf8), name: "s")
        var t = TrainConfig()                       // rmsprop, lr 2e-3, clip norm 5, seed 123, cold starts: bench's
        t.seq = T; t.batch = B; t.maxIters = 6; t.evalEvery = 100; t.threads = 1; t.trainFrac = 0.9; t.valFrac = 0.1
        for cell in CellKind.allCases {
            let cfg = ModelConfig(cell: cell, layers: 2, hidden: 16, embed: cell == .gru ? 5 : 0, dropout: 0.25,
                                  vocabSize: corpus.vocabulary.count)
            let dir = tempDir("step")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let info = CorpusInfo(name: "s", path: dir + "/s.txt", bytes: text.utf8.count, tokens: corpus.count)
            let tr = try Trainer(corpus: corpus, corpusInfo: info, model: cfg, train: t, runDir: dir + "/run")
            var losses: [UInt64] = []
            _ = try tr.run { if case let .iteration(_, _, _, loss, _, _, _) = $0 { losses.append(loss.bitPattern) } }
            XCTAssertEqual(losses.count, 6)
            // the trainer's stream b reads ids[b·R + k·T + t] (R = usedTokens/B); bench's reads
            // tokens[b·span + col + t] with span = count/B − 1: B·(R+1) tokens give span = R
            let R = tr.batches.usedTokens / B
            XCTAssertGreaterThanOrEqual(corpus.count, B * (R + 1))
            let tokens = (0..<(B * (R + 1))).map { corpus.token(at: $0) }
            var bench: [UInt64] = []
            for iters in 1...6 {
                var b = BenchConfig(model: cfg)
                b.seq = T; b.batch = B; b.iters = iters; b.warmup = 0; b.sampleLength = 1; b.seed = 123
                // what `Benchmark.run` times (it then adds the sampler and the sgemm probe)
                bench.append(Benchmark.timeTraining(b, tokens: tokens, reducer: LocalReducer()).loss.bitPattern)
            }
            XCTAssertEqual(bench, losses, "\(cell)")
        }
    }

    /// A stop request: alone it is honoured before the next step; in a group it is the agreed flag.
    func testStopBeforeNextStep() {
        let model = CharRNNModel(config: ModelConfig(hidden: 4, vocabSize: 5), maxT: 2, maxB: 2)
        let alone = TrainingStep(model: model, optimizer: Optimizer(kind: .sgd, count: model.layout.count),
                                 reducer: LocalReducer(), batch: 2, seq: 2)
        XCTAssertTrue(alone.stopBeforeNextStep(agreed: false, poll: { true }))
        XCTAssertFalse(alone.stopBeforeNextStep(agreed: true, poll: { false }))
    }
}
