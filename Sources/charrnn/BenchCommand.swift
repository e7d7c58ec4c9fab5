// charrnn bench — times the real training step and sampler for a configuration.

import ArgumentParser
import CharRNN
import Foundation

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure training and sampling speed for a model configuration.",
        discussion: """
        Prints training tokens/s, ms/iteration (min/median/max after warm-up), achieved GFLOP/s (model \
        FLOPs by formula: 3 × 2 × forward multiply-adds of every weight matrix; a one-hot gather counts \
        zero), this machine's sgemm GFLOP/s on 2048³ with the same threads, their ratio (with --precision \
        bf16 also the bf16 kernel's rate on 2048³ and the ratio to it), sampling \
        tokens/s (temperature 0.8; --sample-streams K draws K samples in one batched step) and peak RSS. \
        Under mpirun -np N each process trains its block of the --batch streams and the update is \
        shared as in training: tokens/s is global, with the share of time in communication and the \
        bytes each process sends per iteration (rank 0 prints; it alone times sampling and sgemm, and \
        the ratio is over N times its sgemm figure).
        """)

    @Option(name: .customLong("model"), help: "Recurrent cell: lstm, gru or rnn.") var cell: CellKind = .lstm
    @Option(help: "Stacked layers.") var layers: Int = 2
    @Option(help: "Hidden units per layer.") var hidden: Int = 128
    @Option(help: "Embedding width (0 = one-hot).") var embed: Int = 0
    @Option(help: "Sequence length.") var seq: Int = 50
    @Option(help: "Batch size.") var batch: Int = 50
    @Option(help: "Vocabulary size of the synthetic tokens (ignored with --corpus).") var vocab: Int = 65
    @Option(help: ArgumentHelp("Time on this corpus's tokens instead of synthetic ones.", valueName: "FILE")) var corpus: String?
    @OptionGroup(title: "Output layer (as train's)") var softmax: SoftmaxOptions
    @Option(help: "Timed iterations.") var iters: Int = 50
    @Option(help: "Untimed warm-up iterations.") var warmup: Int = 5
    @OptionGroup var threads: ThreadsOption
    @Option(help: "Tokens to sample for the sampling figure.") var sampleLength: Int = 2000
    @Option(help: ArgumentHelp("Streams sampled together, one figure each, e.g. 1,8,32.", valueName: "LIST"))
    var sampleStreams: String = "1"
    @Option(help: "Precision of the sampler's packed weights: fp32 or bf16.")
    var weights: WeightPrecision = .fp32
    @Option(help: "Arithmetic of the timed training step's products, as `train --precision`: fp32 or bf16.")
    var precision: Precision = .fp32
    @Flag(help: "Break the training step down by phase (input projection, recurrent products, gate kernels, decoder + softmax, weight gradients, optimizer, bf16 weight pack, pool waits).")
    var profile = false
    @Flag(help: "Print one JSON object instead of text.") var json = false

    func validate() throws {
        if let p = ModelConfig(cell: cell, layers: layers, hidden: hidden, embed: embed, vocabSize: max(1, vocab)).problem { throw ValidationError(p) }
        guard let k = streamCounts, !k.isEmpty, k.allSatisfy({ $0 >= 1 && $0 <= 4096 }) else {
            throw ValidationError("--sample-streams must be a comma-separated list of counts from 1 to 4096, e.g. 1,8,32")
        }
        if vocab > Bounds.maxSyntheticVocab { throw ValidationError("--vocab must be at most \(Bounds.maxSyntheticVocab) (got \(vocab))") }
        if seq > Bounds.maxSeq || batch > Bounds.maxBatch || seq * batch > Bounds.maxTokensPerMinibatch {
            throw ValidationError("--seq and --batch must be at most \(Bounds.maxSeq) each and \(Bounds.maxTokensPerMinibatch) together")
        }
        if softmax.softmax == .adaptive && corpus == nil {
            throw ValidationError("--softmax adaptive needs --corpus (its cutoffs come from the corpus' character frequencies, as in train)")
        }
        if seq < 1 || batch < 1 || iters < 1 || warmup < 0 || vocab < 1 || sampleLength < 1 { throw ValidationError("--seq, --batch, --iters, --vocab and --sample-length must be positive") }
    }

    func run() throws { try reportingErrors(bench) }

    func bench() throws {
        let group = try MPIReducer.launchedByMPIRun()
        defer { group?.finish() }
        if let g = group, batch < g.size { throw DistributedError.tooFewStreams(batch: batch, ranks: g.size) }
        try threads.configure()
        var tokens: [Int32]
        var V = vocab
        var adaptive: AdaptiveSoftmaxConfig? = nil
        if let corpus {
            do {
                let (c, _, _) = try CorpusLoader.load(paths: [corpus], options: LoadOptions(), cacheDirectory: nil)
                V = c.vocabulary.count
                if case let .adaptive(manual) = softmax.choice {
                    // the cutoffs train would choose for this corpus (or the given ones)
                    let a = AdaptiveSoftmaxConfig.choose(counts: c.counts, hidden: hidden, manual: manual)
                    if let p = a.problem { throw BenchError(message: "--cutoffs: \(p)") }
                    adaptive = a
                }
                if V > Bounds.maxSyntheticVocab {
                    throw BenchError(message: "\(corpus): \(V) distinct characters; bench times at most \(Bounds.maxSyntheticVocab)")
                }
                tokens = (0..<c.count).map { c.token(at: $0) }
            }
        } else {
            tokens = Benchmark.syntheticTokens(count: max(batch * (seq + 1) * 4, 200_000), vocab: vocab, seed: 1)
        }
        guard tokens.count > batch * (seq + 2) else { throw BenchError(message: "\(corpus ?? "the synthetic corpus"): too small for --batch \(batch) --seq \(seq)") }
        var mc = ModelConfig(cell: cell, layers: layers, hidden: hidden, embed: embed, vocabSize: V)
        mc.adaptive = adaptive
        var cfg = BenchConfig(model: mc)
        cfg.seq = seq; cfg.batch = batch; cfg.iters = iters; cfg.warmup = warmup; cfg.sampleLength = sampleLength
        cfg.sampleStreams = streamCounts ?? [1]
        cfg.sampleWeights = weights
        cfg.precision = precision
        cfg.profile = profile
        let r = Benchmark.run(cfg, tokens: tokens, threads: WorkerPool.shared.width, reducer: group ?? LocalReducer())
        if (group?.rank ?? 0) != 0 { return }
        if json {
            let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
            try say(String(decoding: try enc.encode(r), as: UTF8.self))
            return
        }
        try say(String(format: "%@ %ld×%ld embed %ld vocab %ld, seq %ld batch %ld, %ld threads, %ld parameters",
                     r.model, r.layers, r.hidden, r.embed, r.vocab, r.seq, r.batch, r.threads, r.params))
        if let a = adaptive { try say("output: adaptive softmax, cutoffs \(a.cutoffs.map(String.init).joined(separator: ","))") }
        if let share = r.communicationShare, let bytes = r.bytesPerIteration {
            try say(String(format: "ranks:  %ld processes (mpirun) × %ld threads; tokens/s below is global; %.1f%% of iteration time in the exchanges, %.2f MB sent per process per iteration",
                         r.ranks, r.threads, 100 * share, Double(bytes) / 1e6))
        }
        if let k = r.bf16Kernel { try say("precision: bf16 training products (\(k) kernel), float32 sums") }
        try say(String(format: "train:  %.0f tokens/s   ms/iter min %.2f median %.2f max %.2f   (%ld iterations after %ld warm-up)",
                     r.trainTokensPerSec, r.msPerIterMin, r.msPerIterMedian, r.msPerIterMax, iters, warmup))
        let ceiling = r.ranks == 1 ? String(format: "%.1f GFLOP/s", r.sgemmPeakGFLOPS)
            : String(format: "%.1f GFLOP/s per process × %ld = %.1f", r.sgemmPeakGFLOPS, r.ranks, r.sgemmPeakGFLOPS * Double(r.ranks))
        try say(String(format: "FLOPs:  %.3f GFLOP/iter → %.1f GFLOP/s achieved; sgemm 2048³ %@; ratio %.0f%%",
                     r.trainGFLOPPerIter, r.achievedGFLOPS, ceiling, 100 * r.fractionOfPeak))
        if let peak = r.bf16PeakGFLOPS, let share = r.fractionOfBF16Peak, let k = r.bf16Kernel {
            try say(String(format: "bf16:   %@ 2048³ %.1f GFLOP/s per process; ratio %.0f%%", k, peak, 100 * share))
        }
        let weightsName = weights == .bf16 ? "bf16 (\(BF16Kernel.selected.label))" : weights.rawValue
        for f in r.sampleStreams {
            try say(String(format: "sample: %.0f tokens/s with %ld stream%@ (%.0f per stream, temperature 0.8, %@ weights)",
                         f.tokensPerSec, f.streams, f.streams == 1 ? "" : "s", f.perStream, weightsName))
        }
        if r.sampleWeightGBs > 0 {
            try say(String(format: "weights: %.1f MB per sampled token (%@) → %.1f GB/s at one stream; read probe over %.1f MB: %.1f GB/s (%.0f%%)",
                         r.sampleWeightBytesPerToken / 1e6, weights.rawValue, r.sampleWeightGBs, r.sampleWeightBytesPerToken / 1e6,
                         r.readProbeGBs, 100 * r.sampleWeightGBs / r.readProbeGBs))
        }
        if let prof = r.profileMsPerIter {
            let mean = 1e3 * Double(cfg.seq * cfg.batch) / r.trainTokensPerSec
            var covered = 0.0
            try say(String(format: "profile (ms per iteration, mean %.2f):", mean))
            func row(_ name: String, _ ms: Double) throws {
                try say("  " + name.padding(toLength: 34, withPad: " ", startingAt: 0) + String(format: "%8.2f  %5.1f%%", ms, 100 * ms / mean))
            }
            for ph in ProfilePhase.allCases {
                let ms = prof[ph.name] ?? 0
                covered += ms
                try row(ph.name, ms)
            }
            try row("other (packing, copies, dropout)", mean - covered)
        }
        try say(String(format: "memory: peak RSS %.1f MB (whole process, through training)", r.peakRSSMB))
        if let a = r.trainAllocations, let b = r.sampleAllocations {
            try say("heap:   \(a) allocations in \(iters) timed training iterations, \(b) in \(sampleLength) sampled tokens")
        } else {
            try say("heap:   allocation count n/a (run with LD_PRELOAD of scripts/malloc-count.c, see README)")
        }
    }

    /// --sample-streams as numbers (nil when one is not a number).
    var streamCounts: [Int]? {
        let parts = sampleStreams.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        return parts.contains(nil) ? nil : parts.compactMap { $0 }
    }
}

/// Why `bench` cannot time its corpus.
struct BenchError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
