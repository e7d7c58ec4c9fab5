// Bench/Benchmark.swift — times the training step `train` runs (`TrainingStep`, the same object and
// call) and the generation loop `sample` and `serve` run (`charrnn bench`).
//
// Model FLOPs by formula (stated in README), from the network's spec: forward multiply-adds per token
// are every weight matrix used — G·D (input projection, 0 for a one-hot gather) + G·H (recurrent) per
// layer, V·H for the decoder (an adaptive softmax: its head, and each tail weighted by the share of
// the timed tokens that fall in it) — and training counts 3 × 2 × that (forward, plus two GEMMs per
// matrix in backward). Sampling is timed for each count of streams in `sampleStreams`.
// Data-parallel (under mpirun, an `MPIReducer`): each rank trains its block of the B streams and the
// gradients are summed by the step as in `Trainer`; tokens/s is global (T·B per iteration), the
// communication share is the time in the exchanges over the step time, and rank 0 alone times the
// sampler and sgemm afterwards (the other ranks skip them).

import Foundation

package struct BenchConfig: Sendable {
    package var model: ModelConfig
    package var seq = 50
    package var batch = 50
    package var iters = 50
    package var warmup = 5
    package var sampleLength = 2000
    /// Streams sampled together for the sampling figures (one figure each).
    package var sampleStreams = [1]
    /// Precision of the sampler's packed weights.
    package var sampleWeights: WeightPrecision = .fp32
    /// Arithmetic of the timed training step's products (`train --precision`).
    package var precision: Precision = .fp32
    /// Time the phases of the training step (the probes cost about 1%).
    package var profile = false
    package var seed: UInt64 = 123
    package init(model: ModelConfig) { self.model = model }
}

package struct BenchResult: Sendable, Codable {
    package var model: String, layers: Int, hidden: Int, embed: Int, vocab: Int, seq: Int, batch: Int, threads: Int
    package var params: Int
    package var trainTokensPerSec: Double
    package var msPerIterMin: Double, msPerIterMedian: Double, msPerIterMax: Double
    package var trainGFLOPPerIter: Double
    package var achievedGFLOPS: Double
    /// sgemm 2048³ with this process's threads (data-parallel: rank 0's, measured while the others
    /// wait); `fractionOfPeak` is the achieved rate over the job's ceiling, ranks × that.
    package var sgemmPeakGFLOPS: Double
    package var fractionOfPeak: Double
    /// Sampling tokens/s of one stream (the first count of `sampleStreams`).
    package var sampleTokensPerSec: Double
    /// Per count of streams: tokens/s summed over the streams.
    package var sampleStreams: [SampleFigure]
    package var peakRSSMB: Double
    package var loss: Double
    /// Heap allocations inside the timed training iterations and the sampling loop; nil unless the
    /// process runs with scripts/malloc-count.c preloaded.
    package var trainAllocations: Int?
    package var sampleAllocations: Int?
    /// Bytes of packed weights one sampling step streams per stream at batch 1 (matrices only),
    /// and the rate that gives at the one-stream sampling speed, against a read-bandwidth probe of
    /// the same number of bytes on the same cores in the same run (GB/s = 1e9 bytes/s).
    package var sampleWeightBytesPerToken: Double
    package var sampleWeightGBs: Double
    package var readProbeGBs: Double
    /// With `BenchConfig.profile`: ms per timed iteration spent in each phase (Tensor/Profile.swift).
    package var profileMsPerIter: [String: Double]?
    /// Data-parallel: processes, share of iteration time spent summing gradients, bytes each rank sends per iteration.
    package var ranks: Int = 1
    package var communicationShare: Double? = nil
    package var bytesPerIteration: Int? = nil
    /// bf16 training: the bf16 kernel that ran (`BF16GEMMKernel.label`); nil in fp32.
    package var bf16Kernel: String? = nil
    /// bf16 training: that kernel on 2048³ with this process's threads (rank 0's), the bf16
    /// counterpart of `sgemmPeakGFLOPS`, and the achieved rate over ranks × it; nil in fp32.
    package var bf16PeakGFLOPS: Double? = nil
    package var fractionOfBF16Peak: Double? = nil
}

/// Sampling speed with K streams in one batched step.
package struct SampleFigure: Sendable, Codable {
    package var streams: Int
    package var tokensPerSec: Double
    package var perStream: Double { tokensPerSec / Double(streams) }
}

