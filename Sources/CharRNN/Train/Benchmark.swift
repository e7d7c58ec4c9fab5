// Train/Benchmark.swift — times the real training step and the real sampler (`charrnn bench`).
//
// Model FLOPs by formula (stated in README), from the network's spec: forward multiply-adds per token
// are every weight matrix used — G·D (input projection, 0 for a one-hot gather) + G·H (recurrent) per
// layer, V·H for the decoder (an adaptive softmax: its head, and each tail weighted by the share of
// the timed tokens that fall in it) — and training counts 3 × 2 × that (forward, plus two GEMMs per
// matrix in backward). Sampling is timed for each count of streams in `sampleStreams`.

import Foundation

public struct BenchConfig: Sendable {
    public var model: ModelConfig
    public var seq = 50
    public var batch = 50
    public var iters = 50
    public var warmup = 5
    public var sampleLength = 2000
    /// Streams sampled together for the sampling figures (one figure each).
    public var sampleStreams = [1]
    public var seed: UInt64 = 123
    public init(model: ModelConfig) { self.model = model }
}

public struct BenchResult: Sendable, Codable {
    public var model: String, layers: Int, hidden: Int, embed: Int, vocab: Int, seq: Int, batch: Int, threads: Int
    public var params: Int
    public var trainTokensPerSec: Double
    public var msPerIterMin: Double, msPerIterMedian: Double, msPerIterMax: Double
    public var trainGFLOPPerIter: Double
    public var achievedGFLOPS: Double
    public var sgemmPeakGFLOPS: Double
    public var fractionOfPeak: Double
    /// Sampling tokens/s of one stream (the first count of `sampleStreams`).
    public var sampleTokensPerSec: Double
    /// Per count of streams: tokens/s summed over the streams.
    public var sampleStreams: [SampleFigure]
    public var peakRSSMB: Double
    public var loss: Double
    /// Heap allocations inside the timed training iterations and the sampling loop; nil unless the
    /// process runs with scripts/malloc-count.c preloaded.
    public var trainAllocations: Int?
    public var sampleAllocations: Int?
}

/// Sampling speed with K streams in one batched step.
public struct SampleFigure: Sendable, Codable {
    public var streams: Int
    public var tokensPerSec: Double
    public var perStream: Double { tokensPerSec / Double(streams) }
}

/// The allocation counter of scripts/malloc-count.c, when it is preloaded.
enum MallocCounter {
    typealias Fn = @convention(c) () -> UInt
    static let fn: Fn? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "charrnn_malloc_count") else { return nil }
        return unsafeBitCast(sym, to: Fn.self)
    }()
    static var count: Int? { fn.map { Int($0()) } }
}

public enum Benchmark {
    /// Forward multiply-adds per token (one-hot gather and embedding lookups count zero).
    /// Training FLOPs per token = 3 × 2 × forward multiply-adds (NetworkSpec), an adaptive softmax's
    /// tails weighted by the share of `tokens` whose id falls in each.
    public static func trainFLOPsPerToken(_ c: ModelConfig, tokens: [Int32] = []) -> Double {
        var shares: [Double]? = nil
        if let a = c.adaptive, !tokens.isEmpty {
            var rank = [Int](repeating: 0, count: c.vocabSize)
            for (r, id) in a.order.enumerated() { rank[id] = r }
            let b = a.bounds
            var n = [Int](repeating: 0, count: a.clusters)
            for t in tokens {
                let r = rank[Int(t)]
                if r >= a.headSize { n[(0..<a.clusters).first { r < b[$0 + 1] }!] += 1 }
            }
            shares = n.map { Double($0) / Double(tokens.count) }
        }
        return 6 * NetworkSpec(c).forwardMACsPerToken(tailShares: shares)
    }

    /// sgemm GFLOP/s on n×n×n (median of `reps` after one warm-up), with the current BLAS threads.
    public static func sgemmGFLOPS(n: Int = 2048, reps: Int = 5) -> Double {
        let a = Storage(count: n * n), b = Storage(count: n * n), c = Storage(count: n * n)
        for i in 0..<(n * n) { a.ptr[i] = Float(i % 7) * 0.1; b.ptr[i] = Float(i % 5) * 0.1 }
        var times: [Double] = []
        for r in 0...reps {
            let t0 = DispatchTime.now().uptimeNanoseconds
            gemm(.noTrans, .noTrans, m: n, n: n, k: n, a: a.ptr, lda: n, b: b.ptr, ldb: n, beta: 0, c: c.ptr, ldc: n)
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if r > 0 { times.append(dt) }
        }
        times.sort()
        return 2 * pow(Double(n), 3) / times[times.count / 2] / 1e9
    }

