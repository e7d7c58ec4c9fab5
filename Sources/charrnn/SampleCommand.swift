// charrnn sample — stream generated text from a checkpoint to stdout.

import ArgumentParser
import CharRNN
import Foundation

struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample",
        abstract: "Generate text from a trained checkpoint.",
        discussion: "Without --checkpoint, uses \(RunFolder.bestName) of the most recently modified run under checkpoints/.")

    @OptionGroup var source: CheckpointOptions
    @Option(name: .customLong("temp"), help: "Temperature: lower is more conservative, 0 = always the likeliest character.")
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

    var options: SamplingOptions { SamplingOptions(temperature: argmax ? 0 : temperature, topK: topK, topP: topP) }

    func validate() throws {
        if let p = options.problem { throw ValidationError(p) }
        if length < 0 { throw ValidationError("--length must be ≥ 0") }
    }

    func run() throws { try reportingErrors(sample) }

    func sample() throws {
        threads.configure()
        let path = try source.resolve()
        let loaded = try Checkpoint.load(path: path)
        let sampler = try Sampler(checkpoint: loaded, options: options, seed: seed ?? UInt64.random(in: 1...UInt64.max))
        let out = TokenWriter(vocabulary: loaded.meta.vocabulary)
        if let prime, !prime.isEmpty {
            let (known, unknownOnly) = loaded.meta.vocabulary.encode(prime, normalize: loaded.meta.train.normalize)
            if known.isEmpty && !unknownOnly.isEmpty {
                throw SampleError.primeOutsideVocabulary(checkpoint: loaded.path, characters: unknownOnly.map { $0.debugDescription })
            }
            let unknown = sampler.prime(prime, normalize: loaded.meta.train.normalize)
            if !unknown.isEmpty {
                let what = loaded.meta.vocabulary.unknownID == nil ? "were skipped" : "were read as the unknown token"
                printError("warning: --prime characters not in the vocabulary \(what): \(unknown.map { $0.debugDescription }.joined(separator: " "))")
            }
            out.write(prime)
        }
        for _ in 0..<length { out.write(token: sampler.next()) }
        out.finish()
    }
}

/// Why `sample` cannot run with its flags and checkpoint.
enum SampleError: Error, CustomStringConvertible {
    /// Not one character of --prime is in the vocabulary of `checkpoint`; `characters` are debug-quoted.
    case primeOutsideVocabulary(checkpoint: String, characters: [String])

    var description: String {
        switch self {
        case let .primeOutsideVocabulary(ckpt, chars):
            return "\(ckpt): --prime has no character in the model's vocabulary: \(chars.joined(separator: " "))"
        }
    }
}

/// Writes tokens' UTF-8 to stdout; flushes per token on a terminal, buffered otherwise.
final class TokenWriter {
    let bytes: [[UInt8]]
    let tty = isatty(STDOUT_FILENO) != 0
    init(vocabulary: Vocabulary) { bytes = vocabulary.tokens.map { Array($0.utf8) } }
    func write(token: Int) {
        bytes[token].withUnsafeBufferPointer { _ = fwrite($0.baseAddress, 1, $0.count, stdout) }
        if tty { fflush(stdout) }
    }
    func write(_ s: String) { fputs(s, stdout); if tty { fflush(stdout) } }
    func finish() {
        if tty { fputs("\n", stdout) }
        fflush(stdout)
    }
}
