// InferenceStepTests.swift — the model's B-stream inference step against the training forward, the
// per-stream independence batched sampling relies on, and the network spec that owns every tensor.

import XCTest
@testable import CharRNN

final class InferenceStepTests: XCTestCase {
    /// H = 21: one full 16-lane vector plus a tail in every gate kernel; V = 23.
    static let H = 21, V = 23

    static func config(_ cell: CellKind, embed: Int, adaptive: Bool) -> ModelConfig {
        var c = ModelConfig(cell: cell, layers: 2, hidden: H, embed: embed, vocabSize: V)
        if adaptive { c.adaptive = AdaptiveSoftmaxConfig(cutoffs: [8, 15], divValue: 2, order: Array((0..<V).reversed())) }
        return c
    }

    static var configs: [ModelConfig] {
        CellKind.allCases.flatMap { cell in [0, 8].flatMap { e in [false, true].map { config(cell, embed: e, adaptive: $0) } } }
    }

    static func tag(_ c: ModelConfig) -> String {
        "\(c.cell.rawValue) \(c.embed > 0 ? "embed" : "one-hot") \(c.adaptive == nil ? "full" : "adaptive")"
    }

    /// A model with weights uniform in ±0.5 (char-rnn's ±0.08 leaves the state near zero, too easy a test).
    static func model(_ c: ModelConfig, maxT: Int, maxB: Int, seed: UInt64) -> CharRNNModel {
        let m = CharRNNModel(config: c, maxT: maxT, maxB: maxB)
        var rng = Xoshiro256(seed: seed)
        for i in 0..<m.layout.count { m.params.ptr[i] = (rng.nextFloat() * 2 - 1) * 0.5 }
        m.parametersChanged()
        return m
    }

    static func tokens(_ n: Int, seed: UInt64) -> [Int32] {
        var rng = Xoshiro256(seed: seed)
        return (0..<n).map { _ in Int32(rng.next() % UInt64(V)) }
    }

    /// Over 100 steps with carried state, the step's log-probabilities equal the training forward's
    /// (≤ 1e-5 relative, floor 1), for B = 1 and B = 7, every cell × input × output layer.
    func testStepEqualsTrainingForward() {
        let T = 100
        for (n, c) in Self.configs.enumerated() {
            for B in [1, 7] {
                let m = Self.model(c, maxT: T, maxB: B, seed: 10 + UInt64(n))
                let x = Self.tokens(T * B, seed: 99 + UInt64(B))
                let reference = Storage(count: T * B * Self.V)
                x.withUnsafeBufferPointer { m.logProbs(x: $0.baseAddress!, T: T, B: B, state: RecurrentState(config: c, batch: B), out: reference.ptr) }
                let state = InferenceState(config: c, streams: B)
                let out = Storage(count: B * Self.V)
                var worst = 0.0
                for t in 0..<T {
                    x.withUnsafeBufferPointer { m.step(tokens: $0.baseAddress! + t * B, state: state, logProbs: out.ptr) }
                    for i in 0..<(B * Self.V) {
                        let a = Double(out.ptr[i]), b = Double(reference.ptr[t * B * Self.V + i])
                        XCTAssertTrue(a.isFinite, "\(Self.tag(c)) B=\(B): non-finite log-probability")
                        worst = max(worst, abs(a - b) / max(1, abs(b)))
                    }
                }
                XCTAssertLessThanOrEqual(worst, 1e-5, "\(Self.tag(c)) B=\(B): step vs training forward")
                // the state moved: the last step's distribution is not the first step's
                XCTAssertNotEqual(Array(UnsafeBufferPointer(start: out.ptr, count: Self.V)),
                                  Array(UnsafeBufferPointer(start: reference.ptr, count: Self.V)), "\(Self.tag(c)): state had no effect")
            }
        }
    }

    /// Each row of a log-probability output is normalised.
    func testStepLogProbabilitiesAreNormalised() {
        for c in Self.configs {
            let m = Self.model(c, maxT: 1, maxB: 4, seed: 3)
            let state = InferenceState(config: c, streams: 4)
            let out = Storage(count: 4 * Self.V)
            let tok: [Int32] = [0, 5, 22, 7]
            tok.withUnsafeBufferPointer { m.step(tokens: $0.baseAddress!, state: state, logProbs: out.ptr) }
            for r in 0..<4 {
                let s = (0..<Self.V).reduce(0.0) { $0 + exp(Double(out.ptr[r * Self.V + $1])) }
                XCTAssertEqual(s, 1, accuracy: 1e-5, "\(Self.tag(c)) row \(r)")
            }
        }
    }