    /// Peak resident set size of this process so far, in MB.
    public static func peakRSSMB() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_maxrss) / 1024
    }

    /// Token ids for the benchmark: a corpus, or uniform random ids over `vocab`.
    public static func syntheticTokens(count: Int, vocab: Int, seed: UInt64) -> [Int32] {
        var rng = Xoshiro256(seed: seed)
        return (0..<count).map { _ in Int32(rng.next() % UInt64(vocab)) }
    }

    /// Runs training iterations on `tokens` (time-major minibatches cut from it in order), then the
    /// sampler, then sgemm 2048³ with OpenBLAS's own threads, and reports speed. Peak RSS is read
    /// right after training, before the sampler and the sgemm buffers exist.
    public static func run(_ cfg: BenchConfig, tokens: [Int32], threads: Int) -> BenchResult {
        let T = cfg.seq, B = cfg.batch, N = T * B
        let model = CharRNNModel(config: cfg.model, maxT: T, maxB: B)
        var rng = Xoshiro256(seed: cfg.seed)
        model.initialize(rng: &rng)
        let opt = Optimizer(kind: .rmsprop, count: model.layout.count)
        let state = RecurrentState(config: cfg.model, batch: B)
        let x = IntStorage(count: N), y = IntStorage(count: N)
        let span = max(1, tokens.count / B - 1)
        var times: [Double] = []
        times.reserveCapacity(cfg.iters)
        var loss = 0.0
        var col = 0
        var allocStart: Int? = nil
        for it in 0..<(cfg.warmup + cfg.iters) {
            if it == cfg.warmup { allocStart = MallocCounter.count }
            // stream b reads tokens [b·span + col, …), time-major
            if col + T >= span { col = 0 }
            for t in 0..<T {
                for b in 0..<B {
                    x.ptr[t * B + b] = tokens[b * span + col + t]
                    y.ptr[t * B + b] = tokens[b * span + col + t + 1]
                }
            }
            col += T
            let t0 = DispatchTime.now().uptimeNanoseconds
            loss = model.trainStep(x: x.ptr, y: y.ptr, T: T, B: B, state: state, rng: &rng)
            let norm = GradientClip.norm(model.grads.ptr, count: model.layout.count)
            GradientClip.apply(model.grads.ptr, count: model.layout.count, mode: .norm, clip: 5, norm: norm)
            opt.step(params: model.params.ptr, grads: model.grads.ptr, lr: 2e-3)
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if it >= cfg.warmup { times.append(dt) }
        }
        let trainAllocs = allocStart.flatMap { a in MallocCounter.count.map { $0 - a } }
        let trainRSS = peakRSSMB()
        let total = times.reduce(0, +)
        let tps = Double(N * times.count) / total
        let sorted = times.sorted()
        let flopsIter = trainFLOPsPerToken(cfg.model, tokens: tokens) * Double(N)

        // Sampling: temperature 0.8, K streams in one batched step, a model holding the trained weights.
        let vocab = Vocabulary(unit: .scalar, tokens: (0..<cfg.model.vocabSize).map(Bounds.syntheticCharacter))
        var figures: [SampleFigure] = []
        var sampleAllocs: Int? = nil
        for K in cfg.sampleStreams {
            let sm = CharRNNModel(config: cfg.model, maxT: 1, maxB: K)
            sm.params.ptr.update(from: model.params.ptr, count: model.layout.count)
            let sampler = Sampler(model: sm, vocabulary: vocab, options: SamplingOptions(temperature: 0.8), seed: cfg.seed, streams: K)
            let out = IntStorage(count: K)
            sampler.next(into: out.ptr)
            let sampleAllocStart = MallocCounter.count
            let s0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<cfg.sampleLength { sampler.next(into: out.ptr) }
            let sampleSecs = Double(DispatchTime.now().uptimeNanoseconds - s0) / 1e9
            if figures.isEmpty { sampleAllocs = sampleAllocStart.flatMap { a in MallocCounter.count.map { $0 - a } } }
            figures.append(SampleFigure(streams: K, tokensPerSec: Double(cfg.sampleLength * K) / sampleSecs))
        }

        let sgemmPeak = withOpenBLASThreads(threads) { sgemmGFLOPS() }
        let achieved = flopsIter * Double(times.count) / total / 1e9
        return BenchResult(model: cfg.model.cell.rawValue, layers: cfg.model.layers, hidden: cfg.model.hidden, embed: cfg.model.embed,
                           vocab: cfg.model.vocabSize, seq: T, batch: B, threads: threads, params: cfg.model.parameterCount,
                           trainTokensPerSec: tps, msPerIterMin: sorted.first! * 1e3, msPerIterMedian: sorted[sorted.count / 2] * 1e3,
                           msPerIterMax: sorted.last! * 1e3, trainGFLOPPerIter: flopsIter / 1e9, achievedGFLOPS: achieved,
                           sgemmPeakGFLOPS: sgemmPeak, fractionOfPeak: achieved / sgemmPeak,
                           sampleTokensPerSec: figures.first.map(\.perStream) ?? 0, sampleStreams: figures, peakRSSMB: trainRSS, loss: loss,
                           trainAllocations: trainAllocs, sampleAllocations: sampleAllocs)
    }
}
