// Train/Benchmark.swift — times the real training step and the real sampler (`charrnn bench`).
//
// Model FLOPs by formula (stated in README), from the network's spec: forward multiply-adds per token
// are every weight matrix used — G·D (input projection, 0 for a one-hot gather) + G·H (recurrent) per
// layer, V·H for the decoder (an adaptive softmax: its head, and each tail weighted by the share of
// the timed tokens that fall in it) — and training counts 3 × 2 × that (forward, plus two GEMMs per
// matrix in backward). Sampling is timed for each count of streams in `sampleStreams`.
// Data-parallel (under mpirun, `group`): each rank trains its block of the B streams and the gradients
// are summed as in `Trainer` (Train/Distributed.swift); tokens/s is global (T·B per iteration), the
// communication share is the time in the gradient sum over the iteration time, and rank 0 alone
// times the sampler and sgemm afterwards (the other ranks skip them).

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
    /// Precision of the sampler's packed weights.
    public var sampleWeights: WeightPrecision = .fp32
    /// Time the phases of the training step (the probes cost about 1%).
    public var profile = false
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
    /// sgemm 2048³ with this process's threads (data-parallel: rank 0's, measured while the others
    /// wait); `fractionOfPeak` is the achieved rate over the job's ceiling, ranks × that.
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
    /// Bytes of packed weights one sampling step streams per stream at batch 1 (matrices only),
    /// and the rate that gives at the one-stream sampling speed, against a read-bandwidth probe of
    /// the same number of bytes on the same cores in the same run (GB/s = 1e9 bytes/s).
    public var sampleWeightBytesPerToken: Double
    public var sampleWeightGBs: Double
    public var readProbeGBs: Double
    /// With `BenchConfig.profile`: ms per timed iteration spent in each phase (Tensor/Profile.swift).
    public var profileMsPerIter: [String: Double]?
    /// Data-parallel: processes, share of iteration time spent summing gradients, bytes each rank sends per iteration.
    public var ranks: Int = 1
    public var communicationShare: Double? = nil
    public var bytesPerIteration: Int? = nil
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

    /// Read bandwidth in GB/s over a buffer of `bytes`, each of the pool's cores summing its own slice
    /// (median of 9 passes after one warm-up): what a memory-bound sampling step can reach.
    public static func readBandwidthGBs(bytes: Int) -> Double {
        let n = max(vecWidth, bytes / 4)
        let buf = Storage(count: n)
        for i in 0..<n { buf.ptr[i] = Float(i & 7) }
        let pool = WorkerPool.shared
        let parts = pool.width
        let sums = Storage(count: parts * 16)
        var times: [Double] = []
        for r in 0...9 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            pool.run(parts: parts, with: ReadJob(buf: buf.ptr, n: n, sums: sums.ptr, parts: parts)) {
                $0.assumingMemoryBound(to: ReadJob.self).pointee.run(part: $1)
            }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if r > 0 { times.append(dt) }
        }
        times.sort()
        return Double(n * 4) / times[times.count / 2] / 1e9
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
    public static func run(_ cfg: BenchConfig, tokens: [Int32], threads: Int, group: (any GradientReducer)? = nil) -> BenchResult {
        let T = cfg.seq, B = cfg.batch, N = T * B
        let streams = group?.streams(of: B) ?? 0..<B, Br = streams.count
        let model = CharRNNModel(config: cfg.model, maxT: T, maxB: Br)
        Profiler.enabled = cfg.profile
        var rng = Xoshiro256(seed: cfg.seed)
        model.initialize(rng: &rng)
        let opt = Optimizer(kind: .rmsprop, count: model.layout.count)
        let state = RecurrentState(config: cfg.model, batch: Br)
        let x = IntStorage(count: T * Br), y = IntStorage(count: T * Br)
        var commSeconds = 0.0
        // data-parallel: this rank's squared chunk norm, then every rank's
        let squares = UnsafeMutablePointer<Double>.allocate(capacity: 1 + (group?.size ?? 1))
        defer { squares.deallocate() }
        let span = max(1, tokens.count / B - 1)
        var times: [Double] = []
        times.reserveCapacity(cfg.iters)
        var loss = 0.0
        var col = 0
        var allocStart: Int? = nil
        for it in 0..<(cfg.warmup + cfg.iters) {
            if it == cfg.warmup { Profiler.reset(); allocStart = MallocCounter.count }   // reset first: its first use allocates the static buffer
            // stream b reads tokens [b·span + col, …), time-major
            if col + T >= span { col = 0 }
            for t in 0..<T {
                for b in streams {
                    x.ptr[t * Br + b - streams.lowerBound] = tokens[b * span + col + t]
                    y.ptr[t * Br + b - streams.lowerBound] = tokens[b * span + col + t + 1]
                }
            }
            col += T
            let t0 = DispatchTime.now().uptimeNanoseconds
            loss = model.trainStep(x: x.ptr, y: y.ptr, T: T, B: Br, state: state, rng: &rng)
            // the training loop's update: the global norm, then (data-parallel) clip and step this
            // rank's chunk and exchange the chunks; the time in the exchanges is the communication
            let c0 = DispatchTime.now().uptimeNanoseconds
            let norm: Float
            if let group {
                // the first exchange meets the ranks after their set-up (uneven: the watchdog's start-up allowance)
                if it > 0 { group.enter(.step(iteration: it + 1)) }
                if Br != B { scal(n: model.layout.count, alpha: Float(Br) / Float(B), x: model.grads.ptr) }
                squares[0] = group.reduceScatterGradient(model.grads.ptr, count: model.layout.count)
                group.gather(squares, count: 1, into: squares + 1)
                norm = Float((1...group.size).reduce(0.0) { $0 + squares[$1] }.squareRoot())
            } else {
                norm = GradientClip.norm(model.grads.ptr, count: model.layout.count)
            }
            let c1 = DispatchTime.now().uptimeNanoseconds
            let probe = Profiler.start()
            opt.clipAndStep(params: model.params.ptr, grads: model.grads.ptr, norm: norm, mode: .norm, clip: 5, lr: 2e-3,
                            range: group?.chunk(of: model.layout.count))
            Profiler.stop(.optimizer, probe)
            if let group {
                let c2 = DispatchTime.now().uptimeNanoseconds
                group.allgatherChunks(model.params.ptr, count: model.layout.count)
                if it >= cfg.warmup { commSeconds += Double(c1 - c0 + DispatchTime.now().uptimeNanoseconds - c2) / 1e9 }
            }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if it >= cfg.warmup { times.append(dt) }
        }
        let trainAllocs = allocStart.flatMap { a in MallocCounter.count.map { $0 - a } }
        let phases = Profiler.enabled ? Profiler.snapshot() : [:]
        Profiler.enabled = false
        if let group { loss = group.gather([loss * Double(Br) / Double(B)]).reduce(0, +) }
        let trainRSS = peakRSSMB()
        let total = times.reduce(0, +)
        let tps = Double(N * times.count) / total
        let sorted = times.sorted()
        let flopsIter = trainFLOPsPerToken(cfg.model, tokens: tokens) * Double(N)

        // Sampling: temperature 0.8, K streams in one batched step, a model holding the trained weights.
        let vocab = Vocabulary(unit: .scalar, tokens: (0..<cfg.model.vocabSize).map(Bounds.syntheticCharacter))
        var figures: [SampleFigure] = []
        var sampleAllocs: Int? = nil
        for K in (group?.rank ?? 0) == 0 ? cfg.sampleStreams : [] {
            let sm = CharRNNModel(config: cfg.model, maxT: 1, maxB: K)
            sm.params.ptr.update(from: model.params.ptr, count: model.layout.count)
            sm.inferencePrecision = cfg.sampleWeights
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

        let weightBytes = NetworkSpec(cfg.model).forwardMACsPerToken() * (cfg.sampleWeights == .bf16 ? 2 : 4)
        let probe = readBandwidthGBs(bytes: Int(weightBytes))
        let oneStream = figures.first { $0.streams == 1 }?.tokensPerSec ?? 0
        let sgemmPeak = (group?.rank ?? 0) == 0 ? withOpenBLASThreads(threads) { sgemmGFLOPS() } : 0
        let achieved = flopsIter * Double(times.count) / total / 1e9
        var result = BenchResult(model: cfg.model.cell.rawValue, layers: cfg.model.layers, hidden: cfg.model.hidden, embed: cfg.model.embed,
                           vocab: cfg.model.vocabSize, seq: T, batch: B, threads: threads, params: cfg.model.parameterCount,
                           trainTokensPerSec: tps, msPerIterMin: sorted.first! * 1e3, msPerIterMedian: sorted[sorted.count / 2] * 1e3,
                           msPerIterMax: sorted.last! * 1e3, trainGFLOPPerIter: flopsIter / 1e9, achievedGFLOPS: achieved,
                           sgemmPeakGFLOPS: sgemmPeak, fractionOfPeak: achieved / (sgemmPeak * Double(group?.size ?? 1)),
                           sampleTokensPerSec: figures.first.map(\.perStream) ?? 0, sampleStreams: figures, peakRSSMB: trainRSS, loss: loss,
                           trainAllocations: trainAllocs, sampleAllocations: sampleAllocs,
                           sampleWeightBytesPerToken: weightBytes, sampleWeightGBs: weightBytes * oneStream / 1e9, readProbeGBs: probe,
                           profileMsPerIter: cfg.profile ? Dictionary(uniqueKeysWithValues: phases.map { ($0.key.name, $0.value * 1e3 / Double(times.count)) }) : nil)
        if let group {
            result.ranks = group.size
            result.communicationShare = commSeconds / total
            result.bytesPerIteration = group.bytesSentPerIteration(parameters: model.layout.count)
        }
        return result
    }
}

/// One core's slice of the read-bandwidth probe: a 16-lane sum, four accumulators (allocation-free pool job).
private struct ReadJob {
    let buf: UnsafePointer<Float>, n: Int, sums: UnsafeMutablePointer<Float>, parts: Int
    func run(part: Int) {
        let r = slice(n / vecWidth, part: part, of: parts)
        var a = Vec(), b = Vec(), c = Vec(), d = Vec()
        var i = r.lowerBound
        while i + 4 <= r.upperBound {
            let p = buf + i * vecWidth
            a += vload(p); b += vload(p + 16); c += vload(p + 32); d += vload(p + 48)
            i += 4
        }
        while i < r.upperBound { a += vload(buf + i * vecWidth); i += 1 }
        sums[part * 16] = (a + b + c + d).sum()
    }
}
