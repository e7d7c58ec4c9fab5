// Large corpora and vocabularies (issue 4): vocabulary control, lossy decoding, the token cache, the
// loading progress bar, memory prediction and the softmax choice — as one option group for `train`.

import ArgumentParser
import CharRNN
import Foundation

/// Output layer of the model.
enum SoftmaxKind: String, CaseIterable, ExpressibleByArgument {
    case full, adaptive
}

struct ScaleOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Characters seen fewer than N times map to one unknown token (learned, never sampled).", valueName: "N"))
    var minCount: Int = 1
    @Option(help: ArgumentHelp("Keep at most N tokens, the unknown token included; the rarest characters map to it.", valueName: "N"))
    var maxVocab: Int?
    @Flag(help: "Replace invalid UTF-8 with U+FFFD (and report how many) instead of stopping.")
    var lossy = false
    @Option(help: "Output layer: full softmax, or adaptive (frequent characters in a head, rare ones in smaller tail clusters; training only, validation and sampling use the exact distribution).")
    var softmax: SoftmaxKind = .full
    @Option(help: ArgumentHelp("Adaptive softmax cutoffs as frequency ranks, e.g. 1000,3000 (default: chosen from the corpus).", valueName: "LIST"))
    var cutoffs: String?
    @Option(help: ArgumentHelp("Folder for the first-pass token cache (default: <out>/.cache).", valueName: "DIR"))
    var cacheDir: String?
    @Flag(help: "Do not read or write the token cache.")
    var noCache = false

    var manualCutoffs: [Int]? {
        cutoffs.map { $0.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
    }

    func validate() throws {
        var o = LoadOptions()
        o.minCount = minCount; o.maxVocab = maxVocab
        if let p = o.problem { throw ValidationError(p) }
        if let c = cutoffs {
            guard softmax == .adaptive else { throw ValidationError("--cutoffs needs --softmax adaptive") }
            let parts = c.split(separator: ",")
            guard !parts.isEmpty, let m = manualCutoffs, m.count == parts.count else {
                throw ValidationError("--cutoffs must be a comma-separated list of increasing ranks, e.g. 1000,3000")
            }
        }
    }

    func apply(to t: inout TrainConfig) {
        t.minCount = minCount > 1 ? minCount : nil
        t.maxVocab = maxVocab
        t.lossy = lossy ? true : nil
    }

    /// Sets the adaptive softmax of `config` from the corpus' frequencies when asked.
    func applySoftmax(to config: inout ModelConfig, corpus: Corpus) throws {
        guard softmax == .adaptive else { return }
        let a = AdaptiveSoftmaxConfig.choose(counts: corpus.counts, hidden: config.hidden, manual: manualCutoffs)
        if let p = a.problem { throw ValidationError(p) }
        config.adaptive = a
        let b = a.bounds, total = max(1, corpus.count)
        var covered = 0
        var parts: [String] = []
        for i in 0..<b.count {
            let lo = i == 0 ? 0 : b[i - 1], hi = b[i]
            let n = a.order[lo..<hi].reduce(0) { $0 + corpus.counts[$1] }
            covered += n
            parts.append(String(format: "%@ ranks %d..<%d (%.1f%% of tokens%@)", i == 0 ? "head" : "tail \(i - 1)", lo, hi,
                                100 * Double(n) / Double(total), i == 0 ? "" : ", width \(a.tailWidth(i - 1, hidden: config.hidden))"))
        }
        SetupLog.info("adaptive softmax: cutoffs \(a.cutoffs.map(String.init).joined(separator: ",")): " + parts.joined(separator: "; "))
    }

    /// Loads the corpus (through the cache unless disabled), with a progress bar on a terminal, after
    /// checking that the token buffer will fit in memory. Prints what it found.
    func load(paths: [String], options: LoadOptions, out: String, train: TrainConfig) throws -> (Corpus, [InputFile]) {
        let files = try CorpusLoader.inputs(paths)
        let total = files.reduce(0) { $0 + $1.size }
        try OutOfMemoryPrediction.check("decoding \(paths.joined(separator: " ")) (\(mb(total)))",
                                        needed: Self.predictedTokens(files) * 2 + CorpusLoader.chunkBytes,
                                        suggestion: "train on fewer or smaller files")
        let bar = LoadProgressBar()
        let t0 = Date()
        let (corpus, _, outcome) = try CorpusLoader.load(
            paths: paths, options: options,
            cacheDirectory: noCache ? nil : (cacheDir ?? (out as NSString).appendingPathComponent(".cache")),
            progress: { bar.update(done: $0, total: $1) })
        bar.finish()
        let secs = Date().timeIntervalSince(t0)
        let names = files.count > 3 ? "\(files.count) files from \(paths.joined(separator: " "))" : files.map(\.path).joined(separator: " ")
        switch outcome {
        case .hit(let p):
            SetupLog.info(String(format: "corpus %@ (%@): token cache %@ loaded in %.2fs", names, mb(total), p, secs))
        case .built(let p, let reason):
            if let reason { SetupLog.info("token cache \(p): \(reason); rebuilt") }
            SetupLog.info(String(format: "corpus %@ (%@): decoded in %.2fs (%.0f MB/s); token cache → %@",
                              names, mb(total), secs, Double(total) / 1_048_576 / max(secs, 1e-9), p))
        case .writeFailed(let p, let message):
            SetupLog.info("warning: could not write the token cache \(p): \(message)")
            SetupLog.info(String(format: "corpus %@ (%@): decoded in %.2fs", names, mb(total), secs))
        case .off:
            SetupLog.info(String(format: "corpus %@ (%@): decoded in %.2fs (%.0f MB/s)", names, mb(total), secs,
                              Double(total) / 1_048_576 / max(secs, 1e-9)))
        }
        let s = corpus.stats
        if s.replacements > 0 {
            SetupLog.info("--lossy: replaced \(s.replacements) invalid UTF-8 sequence\(s.replacements == 1 ? "" : "s") with U+FFFD")
        }
        var line = "\(corpus.count) tokens (\(options.unit.rawValue)), vocabulary \(corpus.vocabulary.count)"
        if corpus.vocabulary.unknownID != nil {
            line += String(format: " including the unknown token; coverage %.3f%% (%d of %d distinct characters fell out",
                           corpus.coveragePercent, s.droppedDistinct, s.distinctTokens)
            if !s.topDropped.isEmpty {
                line += "; most frequent: " + s.topDropped.map { "\($0.token.debugDescription) \($0.count)" }.joined(separator: ", ")
            }
            line += ")"
        } else {
            line += ", coverage 100%"
        }
        SetupLog.info(line)
        return (corpus, files)
    }

    /// Tokens expected from the byte count: the share of UTF-8 lead bytes in the first MiB of each file.
    static func predictedTokens(_ files: [InputFile]) -> Int {
        var tokens = 0
        for f in files {
            guard let h = FileHandle(forReadingAtPath: f.path) else { tokens += f.size; continue }
            let sample = h.readData(ofLength: 1 << 20)
            try? h.close()
            let leads = sample.reduce(0) { $0 + ($1 & 0xC0 == 0x80 ? 0 : 1) }
            tokens += sample.isEmpty ? f.size : Int(Double(f.size) * Double(leads) / Double(sample.count) * 1.05) + 1
        }
        return tokens
    }

    /// Refuses a run that will not fit, with the estimate and what to change.
    static func checkMemory(corpus: Corpus, config: ModelConfig, train: TrainConfig) throws {
        let e = MemoryEstimate(tokenCount: 0, bytesPerToken: corpus.bytesPerToken, config: config, train: train)
        SetupLog.info("memory estimate: token array \(mb(corpus.count * corpus.bytesPerToken)) (resident) + model \(e)")
        var hints: [String] = []
        if config.adaptive == nil && config.vocabSize > 2000 { hints.append("--softmax adaptive") }
        if config.vocabSize > 2000 { hints.append("--max-vocab \(max(2, config.vocabSize / 2))") }
        if train.batch > 1 { hints.append("--batch \(max(1, train.batch / 2))") }
        hints.append("a smaller --hidden")
        try OutOfMemoryPrediction.check("the model, optimizer and activations", needed: e.total,
                                        suggestion: "try " + hints.joined(separator: ", or "))
    }
}

func mb(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1_048_576) }

/// One updating line on stderr while a corpus is decoded: bytes, rate, ETA. Silent when stderr is not
/// a terminal or the load is quick.
final class LoadProgressBar {
    let tty = isatty(STDERR_FILENO) != 0
    let start = Date()
    var lastDraw = 0.0
    var drawn = false

    func update(done: Int, total: Int) {
        guard tty, total > 0 else { return }
        let elapsed = Date().timeIntervalSince(start)
        guard elapsed > 0.3, elapsed - lastDraw >= 0.1 || done == total else { return }
        lastDraw = elapsed
        let rate = Double(done) / elapsed
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let width = 30, filled = Int(Double(width) * Double(done) / Double(total))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let line = String(format: "\r\u{1B}[Kloading [%@] %@ / %@  %.0f MB/s  ETA %@", bar, mb(done), mb(total),
                          rate / 1_048_576, ProgressPrinter.duration(eta))
        FileHandle.standardError.write(Data(line.utf8))
        drawn = true
    }

    func finish() { if drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)); drawn = false } }
}
