// LibraryUseTests.swift — charrnn as another Swift package uses it: only `import CharRNN` (no
// @testable), so this file compiles against the library's public API alone. It is the README's "Use
// as a Swift library" example, run by `swift test`: train a small model, load its checkpoint, sample
// from it, score a text.

import CharRNN
import Foundation
import XCTest

final class LibraryUseTests: XCTestCase {
    func testTrainLoadSampleAndScore() throws {
        let dir = NSTemporaryDirectory() + "charrnn-library-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let corpus = dir + "/fox.txt"
        try String(repeating: "the quick brown fox jumps over the lazy dog.\n", count: 300)
            .write(toFile: corpus, atomically: true, encoding: .utf8)

        // Train: an LSTM 2×64 for 60 iterations; checkpoints go to <dir>/runs/fox/.
        var train = TrainConfig()
        train.seq = 32; train.batch = 8; train.maxIters = 60; train.evalEvery = 30
        let request = TrainingRun.Request(mode: .fresh(model: ModelConfig(hidden: 64, vocabSize: 1), softmax: .full),
                                          corpus: [corpus], train: train, outDir: dir + "/runs", name: "fox",
                                          tokenCache: .off, overwrite: false)
        let run = try TrainingRun(request)
        let summary = try run.trainer.run { event in
            if case let .validation(it, _, valLoss, _, _) = event { print("iteration \(it): val loss \(valLoss)") }
        }
        XCTAssertEqual(summary.iterations, 60)

        // Load the best checkpoint and draw 80 characters after a prime.
        let checkpoint = try Checkpoint.load(path: RunFolder(summary.runDir).best)
        let vocabulary = checkpoint.meta.vocabulary
        let (prime, _) = vocabulary.encode("the ", normalize: checkpoint.meta.train.normalize)
        let loop = try GenerationLoop(checkpoint: checkpoint, maxStreams: 1)
        loop.join(prompt: prime, seed: 42, stream: 0, options: SamplingOptions(temperature: 0.5), maxTokens: 80,
                  stop: StopFilter())
        var bytes: [UInt8] = []
        loop.runToEnd { _, text in bytes += text }
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertEqual(text.unicodeScalars.count, 80)
        print("the " + text)

        // Score a text: mean cross-entropy in nats per character, below a uniform guess's.
        let score = try Evaluator(checkpoint: checkpoint).evaluate(text: "the lazy dog jumps over the quick brown fox.\n",
                                                                    name: "snippet")
        XCTAssertLessThan(score.loss, log(Double(vocabulary.count)))
    }
}
