// Training-level invariants: checkpoint round trip, bit-exact resume, optimizer semantics,
// sampler determinism and temperature → 0 = argmax.

import Foundation
import XCTest
@testable import CharRNN

/// A small deterministic English-like corpus (no external files).
func syntheticCorpusText(lines: Int = 400) -> String {
    let words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "runs", "far", "away", "to", "sea"]
    var rng = Xoshiro256(seed: 7)
    var s = ""
    for _ in 0..<lines {
        let n = 4 + Int(rng.next() % 6)
        s += (0..<n).map { _ in words[Int(rng.next() % UInt64(words.count))] }.joined(separator: " ")
        s += rng.next() % 3 == 0 ? ".\n" : ",\n"
    }
    return s
}

func tempDir(_ tag: String) -> String {
    let d = NSTemporaryDirectory() + "charrnn-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

final class TrainingTests: XCTestCase {
    func smallConfig(maxIters: Int, optim: OptimizerKind = .rmsprop) -> TrainConfig {
        var t = TrainConfig()
        t.seq = 16; t.batch = 8; t.maxIters = maxIters; t.evalEvery = 10; t.optim = optim
        t.lr = 3e-2; t.threads = 1; t.trainFrac = 0.9; t.valFrac = 0.1
        return t
    }

    func makeTrainer(dir: String, train: TrainConfig, cell: CellKind = .lstm, dropout: Float = 0, embed: Int = 0) throws -> Trainer {
        let text = syntheticCorpusText()
        let corpus = try Corpus(bytes: Array(text.utf8), name: "synthetic")
        let info = CorpusInfo(name: "synthetic", path: dir + "/synthetic.txt", bytes: text.utf8.count, tokens: corpus.count)
        try text.write(toFile: info.path, atomically: true, encoding: .utf8)
        let cfg = ModelConfig(cell: cell, layers: 2, hidden: 24, embed: embed, dropout: dropout, vocabSize: corpus.vocabulary.count)
        return try Trainer(corpus: corpus, corpusInfo: info, model: cfg, train: train, runDir: dir + "/run")
    }

    func csvRows(_ dir: String) throws -> [String] {
        let s = try String(contentsOfFile: dir + "/run/loss.csv", encoding: .utf8)
        return s.split(separator: "\n").map(String.init)
    }

    /// Train loss column of every row, keyed by iteration.
    func trainLosses(_ rows: [String]) -> [Int: String] {
        var out: [Int: String] = [:]
        for r in rows.dropFirst() {
            let f = r.split(separator: ",", omittingEmptySubsequences: false)
            out[Int(f[0])!] = String(f[2]) + "|" + String(f[3])
        }
        return out
    }

    func testLossFallsAndCSVHasHeaderAndRows() throws {
        try WorkerPool.configure(threads: 1)
        let dir = tempDir("fall")
        let tr = try makeTrainer(dir: dir, train: smallConfig(maxIters: 60))
        let s = try tr.run { _ in }
        let rows = try csvRows(dir)
        XCTAssertEqual(rows.first, LossLog.header)
        XCTAssertEqual(rows.count, 61)
        let first = Double(rows[1].split(separator: ",")[2])!, last = s.lastTrainLoss
        XCTAssertLessThan(last, first - 0.5, "training loss should fall clearly: \(first) → \(last)")
        XCTAssertNotNil(s.bestValLoss)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/best.safetensors"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/latest.safetensors"))
    }

    /// --resume continues the very same run: rows after the resume point equal the uninterrupted run's.
    func testResumeEqualsUninterruptedRun() throws {
        try WorkerPool.configure(threads: 1)
        for (optim, cell, dropout) in [(OptimizerKind.rmsprop, CellKind.lstm, Float(0.25)), (.adam, .gru, 0), (.sgd, .rnn, 0.1)] {
            let a = tempDir("full"), b = tempDir("part")
            var cfg = smallConfig(maxIters: 30, optim: optim)
            cfg.lrDecayAfter = 0; cfg.lrDecay = 0.9   // exercise the per-epoch decay across the resume
            let full = try makeTrainer(dir: a, train: cfg, cell: cell, dropout: dropout)
            _ = try full.run { _ in }
            cfg.maxIters = 20
            let part = try makeTrainer(dir: b, train: cfg, cell: cell, dropout: dropout)
            _ = try part.run { _ in }
            let loaded = try Checkpoint.load(path: b + "/run/latest.safetensors")
            XCTAssertEqual(loaded.meta.progress.iteration, 20)
            let resumed = try Trainer(resume: loaded, corpus: part.corpus, maxIters: 30, epochs: nil)
            _ = try resumed.run { _ in }
            let la = trainLosses(try csvRows(a)), lb = trainLosses(try csvRows(b))
            XCTAssertEqual(la.count, 30); XCTAssertEqual(lb.count, 30)
            for it in 1...30 { XCTAssertEqual(la[it], lb[it], "\(optim) \(cell): iteration \(it) differs after resume") }
            XCTAssertEqual(full.model.params.toArray(), resumed.model.params.toArray(), "\(optim) \(cell): final weights differ")
            XCTAssertEqual(full.meta.progress.lr, resumed.meta.progress.lr)
        }
    }

    func testCheckpointRoundTripIsBitExact() throws {
        try WorkerPool.configure(threads: 1)
        let dir = tempDir("rt")
        let tr = try makeTrainer(dir: dir, train: smallConfig(maxIters: 10), cell: .lstm, embed: 6)
        _ = try tr.run { _ in }
        let path = dir + "/rt.safetensors"
        try Checkpoint.save(to: path, model: tr.model, optimizer: tr.optimizer, state: tr.trainState, meta: tr.meta)
        let loaded = try Checkpoint.load(path: path)
        let m2 = CharRNNModel(config: loaded.meta.model, maxT: 16, maxB: 8)
        let o2 = Optimizer(kind: tr.optimizer.kind, count: m2.layout.count)
        let s2 = RecurrentState(config: loaded.meta.model, batch: 8)
        try Checkpoint.restore(loaded, model: m2, optimizer: o2, state: s2)
        XCTAssertEqual(m2.params.toArray().map(\.bitPattern), tr.model.params.toArray().map(\.bitPattern))
        for (x, y) in zip(o2.moments, tr.optimizer.moments) { XCTAssertEqual(x.toArray(), y.toArray()) }
        for (x, y) in zip(s2.h + s2.c, tr.trainState.h + tr.trainState.c) { XCTAssertEqual(x.toArray(), y.toArray()) }
        XCTAssertEqual(o2.stepCount, 10)
        XCTAssertEqual(loaded.meta.vocabulary, tr.corpus.vocabulary)
        XCTAssertEqual(loaded.meta.progress, tr.meta.progress)
        XCTAssertEqual(loaded.meta.train, tr.meta.train)
        // PyTorch names and shapes
        let names = Set(loaded.file.names)
        for k in 0..<2 {
            XCTAssertEqual(loaded.file.tensors["rnn.weight_ih_l\(k)"]?.shape, [96, k == 0 ? 6 : 24])
            XCTAssertEqual(loaded.file.tensors["rnn.weight_hh_l\(k)"]?.shape, [96, 24])
            XCTAssertTrue(names.contains("rnn.bias_ih_l\(k)") && names.contains("rnn.bias_hh_l\(k)"))
            XCTAssertTrue(names.contains("state.h_l\(k)") && names.contains("state.c_l\(k)"))
        }
        XCTAssertEqual(loaded.file.tensors["embedding.weight"]?.shape, [tr.corpus.vocabulary.count, 6])
        XCTAssertEqual(loaded.file.tensors["decoder.weight"]?.shape, [tr.corpus.vocabulary.count, 24])
        XCTAssertTrue(names.contains("optimizer.square_avg.decoder.bias") && names.contains("optimizer.square_avg.rnn.weight_hh_l1"))
    }

    func testNewerFormatVersionIsRefused() throws {
        let dir = tempDir("ver")
        let tr = try makeTrainer(dir: dir, train: smallConfig(maxIters: 1))
        var w = SafeTensorsWriter()
        w.add("decoder.bias", shape: [2], floats: [1, 2])
        var md = try Checkpoint.encode(tr.meta, optimizer: nil, file: dir + "/new.safetensors")
        md["format_version"] = "99"
        w.metadata = md
        try w.write(to: dir + "/new.safetensors")
        XCTAssertThrowsError(try Checkpoint.load(path: dir + "/new.safetensors")) { e in
            XCTAssertTrue("\(e)".contains("format version 99 is newer"), "\(e)")
            XCTAssertTrue("\(e)".hasPrefix(dir + "/new.safetensors"), "\(e)")
        }
    }

    // MARK: - Optimizers against hand-computed updates

    func testOptimizerUpdatesMatchPyTorchFormulas() {
        let g: [Float] = [0.5, -2, 0, 3e-3]
        for kind in OptimizerKind.allCases {
            let p = Storage(count: 4); p.load([1, 1, 1, 1])
            let o = Optimizer(kind: kind, count: 4)
            var ref = [Double](repeating: 1, count: 4)
            var m = [Double](repeating: 0, count: 4), v = [Double](repeating: 0, count: 4)
            for t in 1...3 {
                g.withUnsafeBufferPointer { o.step(params: p.ptr, grads: $0.baseAddress!, lr: 0.01) }
                for i in 0..<4 {
                    let gi = Double(g[i])
                    switch kind {
                    case .rmsprop:
                        v[i] = 0.95 * v[i] + 0.05 * gi * gi
                        ref[i] -= 0.01 * gi / (v[i].squareRoot() + 1e-8)
                    case .adam:
                        m[i] = 0.9 * m[i] + 0.1 * gi; v[i] = 0.999 * v[i] + 0.001 * gi * gi
                        let bc1 = 1 - pow(0.9, Double(t)), bc2 = 1 - pow(0.999, Double(t))
                        ref[i] -= 0.01 / bc1 * m[i] / (v[i].squareRoot() / bc2.squareRoot() + 1e-8)
                    case .sgd:
                        m[i] = 0.9 * m[i] + gi
                        ref[i] -= 0.01 * m[i]
                    }
                }
            }
            for i in 0..<4 { XCTAssertEqual(Double(p.ptr[i]), ref[i], accuracy: 1e-5, "\(kind) element \(i)") }
        }
    }

    func testClipping() {
        let g = Storage(count: 3); g.load([3, -4, 0])
        let n = GradientClip.norm(g.ptr, count: 3)
        XCTAssertEqual(n, 5, accuracy: 1e-6)
        GradientClip.apply(g.ptr, count: 3, mode: .norm, clip: 1, norm: n)
        XCTAssertEqual(g.toArray()[0], 0.6, accuracy: 1e-5); XCTAssertEqual(g.toArray()[1], -0.8, accuracy: 1e-5)
        g.load([3, -4, 0.5])
        GradientClip.apply(g.ptr, count: 3, mode: .value, clip: 1, norm: 0)
        XCTAssertEqual(g.toArray(), [1, -1, 0.5])
    }

    func testNonFiniteLossStopsAndKeepsTheLastGoodCheckpoint() throws {
        let dir = tempDir("nan")
        let tr = try makeTrainer(dir: dir, train: smallConfig(maxIters: 30))
        tr.shouldStop = { tr.meta.progress.iteration >= 10 }
        XCTAssertTrue(try tr.run { _ in }.interrupted)
        let good = try Data(contentsOf: URL(fileURLWithPath: tr.latestPath))
        tr.model.params.ptr[tr.model.layout[StateDict.decoderBias]!.offset] = .nan       // inject a NaN
        tr.shouldStop = { false }
        XCTAssertThrowsError(try tr.run { _ in }) { e in
            XCTAssertTrue("\(e)".contains("training diverged at iteration 11"), "\(e)")
            XCTAssertTrue("\(e)".contains(tr.latestPath), "\(e)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: tr.latestPath)), good, "the last good checkpoint stays")
        XCTAssertEqual(try Checkpoint.load(path: tr.latestPath).meta.progress.iteration, 10)
    }

    // MARK: - Sampling

    func sampler(seed: UInt64, options: SamplingOptions) throws -> Sampler {
        let dir = tempDir("smp")
        let tr = try makeTrainer(dir: dir, train: smallConfig(maxIters: 20))
        _ = try tr.run { _ in }
        return try Sampler(checkpoint: try Checkpoint.load(path: dir + "/run/best.safetensors"), options: options, seed: seed)
    }

    func testSamplingIsDeterministicPerSeed() throws {
        try WorkerPool.configure(threads: 1)
        let a = try sampler(seed: 42, options: SamplingOptions(temperature: 1))
        let b = try sampler(seed: 42, options: SamplingOptions(temperature: 1))
        let c = try sampler(seed: 43, options: SamplingOptions(temperature: 1))
        let sa = (0..<200).map { _ in a.next() }, sb = (0..<200).map { _ in b.next() }, sc = (0..<200).map { _ in c.next() }
        XCTAssertEqual(sa, sb)
        XCTAssertNotEqual(sa, sc)
    }

    func testTemperatureToZeroEqualsArgmax() throws {
        let a = try sampler(seed: 1, options: SamplingOptions(temperature: 0))
        let b = try sampler(seed: 2, options: SamplingOptions(temperature: 1e-3))
        var greedy: [Int] = []
        for _ in 0..<100 {
            if !a.hasState { a.start() }
            let expect = a.argmax()
            greedy.append(expect)
            XCTAssertEqual(a.next(), expect)
        }
        XCTAssertEqual((0..<100).map { _ in b.next() }, greedy)
    }

    /// Temperatures so small that 1/T overflows are the limit they approach, argmax (they drew the last
    /// vocabulary character for ever: (z − m)·∞ is NaN for the likeliest token).
    func testTinyTemperaturesAreArgmax() throws {
        let a = try sampler(seed: 1, options: SamplingOptions(temperature: 0))
        var greedy: [Int] = []
        for _ in 0..<60 { greedy.append(a.next()) }
        for t: Float in [1e-39, 1e-45, .leastNonzeroMagnitude, 3e-39] {
            let b = try sampler(seed: 5, options: SamplingOptions(temperature: t))
            XCTAssertEqual((0..<60).map { _ in b.next() }, greedy, "T = \(t)")
        }
    }

    func testTopKAndTopPRestrictTheDraw() throws {
        let s = try sampler(seed: 5, options: SamplingOptions(temperature: 1.5, topK: 3))
        s.start()
        for _ in 0..<200 {
            let z = s.currentLogProbs()
            let top3 = Set(z.indices.sorted { z[$0] > z[$1] }.prefix(3))
            let t = s.draw()
            XCTAssertTrue(top3.contains(t))
            s.feed(t)
        }
        s.options = SamplingOptions(temperature: 1, topP: 1e-6)   // nucleus of one = argmax
        for _ in 0..<50 {
            let expect = s.argmax()
            XCTAssertEqual(s.draw(), expect)
            s.feed(expect)
        }
    }

    func testPrimeReportsUnknownCharactersOnce() throws {
        let s = try sampler(seed: 5, options: SamplingOptions())
        let unknown = s.prime("the 🦊 fox 🦊 Ω", normalize: .none)
        XCTAssertEqual(unknown, ["🦊", "Ω"])
    }
}
