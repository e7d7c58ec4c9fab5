// charrnn sample — stream generated text from a checkpoint to stdout (or K samples to files), through
// the library's GenerationLoop: prompt feeding, the start token, stream seeds, the draw and stop
// strings are the loop's, the same as `charrnn serve`'s. This file owns the flags, the prime's
// checks and warning, and where the text goes.

import ArgumentParser
import CharRNN
import Foundation

struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample",
        abstract: "Generate text from a trained checkpoint.",
        discussion: "Without --checkpoint, uses \(RunFolder.bestName) of the most recently modified run under checkpoints/.")

    @OptionGroup var source: CheckpointOptions
    // --temperature as the API and the page call it; the value is read unconditionally, so that
    // `--temp -1` is refused as a temperature rather than taken for a flag
    @Option(name: [.customLong("temp"), .customLong("temperature")], parsing: .unconditional,
            help: "Temperature: lower is more conservative, 0 = always the likeliest character.")
    var temperature: Float = 0.8
    @Option(help: "Number of characters (tokens) to generate after the prime text.")
    var length: Int = 2000
    @Option(help: ArgumentHelp("Text that starts the sample: it warms up the state and is printed first.", valueName: "TEXT"))
    var prime: String?
    @Option(help: "Random seed (default: random). The same seed gives the same text.")
    var seed: UInt64?
    @Option(help: ArgumentHelp("Draw only from the K likeliest characters (0 = all).", valueName: "K"))
    var topK: Int = 0
    @Option(help: ArgumentHelp("Nucleus sampling: draw from the smallest set holding probability P (1 = all).", valueName: "P"))
    var topP: Float = 1
    @Flag(help: "Always take the likeliest character (same as --temp 0).")
    var argmax = false
    @OptionGroup var threads: ThreadsOption
    @Option(help: ArgumentHelp("Draw K independent samples in one batched pass (sample i is the same whatever K is), printed one after another.", valueName: "K"))
    var numSamples: Int = 1
    @Option(help: ArgumentHelp("Write each sample to DIR/sample-<i>.txt instead of standard output.", valueName: "DIR"))
    var outputDir: String?
    @Option(help: "Precision of the weights the sampler streams: fp32, or bf16 (half the bytes per character, faster for large models; `charrnn eval --weights bf16` measures what it changes).")
    var weights: WeightPrecision = .fp32
    // serve's controls on the command line; used in the extension at the end of this file
    @Option(help: ArgumentHelp("End generation before the first occurrence of STRING (repeatable; as the API's stop).", valueName: "STRING"))
    var stop: [String] = []
    @Option(help: ArgumentHelp("Read the prime text from FILE (UTF-8) instead of --prime.", valueName: "FILE"))
    var primeFile: String?
    // log-probabilities and best-of; used in the extension "--logprobs and --best-of" below
    @Option(help: ArgumentHelp("After the text, print each generated character's log-probability and the model's N likeliest alternatives (0-5), as a table.", valueName: "N"))
    var logprobs: Int?
    @Option(help: ArgumentHelp("Draw K candidates in one batched pass and print the --num-samples with the highest mean log-probability per character (best first).", valueName: "K"))
    var bestOf: Int?
    // repetition penalties, logit bias and --beam (PenaltyOptions.swift)
    @OptionGroup(title: "Repetition, bias and beam search") var penalties: PenaltyOptions

    var options: SamplingOptions { penalties.applied(to: SamplingOptions(temperature: argmax ? 0 : temperature, topK: topK, topP: topP)) }

    func validate() throws {
        if let p = options.problem { throw ValidationError(p) }
        if length < 0 { throw ValidationError("--length must be ≥ 0") }
        if numSamples < 1 || numSamples > 4096 { throw ValidationError("--num-samples must be between 1 and 4096") }
        try validateServeControls()
        try validateScoring()
        try validatePenalties()
        if penalties.beam > 0 && (logprobs != nil || bestOf != nil) {
            throw ValidationError("--beam searches for the likeliest text; it cannot be combined with --logprobs or --best-of")
        }
    }

    func run() throws {
        guard SingleProcess.proceed("sample") else { return }
        try reportingErrors(logprobs != nil || bestOf != nil ? sampleScored : sample)
    }

    /// K streams of the generation loop (the one `charrnn serve` drives): sample 1 goes to standard
    /// output as it is drawn, the others are kept and printed after it (or all go to --output-dir).
    /// What both sampling paths start from: the checkpoint chosen and loaded, a loop of `streams`
    /// rows, the seed (given or drawn), and the prime as token ids and as text.
    private func prepare(streams: Int) throws -> (choice: CheckpointChoice, loaded: Checkpoint.Loaded, loop: GenerationLoop,
                                                  seed: UInt64, prompt: [Int32], primeText: String, options: SamplingOptions) {
        try threads.configure()
        let choice = try source.choose()
        let loaded = try Checkpoint.load(path: choice.path)
        let vocab = loaded.meta.vocabulary
        let options = try resolvedOptions(loaded)   // --logit-bias keys → tokens
        let loop = try GenerationLoop(checkpoint: loaded, maxStreams: streams, weights: weights)
        let seed = self.seed ?? UInt64.random(in: 1...UInt64.max)
        var prompt: [Int32] = [], primeText = ""
        if let prime = try effectivePrime(), !prime.isEmpty {
            let (known, unknown) = vocab.encode(prime, normalize: loaded.meta.train.normalize)
            if known.isEmpty && !unknown.isEmpty {
                throw SampleError.primeOutsideVocabulary(checkpoint: loaded.path, characters: unknown)
            }
            if !unknown.isEmpty {
                let what = vocab.unknownID == nil ? "were skipped" : "were read as the unknown token"
                printError("warning: --prime characters not in the vocabulary \(what): \(listedCharacters(unknown))")
            }
            prompt = known; primeText = prime
        }
        return (choice, loaded, loop, seed, prompt, primeText, options)
    }

    func sample() throws {
        let (choice, loaded, loop, seed, prompt, primeText, options) = try prepare(streams: numSamples)
        if penalties.beam > 0 { return try beamSample(loop, prompt: prompt, primeText: primeText) }
        let K = numSamples
        for i in 0..<K {
            loop.join(prompt: prompt, seed: seed, stream: i, options: options, maxTokens: length, stop: StopFilter(stops: stop))
        }
        // the samples kept in memory until the end (all of them with --output-dir, else all but the
        // first) must fit: refused before any work, like train's and eval's memory checks
        let keptCount = outputDir == nil ? K - 1 : K
        let (perSample, o1) = length.multipliedReportingOverflow(by: max(1, loop.longestToken))
        let (keptBytes, o2) = perSample.multipliedReportingOverflow(by: keptCount)
        try OutOfMemoryPrediction.check("keeping \(keptCount) sample\(keptCount == 1 ? "" : "s") of \(length) tokens",
                                        needed: o1 || o2 ? Int.max : keptBytes,
                                        suggestion: "use a smaller --length or --num-samples")
        // the output folder is made (or refused) before generating, not after
        if let outputDir {
            do { try FileManager.default.createDirectory(atPath: outputDir, withIntermediateDirectories: true) } catch {
                throw OutputFolderError(path: outputDir, reason: (error as NSError).localizedDescription)
            }
        }
        printError(Self.announcement(choice, iteration: loaded.meta.progress.iteration, seed: seed))
        // sample 1 streams to stdout (per token on a terminal), after the prime text
        let out = Output.standard, live = outputDir == nil
        if live && K > 1 { try say(Self.separator(1, of: K)) }
        if live { try out.write(primeText) }
        var kept = [[UInt8]](repeating: [], count: K)
        for i in (live ? 1 : 0)..<K { kept[i].reserveCapacity(min(length, 1 << 20)) }   // grows past 1 MiB
        try loop.runToEnd { i, text in
            if i == 0 && live { try out.write(bytes: text) } else { kept[i].append(contentsOf: text) }
        }
        if let outputDir {
            let width = String(K).count
            for i in 0..<K {
                let name = "sample-" + String(repeating: "0", count: width - String(i + 1).count) + String(i + 1) + ".txt"
                let file = (outputDir as NSString).appendingPathComponent(name)
                try AtomicFile.write(Array(primeText.utf8) + kept[i], to: file)
            }
            printError("wrote \(K) samples to \(outputDir)/sample-*.txt")
            return
        }
        if out.tty { try out.write("\n") }
        try out.flush()
        guard K > 1 else { return }
        for i in 1..<K {
            try out.write("\n\n" + Self.separator(i + 1, of: K) + "\n")
            try out.write(bytes: Array(primeText.utf8) + kept[i])
        }
        try out.write("\n")
        try out.flush()
    }

    /// The line between samples on standard output.
    static func separator(_ i: Int, of k: Int) -> String { "──── sample \(i) of \(k) ────" }
}