    /// A stream gives the same bits stepped alone as among nine others, at every step, wherever it
    /// sits in the batch (B = 10: rows 0–5 share a six-row tile, 6–8 a three-row tile, 9 is alone).
    func testStreamIsBitIdenticalAloneOrBatched() {
        let T = 12, B = 10
        for c in Self.configs {
            let m = Self.model(c, maxT: 1, maxB: B, seed: 4)
            let x = Self.tokens(T * B, seed: 5)
            let many = InferenceState(config: c, streams: B)
            let outMany = Storage(count: B * Self.V)
            var batched: [[Float]] = []
            for t in 0..<T {
                x.withUnsafeBufferPointer { m.step(tokens: $0.baseAddress! + t * B, state: many, logProbs: outMany.ptr) }
                batched.append(outMany.toArray())
            }
            for probe in [0, 5, 7, 9] {
                let one = InferenceState(config: c, streams: 1), outOne = Storage(count: Self.V)
                for t in 0..<T {
                    x.withUnsafeBufferPointer { m.step(tokens: $0.baseAddress! + t * B + probe, state: one, logProbs: outOne.ptr) }
                    XCTAssertEqual(Array(batched[t][(probe * Self.V)..<((probe + 1) * Self.V)]), outOne.toArray(),
                                   "\(Self.tag(c)) stream \(probe) step \(t)")
                }
            }
        }
    }

    /// `step(rows: R)` on a state of B > R streams gives rows 0..<R the bits of an R-stream state,
    /// writes only R rows of log-probabilities, and leaves streams R..<B exactly as they were.
    func testStepOfTheFirstRowsMatchesASmallerStateAndLeavesTheRest() {
        let B = 10, T = 6
        for c in Self.configs {
            let m = Self.model(c, maxT: 1, maxB: B, seed: 8)
            let big = InferenceState(config: c, streams: B), outBig = Storage(count: B * Self.V)
            let warm = Self.tokens(B, seed: 1)
            warm.withUnsafeBufferPointer { m.step(tokens: $0.baseAddress!, state: big, logProbs: outBig.ptr) }   // every stream nonzero
            for R in [1, 3, 7] {
                let small = InferenceState(config: c, streams: R), outSmall = Storage(count: R * Self.V)
                for k in 0..<R { small.copyStream(k, of: big, to: k) }
                let untouched = (0..<c.layers).map { Array(big.hidden(layer: $0)[(R * Self.H)...]) }
                let x = Self.tokens(T * R, seed: 20 + UInt64(R))
                for r in (R * Self.V)..<(B * Self.V) { outBig.ptr[r] = 42 }
                for t in 0..<T {
                    x.withUnsafeBufferPointer {
                        m.step(tokens: $0.baseAddress! + t * R, state: big, rows: R, logProbs: outBig.ptr)
                        m.step(tokens: $0.baseAddress! + t * R, state: small, logProbs: outSmall.ptr)
                    }
                    XCTAssertEqual(Array(outBig.toArray()[0..<(R * Self.V)]), outSmall.toArray(), "\(Self.tag(c)) R=\(R) step \(t)")
                }
                XCTAssertTrue(outBig.toArray()[(R * Self.V)...].allSatisfy { $0 == 42 }, "\(Self.tag(c)) R=\(R): rows beyond R written")
                for k in 0..<c.layers {
                    XCTAssertEqual(Array(big.hidden(layer: k)[(R * Self.H)...]), untouched[k], "\(Self.tag(c)) R=\(R) layer \(k): streams beyond R moved")
                    XCTAssertEqual(Array(big.hidden(layer: k)[0..<(R * Self.H)]), small.hidden(layer: k), "\(Self.tag(c)) R=\(R) layer \(k)")
                }
            }
        }
    }

