// charrnn eval — loss, bits per character and perplexity of a checkpoint on text files.

import ArgumentParser
import CharRNN
import Foundation

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Score text files with a checkpoint: loss (nats/token), bits per character, perplexity.",
        discussion: """
        Each file is tokenized with the checkpoint's vocabulary; characters it lacks are counted as \
        unknown and never scored: fed as its unknown token when it has one (--min-count/--max-vocab), \
        else skipped. Every remaining known token but the first is predicted once from the ones \
        before it ("scored"); the loss is their mean. The \
        tokens are laid out as --batch parallel streams like training's validation (state zero at each \
        stream's start, carried across minibatches of --seq steps); the remainder continues the last \
        stream. --batch 1 is one exact sequential pass.
        """)

    @Argument(help: ArgumentHelp("UTF-8 text files to score.", valueName: "FILE"))
    var files: [String]
    @OptionGroup var source: CheckpointOptions
    @Option(help: "Parallel streams per minibatch.")
    var batch: Int = 50
    @Option(help: "Steps per minibatch.")
    var seq: Int = 50
    @OptionGroup var threads: ThreadsOption
    @Flag(help: "Print one JSON object per file instead of text.")
    var json = false
    @Option(help: "With bf16: also score through the sampler's inference step with float32 and with bfloat16 weights, and report the change in bits/char and the mean KL divergence of the next-character distribution.")
    var weights: WeightPrecision = .fp32

    func validate() throws {
        if batch < 1 || seq < 1 { throw ValidationError("--batch and --seq must be at least 1") }
        // no upper bound: the evaluator clamps both to what each text needs before allocating
    }

    func run() throws {
        guard SingleProcess.proceed("eval") else { return }
        try reportingErrors(evaluate)
    }

    /// How the unknown characters were treated, when there were any.
    func unknownNote(_ r: EvalResult, _ evaluator: Evaluator) -> String {
        guard r.unknown > 0 else { return "" }
        return evaluator.vocabulary.unknownID != nil ? " (fed as the unknown token, not scored)" : " (skipped, not scored)"
    }

    func evaluate() throws {
        try threads.configure()
        let choice = try source.choose()
        let loaded = try Checkpoint.load(path: choice.path)
        let evaluator = try Evaluator(checkpoint: loaded, batch: batch, seq: seq)
        if !json { try say(choice.described(iteration: loaded.meta.progress.iteration)) }
        for f in files {
            let r = try evaluator.evaluate(path: f)
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
                try say(String(decoding: try enc.encode(r), as: UTF8.self))
            } else if r.scored == 0 {
                try say("\(f): \(r.tokens) tokens, \(r.unknown) unknown\(unknownNote(r, evaluator)): nothing to score (needs 2 known tokens)")
            } else {
                try say(String(format: "%@: %ld tokens, %ld unknown%@, %ld scored, loss %.4f nats/token, %.4f bits/char, perplexity %.3f",
                             f, r.tokens, r.unknown, unknownNote(r, evaluator), r.scored, r.loss, r.bitsPerToken, r.perplexity))
            }
            if weights != .fp32 {
                let w = try evaluator.compareWeights(path: f, precision: weights)
                if json {
                    let enc = JSONEncoder()
                    enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                    enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
                    try say(String(decoding: try enc.encode(w), as: UTF8.self))
                } else {
                    try say(String(format: "%@: inference step, %ld predictions: fp32 %.6f nats/token, %@ %.6f (%+.6f bits/char), mean KL(fp32 ‖ %@) %.3e nats",
                                   f, w.scored, w.lossFP32, w.precision == .bf16 ? "bf16 (\(BF16Kernel.selected.label))" : w.precision.rawValue,
                                   w.loss, w.bitsPerTokenChange, w.precision.rawValue, w.meanKL))
                }
            }
            try Output.standard.flush()
        }
    }
}