/// Why `sample` cannot run with its flags and checkpoint.
enum SampleError: Error, CustomStringConvertible {
    /// Not one character of --prime is in the vocabulary of `checkpoint` (the first 20 are listed, debug-quoted).
    case primeOutsideVocabulary(checkpoint: String, characters: [String])
    /// --prime-file cannot be used.
    case primeFile(path: String, problem: String)

    var description: String {
        switch self {
        case let .primeOutsideVocabulary(ckpt, chars):
            return "\(ckpt): --prime has no character in the model's vocabulary: \(listedCharacters(chars))"
        case let .primeFile(path, problem):
            return "\(path): \(problem)"
        }
    }
}

/// --output-dir cannot be made.
struct OutputFolderError: Error, CustomStringConvertible {
    let path: String, reason: String
    var description: String { "\(path): cannot create the output folder: \(reason)" }
}

// MARK: - --stop and --prime-file (the controls `charrnn serve` has)

extension SampleCommand {
    func validateServeControls() throws {
        if prime != nil && primeFile != nil { throw ValidationError("give --prime or --prime-file, not both") }
        if let p = RawArguments.invalidUTF8(in: ["--prime", "--stop"]) { throw ValidationError(p) }
        if stop.contains("") { throw ValidationError("--stop must not be empty") }
    }