    /// Stream state can be reset and copied one stream at a time (what a server's rows need).
    func testStreamResetAndCopy() {
        let c = Self.config(.lstm, embed: 0, adaptive: false)
        let m = Self.model(c, maxT: 1, maxB: 3, seed: 6)
        let s = InferenceState(config: c, streams: 3), out = Storage(count: 3 * Self.V)
        let tok: [Int32] = [1, 2, 3]
        tok.withUnsafeBufferPointer { m.step(tokens: $0.baseAddress!, state: s, logProbs: out.ptr) }
        let before = s.hidden(layer: 1)
        s.reset(stream: 1)
        let after = s.hidden(layer: 1)
        XCTAssertEqual(Array(after[0..<Self.H]), Array(before[0..<Self.H]))
        XCTAssertEqual(Array(after[Self.H..<(2 * Self.H)]), [Float](repeating: 0, count: Self.H))
        s.copyStream(2, of: s, to: 0)
        XCTAssertEqual(Array(s.hidden(layer: 1)[0..<Self.H]), Array(before[(2 * Self.H)..<(3 * Self.H)]))
    }

    // MARK: - bfloat16 weights

    func testBFloat16RoundsToNearestEven() {
        XCTAssertEqual(bfloat16(1), 0x3F80)
        XCTAssertEqual(float(bfloat16: bfloat16(-2.5)), -2.5)
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1)
        XCTAssertEqual(bfloat16(1 + 0x1p-8), 0x3F80)
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: the even one is 1 + 2^-6
        XCTAssertEqual(float(bfloat16: bfloat16(1 + 3 * 0x1p-8)), 1 + 0x1p-6)
        XCTAssertEqual(float(bfloat16: bfloat16(1 + 0x1p-8 + 0x1p-12)), 1 + 0x1p-7, "above halfway rounds up")
        var rng = Xoshiro256(seed: 1)
        for _ in 0..<1000 {
            let x = (rng.nextFloat() * 2 - 1) * 8
            XCTAssertLessThanOrEqual(abs(float(bfloat16: bfloat16(x)) - x), abs(x) * 0x1p-8, "\(x)")
        }
    }

    /// bf16 packed weights: close to float32 (not equal), still bit-identical per stream whatever B is.
    func testBFloat16StepIsCloseAndStreamIndependent() {
        for c in Self.configs where c.adaptive == nil { Self.checkBFloat16Step(c, label: "bf16") }
    }

    /// 30 steps of B = 7 streams with fp32 and bf16 weights and one stream alone: bf16 within 0.1 of
    /// float32's log-probabilities but not equal to them, stream 4 bit-identical alone and batched.
    /// Returns the bf16 model (for what its packed weights say).
    @discardableResult
    static func checkBFloat16Step(_ c: ModelConfig, label: String) -> CharRNNModel {
        let B = 7, T = 30
        let m32 = model(c, maxT: 1, maxB: B, seed: 21), m16 = model(c, maxT: 1, maxB: B, seed: 21)
        m16.inferencePrecision = .bf16
        let one = model(c, maxT: 1, maxB: 1, seed: 21)
        one.inferencePrecision = .bf16
        let s32 = InferenceState(config: c, streams: B), s16 = InferenceState(config: c, streams: B), s1 = InferenceState(config: c, streams: 1)
        let o32 = Storage(count: B * V), o16 = Storage(count: B * V), o1 = Storage(count: V)
        let x = tokens(T * B, seed: 22)
        var worst: Float = 0, differs = false
        for t in 0..<T {
            x.withUnsafeBufferPointer { p in
                m32.step(tokens: p.baseAddress! + t * B, state: s32, logProbs: o32.ptr)
                m16.step(tokens: p.baseAddress! + t * B, state: s16, logProbs: o16.ptr)
                one.step(tokens: p.baseAddress! + t * B + 4, state: s1, logProbs: o1.ptr)
            }
            for i in 0..<(B * V) { worst = max(worst, abs(o32.ptr[i] - o16.ptr[i])); differs = differs || o32.ptr[i] != o16.ptr[i] }
            XCTAssertEqual(Array(o16.toArray()[(4 * V)..<(5 * V)]), o1.toArray(), "\(label) \(tag(c)) stream 4 step \(t)")
        }
        XCTAssertTrue(differs, "\(label) \(tag(c)): bf16 weights gave float32's exact result — not used?")
        XCTAssertLessThan(worst, 0.1, "\(label) \(tag(c)): bf16 log-probabilities far from float32's")
        return m16
    }

    func testWeightComparisonOfTheSamePrecisionIsExact() throws {
        let c = Self.config(.gru, embed: 8, adaptive: false)
        let m = Self.model(c, maxT: 10, maxB: 4, seed: 30)
        let dir = NSTemporaryDirectory() + "cmp-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let vocab = Vocabulary(unit: .scalar, tokens: (0..<Self.V).map { String(UnicodeScalar(UInt8(65 + $0))) })
        let meta = CheckpointMeta(model: c, train: TrainConfig(), vocabulary: vocab, corpus: CorpusInfo(name: "x", path: "x", bytes: 1, tokens: 1),
                                  progress: RunProgress(), trainBatches: 1)
        try Checkpoint.save(to: dir + "/m.safetensors", model: m, optimizer: nil, state: nil, meta: meta)
        let ev = try Evaluator(checkpoint: try Checkpoint.load(path: dir + "/m.safetensors"), batch: 4, seq: 10)
        let ids = Self.tokens(203, seed: 31)
        let exact = ev.evaluate(ids: ids)
        let same = ev.compareWeights(ids: ids, precision: .fp32)
        XCTAssertEqual(same.meanKL, 0)
        XCTAssertEqual(same.loss, same.lossFP32)
        XCTAssertEqual(same.scored, exact.scored)
        XCTAssertEqual(same.lossFP32, exact.loss, accuracy: 1e-5 * exact.loss, "the step path scores what eval scores")
        let half = ev.compareWeights(ids: ids, precision: .bf16)
        XCTAssertGreaterThan(half.meanKL, 0)
        XCTAssertLessThan(half.meanKL, 0.01)
        XCTAssertEqual(half.lossFP32, same.lossFP32)
    }

    // MARK: - Batched sampling

    /// Sample i is the same whatever K is; stream 0 is the single-sample draw of the same seed.
    func testBatchedSamplesDoNotDependOnK() {
        let vocab = Vocabulary(unit: .scalar, tokens: (0..<Self.V).map { String(UnicodeScalar(UInt8(65 + $0))) })
        for c in [Self.config(.lstm, embed: 0, adaptive: false), Self.config(.gru, embed: 8, adaptive: true)] {
            func draw(_ K: Int, _ opts: SamplingOptions) -> [[Int32]] {
                let m = Self.model(c, maxT: 1, maxB: K, seed: 7)
                let s = Sampler(model: m, vocabulary: vocab, options: opts, seed: 42, streams: K)
                s.prime("ABC", normalize: .none)
                var out = [[Int32]](repeating: [], count: K)
                let step = IntStorage(count: K)
                for _ in 0..<60 { s.next(into: step.ptr); for i in 0..<K { out[i].append(step.ptr[i]) } }
                return out
            }
            for opts in [SamplingOptions(temperature: 1), SamplingOptions(temperature: 0.8, topK: 5, topP: 0.9)] {
                let k1 = draw(1, opts), k3 = draw(3, opts), k8 = draw(8, opts)
                XCTAssertEqual(k3[0], k1[0], Self.tag(c))
                for i in 0..<3 { XCTAssertEqual(k8[i], k3[i], "\(Self.tag(c)) sample \(i)") }
                XCTAssertNotEqual(k8[1], k8[2], "\(Self.tag(c)): streams share a generator")
                // and the one-stream API gives the same as stream 0
                let m = Self.model(c, maxT: 1, maxB: 1, seed: 7)
                let single = Sampler(model: m, vocabulary: vocab, options: opts, seed: 42)
                single.prime("ABC", normalize: .none)
                XCTAssertEqual((0..<60).map { _ in Int32(single.next()) }, k1[0], Self.tag(c))
            }
        }
    }

    // MARK: - The network spec

    func testSpecOwnsEveryTensorOfACheckpoint() throws {
        let dir = NSTemporaryDirectory() + "spec-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for c in Self.configs {
            let m = Self.model(c, maxT: 2, maxB: 3, seed: 8)
            let spec = m.spec
            XCTAssertEqual(spec.parameterCount, c.parameterCount)
            XCTAssertEqual(spec.parameterCount, m.layout.views.reduce(0) { $0 + $1.count }, Self.tag(c))
            XCTAssertEqual(m.layout.views.map(\.name), spec.parameters.map(\.name))
            let opt = Optimizer(kind: .adam, count: m.layout.count)
            let state = RecurrentState(config: c, batch: 3)
            let meta = CheckpointMeta(model: c, train: TrainConfig(), vocabulary: Vocabulary(unit: .scalar, tokens: (0..<Self.V).map { String(UnicodeScalar(UInt8(65 + $0))) }),
                                      corpus: CorpusInfo(name: "x", path: "x", bytes: 1, tokens: 1), progress: RunProgress(), trainBatches: 1)
            let path = dir + "/c.safetensors"
            try Checkpoint.save(to: path, model: m, optimizer: opt, state: state, meta: meta)
            let file = try Checkpoint.load(path: path).file
            let expected = spec.parameters + spec.optimizerSlots(.adam) + spec.carriedState(streams: 3)
            XCTAssertEqual(Set(file.tensors.keys), Set(expected.map(\.name)), Self.tag(c))
            for t in expected { XCTAssertEqual(file.tensors[t.name]?.shape, t.shape, "\(Self.tag(c)) \(t.name)") }
            XCTAssertEqual(spec.carriedState(streams: 3).count, c.layers * (c.cell == .lstm ? 2 : 1))
        }
    }

    func testFLOPCountComesFromTheSpec() {
        let full = Self.config(.lstm, embed: 0, adaptive: false)
        let H = Self.H, V = Self.V, G = 4 * H
        // layer 0 one-hot: W_hh only; layer 1: W_ih + W_hh; decoder V·H
        XCTAssertEqual(NetworkSpec(full).forwardMACsPerToken(), Double(G * H + 2 * G * H + V * H))
        let ad = Self.config(.lstm, embed: 0, adaptive: true)
        let a = ad.adaptive!
        let w0 = a.tailWidth(0, hidden: H), w1 = a.tailWidth(1, hidden: H)
        let head = Double((8 + 2) * H), tail0 = Double(w0 * H + 7 * w0), tail1 = Double(w1 * H + 8 * w1)
        XCTAssertEqual(NetworkSpec(ad).forwardMACsPerToken(tailShares: [0.5, 0.25]),
                       Double(3 * G * H) + head + 0.5 * tail0 + 0.25 * tail1, accuracy: 1e-9)
        XCTAssertEqual(NetworkSpec(ad).forwardMACsPerToken(), Double(3 * G * H) + head + tail0 + tail1, accuracy: 1e-9)
    }

    func testMetadataKeysAreOneTableAndUnknownIDDoesNotLeak() throws {
        let dir = NSTemporaryDirectory() + "meta-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = ModelConfig(cell: .gru, layers: 1, hidden: 4, vocabSize: 3)
        let m = CharRNNModel(config: c, maxT: 1, maxB: 1)
        var meta = CheckpointMeta(model: c, train: TrainConfig(), vocabulary: Vocabulary(unit: .scalar, tokens: ["", "a", "b"], unknownID: 0),
                                  corpus: CorpusInfo(name: "x", path: "x", bytes: 1, tokens: 1), progress: RunProgress(), trainBatches: 1)
        meta.extra["note"] = "kept"
        meta.extra["iteration"] = "999"   // a core key in extra never overrides the real one
        try Checkpoint.save(to: dir + "/m.safetensors", model: m, optimizer: nil, state: nil, meta: meta)
        let back = try Checkpoint.load(path: dir + "/m.safetensors").meta
        XCTAssertEqual(back.extra, ["note": "kept"])
        XCTAssertEqual(back.vocabulary.unknownID, 0)
        XCTAssertEqual(back.progress.iteration, 0)
        let written = try Checkpoint.load(path: dir + "/m.safetensors").file.metadata
        XCTAssertTrue(Set(written.keys).subtracting(["note"]).isSubset(of: MetaKey.all))
    }

    func testNonFiniteMetadataIsAnErrorNotACrash() throws {
        let dir = NSTemporaryDirectory() + "inf-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = ModelConfig(cell: .rnn, layers: 1, hidden: 4, vocabSize: 2)
        var t = TrainConfig()
        t.epochs = .infinity
        let meta = CheckpointMeta(model: c, train: t, vocabulary: Vocabulary(unit: .scalar, tokens: ["a", "b"]),
                                  corpus: CorpusInfo(name: "x", path: "x", bytes: 1, tokens: 1), progress: RunProgress(), trainBatches: 1)
        XCTAssertThrowsError(try Checkpoint.save(to: dir + "/m.safetensors", model: CharRNNModel(config: c, maxT: 1, maxB: 1),
                                                 optimizer: nil, state: nil, meta: meta)) { e in
            XCTAssertTrue("\(e)".contains("\"train\""), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/m.safetensors"))
    }
}