package enum Benchmark {
    /// Forward multiply-adds per token (one-hot gather and embedding lookups count zero).
    /// Training FLOPs per token = 3 × 2 × forward multiply-adds (NetworkSpec), an adaptive softmax's
    /// tails weighted by the share of `tokens` whose id falls in each.
    package static func trainFLOPsPerToken(_ c: ModelConfig, tokens: [Int32] = []) -> Double {
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

    /// Token ids for the benchmark: a corpus, or uniform random ids over `vocab`.
    package static func syntheticTokens(count: Int, vocab: Int, seed: UInt64) -> [Int32] {
        var rng = Xoshiro256(seed: seed)
        return (0..<count).map { _ in Int32(rng.next() % UInt64(vocab)) }
    }

    /// What the timed training iterations gave.
    struct TrainingTimes {
        /// Seconds of each timed step, and of those in the exchanges between processes.
        var times: [Double], communicationSeconds: Double
        /// The last step's global loss.
        var loss: Double
        var allocations: Int?
        var model: CharRNNModel
    }

    /// `cfg.warmup + cfg.iters` training steps (`TrainingStep`, as `Trainer` runs it with train's
    /// defaults: RMSprop, lr 2e-3, norm clipping at 5) on minibatches cut in order from `tokens`;
    /// the last `cfg.iters` are timed.
    static func timeTraining(_ cfg: BenchConfig, tokens: [Int32], reducer: any GradientReducer) -> TrainingTimes {
        let T = cfg.seq, B = cfg.batch
        let streams = reducer.streams(of: B)
        let model = CharRNNModel(config: cfg.model, maxT: T, maxB: streams.count)
        Profiler.enabled = cfg.profile
        var rng = Xoshiro256(seed: cfg.seed)
        model.initialize(rng: &rng)
        let state = RecurrentState(config: cfg.model, batch: streams.count)
        // the training step itself, with train's defaults: RMSprop, lr 2e-3, clipping the norm at 5, cold starts
        let step = TrainingStep(model: model, optimizer: Optimizer(kind: .rmsprop, count: model.layout.count), reducer: reducer,
                                batch: B, seq: T, precision: cfg.precision, coldStartEvery: TrainConfig.defaultColdStartEvery)
        // the ranks meet once after their set-up (uneven work: the watchdog's start-up allowance)
        _ = reducer.gather([0])
        var commSeconds = 0.0
        let span = max(1, tokens.count / B - 1)
        var times: [Double] = []
        times.reserveCapacity(cfg.iters)
        var loss = 0.0
        var col = 0
        var allocStart: Int? = nil
        for it in 0..<(cfg.warmup + cfg.iters) {
            if it == cfg.warmup { Profiler.reset(); allocStart = MallocCounter.count }   // reset first: its first use allocates the static buffer
            if col + T >= span { col = 0 }
            let r = step.run(iteration: it + 1, state: state, rng: &rng, lr: 2e-3, clipMode: .norm, clip: 5, stopRequested: { false }) { x, y, streams in
                // stream b reads tokens [b·span + col, …), time-major
                let Br = streams.count
                for t in 0..<T {
                    for b in streams {
                        x[t * Br + b - streams.lowerBound] = tokens[b * span + col + t]
                        y[t * Br + b - streams.lowerBound] = tokens[b * span + col + t + 1]
                    }
                }
            }
            col += T
            loss = r.loss
            if it >= cfg.warmup { times.append(r.seconds); commSeconds += r.communicationSeconds }
        }
        let allocs = allocStart.flatMap { a in MallocCounter.count.map { $0 - a } }
        return TrainingTimes(times: times, communicationSeconds: commSeconds, loss: loss, allocations: allocs, model: model)
    }

    /// Runs training iterations on `tokens` (time-major minibatches cut from it in order), then the
    /// sampler, then sgemm 2048³ with OpenBLAS's own threads, and reports speed. Peak RSS is read
    /// right after training, before the sampler and the sgemm buffers exist.
    package static func run(_ cfg: BenchConfig, tokens: [Int32], threads: Int, reducer: any GradientReducer = LocalReducer()) -> BenchResult {
        let T = cfg.seq, B = cfg.batch, N = T * B
        let trained = timeTraining(cfg, tokens: tokens, reducer: reducer)
        let (times, loss, model, commSeconds) = (trained.times, trained.loss, trained.model, trained.communicationSeconds)
        let trainAllocs = trained.allocations
        let phases = Profiler.enabled ? Profiler.snapshot() : [:]
        Profiler.enabled = false
        let trainRSS = peakRSSMB()
        let total = times.reduce(0, +)
        let tps = Double(N * times.count) / total
        let sorted = times.sorted()
        let flopsIter = trainFLOPsPerToken(cfg.model, tokens: tokens) * Double(N)

        // Sampling: what `charrnn sample --num-samples K` runs (GenerationLoop), temperature 0.8, K
        // streams in one batched step, a model holding the trained weights.
        let vocab = Vocabulary(unit: .scalar, tokens: (0..<cfg.model.vocabSize).map(Bounds.syntheticCharacter))
        var figures: [SampleFigure] = []
        var sampleAllocs: Int? = nil
        for K in reducer.rank == 0 ? cfg.sampleStreams : [] {
            let sm = CharRNNModel(config: cfg.model, maxT: 1, maxB: K)
            sm.params.ptr.update(from: model.params.ptr, count: model.layout.count)
            sm.inferencePrecision = cfg.sampleWeights
            let loop = GenerationLoop(model: sm, vocabulary: vocab, maxStreams: K)
            for i in 0..<K {
                loop.join(prompt: [], seed: cfg.seed, stream: i, options: SamplingOptions(temperature: 0.8),
                          maxTokens: cfg.sampleLength + 2, stop: StopFilter())
            }
            loop.advance(); loop.step()                                  // the first draw (warm-up)
            let sampleAllocStart = MallocCounter.count
            let s0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<cfg.sampleLength { loop.advance(); loop.step() }
            let sampleSecs = Double(DispatchTime.now().uptimeNanoseconds - s0) / 1e9
            if figures.isEmpty { sampleAllocs = sampleAllocStart.flatMap { a in MallocCounter.count.map { $0 - a } } }
            figures.append(SampleFigure(streams: K, tokensPerSec: Double(cfg.sampleLength * K) / sampleSecs))
        }

        let weightBytes = NetworkSpec(cfg.model).forwardMACsPerToken() * (cfg.sampleWeights == .bf16 ? 2 : 4)
        let probe = readBandwidthGBs(bytes: Int(weightBytes))
        let oneStream = figures.first { $0.streams == 1 }?.tokensPerSec ?? 0
        let sgemmPeak = reducer.rank == 0 ? withOpenBLASThreads(threads) { sgemmGFLOPS() } : 0
        let achieved = flopsIter * Double(times.count) / total / 1e9
        var result = BenchResult(model: cfg.model.cell.rawValue, layers: cfg.model.layers, hidden: cfg.model.hidden, embed: cfg.model.embed,
                           vocab: cfg.model.vocabSize, seq: T, batch: B, threads: threads, params: cfg.model.parameterCount,
                           trainTokensPerSec: tps, msPerIterMin: sorted.first! * 1e3, msPerIterMedian: sorted[sorted.count / 2] * 1e3,
                           msPerIterMax: sorted.last! * 1e3, trainGFLOPPerIter: flopsIter / 1e9, achievedGFLOPS: achieved,
                           sgemmPeakGFLOPS: sgemmPeak, fractionOfPeak: achieved / (sgemmPeak * Double(reducer.size)),
                           sampleTokensPerSec: figures.first.map(\.perStream) ?? 0, sampleStreams: figures, peakRSSMB: trainRSS, loss: loss,
                           trainAllocations: trainAllocs, sampleAllocations: sampleAllocs,
                           sampleWeightBytesPerToken: weightBytes, sampleWeightGBs: weightBytes * oneStream / 1e9, readProbeGBs: probe,
                           profileMsPerIter: cfg.profile ? Dictionary(uniqueKeysWithValues: phases.map { ($0.key.name, $0.value * 1e3 / Double(times.count)) }) : nil)
        if cfg.precision == .bf16 {
            result.bf16Kernel = BF16GEMMKernel.selected.label
            if reducer.rank == 0 {
                let peak = bf16GemmPeakGFLOPS()
                result.bf16PeakGFLOPS = peak
                result.fractionOfBF16Peak = achieved / (peak * Double(reducer.size))
            }
        }
        if reducer.size > 1 {
            result.ranks = reducer.size
            result.communicationShare = commSeconds / total
            result.bytesPerIteration = reducer.bytesSentPerIteration(parameters: model.layout.count)
        }
        return result
    }
}