    /// --prime, or the text of --prime-file.
    func effectivePrime() throws -> String? {
        guard let primeFile else { return prime }
        // read(2) to the end, so that pipes and /dev/stdin work; a failure names the system's reason
        let fd = open(primeFile, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw SampleError.primeFile(path: primeFile, problem: "cannot read the --prime-file: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let limit = 64 << 20
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 {
                throw SampleError.primeFile(path: primeFile, problem: "cannot read the --prime-file: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            data += chunk[0..<n]
            if data.count > limit { throw SampleError.primeFile(path: primeFile, problem: "the --prime-file is longer than 64 MiB") }
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw SampleError.primeFile(path: primeFile, problem: "--prime-file is not valid UTF-8")
        }
        return text
    }
}

// MARK: - --logprobs and --best-of
//
// Both need every candidate whole before anything is printed (best-of picks among them; the table
// follows the text), so this path does not stream: the K = --best-of (else --num-samples) rows of
// the generation loop run to their ends with log-probabilities recorded (the model's, before
// temperature and truncation: `TokenLogprob`), then the chosen samples are printed, best first,
// each followed by its table when --logprobs is given. best-of's rule is the API's (`BestOf`).

extension SampleCommand {
    func validateScoring() throws {
        if let n = logprobs, !(0...TokenLogprob.maxTop).contains(n) { throw ValidationError("--logprobs must be between 0 and \(TokenLogprob.maxTop)") }
        if let k = bestOf {
            if k < 1 || k > 4096 { throw ValidationError("--best-of must be between 1 and 4096") }
            if k < numSamples { throw ValidationError("--best-of (\(k)) must be at least --num-samples (\(numSamples))") }
        }
        if outputDir != nil && (logprobs != nil || bestOf != nil) {
            throw ValidationError("--logprobs and --best-of print to standard output; they cannot be used with --output-dir")
        }
    }

    func sampleScored() throws {
        let K = bestOf ?? numSamples, n = numSamples
        let (choice, loaded, loop, seed, prompt, primeText, options) = try prepare(streams: K)
        let vocab = loaded.meta.vocabulary
        // every candidate with its entries is kept: text bytes plus one entry per token
        let perToken = max(1, loop.longestToken) + MemoryLayout<TokenLogprob>.stride
        let (perSample, o1) = length.multipliedReportingOverflow(by: perToken)
        let (keptBytes, o2) = perSample.multipliedReportingOverflow(by: K)
        try OutOfMemoryPrediction.check("keeping \(K) sample\(K == 1 ? "" : "s") of \(length) tokens with their log-probabilities",
                                        needed: o1 || o2 ? Int.max : keptBytes,
                                        suggestion: "use a smaller --length, --num-samples or --best-of")
        for i in 0..<K {
            loop.join(prompt: prompt, seed: seed, stream: i, options: options, maxTokens: length, stop: StopFilter(stops: stop),
                      logprobs: logprobs ?? 0)
        }
        printError(Self.announcement(choice, iteration: loaded.meta.progress.iteration, seed: seed))
        var text = [[UInt8]](repeating: [], count: K), entries = [[TokenLogprob]](repeating: [], count: K)
        loop.runToEnd { i, t, e in
            text[i].append(contentsOf: t); entries[i].append(contentsOf: e)
        }
        let chosen = K > n ? BestOf.pick(n, of: entries.map { BestOf.meanLogprob($0, vocabulary: vocab) }) : Array(0..<n)
        let out = Output.standard
        for (k, i) in chosen.enumerated() {
            if n > 1 { try out.write((k > 0 ? "\n\n" : "") + Self.separator(k + 1, of: n) + "\n") }
            try out.write(bytes: Array(primeText.utf8) + text[i])
            if let top = logprobs {
                try out.write("\n\n" + Self.logprobTable(entries[i], vocabulary: vocab, top: top,
                                                         title: K > n ? "sample \(i + 1) of \(K) candidates" : nil))
            }
        }
        try out.write("\n")
        try out.flush()
    }

    /// The table of `--logprobs`: per generated token its offset in characters (of the generated
    /// text), the token (control characters escaped), its log p and p, and the N likeliest
    /// alternatives as `token log p`; a summary line with the mean log p per character.
    static func logprobTable(_ entries: [TokenLogprob], vocabulary: Vocabulary, top: Int, title: String?) -> String {
        var lines: [String] = []
        var sum = 0.0, chars = 0
        lines.append("──── log-probabilities" + (title.map { " (\($0))" } ?? "") + " ────")
        lines.append("offset  token     log p        p" + (top > 0 ? "  alternatives (log p)" : ""))
        for e in entries {
            let t = vocabulary.text(of: e)
            sum += Double(e.logprob); chars += t.unicodeScalars.count
            var line = pad(String(e.offset), 6) + "  " + pad(escapedToken(t), 6) + "  " + pad(fixed(e.logprob), 8) + "  " + pad(fixed(exp(e.logprob)), 7)
            if top > 0 {
                line += "  " + e.top.map { escapedToken(vocabulary.tokens[$0.token]) + " " + fixed($0.logprob) }.joined(separator: "  ")
            }
            lines.append(line)
        }
        let mean = chars == 0 ? "n/a" : fixed(Float(sum / Double(chars)))
        lines.append("\(entries.count) tokens, \(chars) characters, mean log p per character \(mean)")
        return lines.joined(separator: "\n")
    }

    /// A token quoted, control characters, quotes and backslashes escaped (`"\n"`, `"\u{7F}"`).
    static func escapedToken(_ s: String) -> String {
        var o = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\n": o += "\\n"
            case "\r": o += "\\r"
            case "\t": o += "\\t"
            case "\"": o += "\\\""
            case "\\": o += "\\\\"
            default:
                if u.properties.generalCategory == .control || u.properties.generalCategory == .format {
                    o += "\\u{" + String(u.value, radix: 16, uppercase: true) + "}"
                } else { o.unicodeScalars.append(u) }
            }
        }
        return o + "\""
    }

    private static func fixed(_ x: Float) -> String { x.isFinite ? String(format: "%.4f", Double(x)) : (x < 0 ? "-inf" : String(describing: x)) }
    private static func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
}
