// `sample`'s repetition penalties, logit bias and beam search: the flags (the API's
// frequency_penalty, presence_penalty, repetition_penalty, repeat_window and logit_bias, with the
// same rules), the --logit-bias CHARACTER=BIAS parsing, and `sample --beam W`. The library's
// Sample/Penalties.swift and Sample/BeamSearch.swift do the work.

import ArgumentParser
import CharRNN
import Foundation

struct PenaltyOptions: ParsableArguments {
    // values read unconditionally, so that `--frequency-penalty -0.5` and `--logit-bias '-=2'` are values
    @Option(parsing: .unconditional, help: ArgumentHelp(
        "Subtract F × (times generated so far) from each character's log-probability, -2…2 (OpenAI's frequency_penalty; 0 = off).", valueName: "F"))
    var frequencyPenalty: Float = 0
    @Option(parsing: .unconditional, help: ArgumentHelp(
        "Subtract P from the log-probability of every character generated so far, -2…2 (OpenAI's presence_penalty; 0 = off).", valueName: "P"))
    var presencePenalty: Float = 0
    @Option(parsing: .unconditional, help: ArgumentHelp(
        "Penalise the characters among the last --repeat-window generated: their log-probability is multiplied by R (p becomes p^R; CTRL/llama.cpp's repetition penalty), 0 < R ≤ 100 (1 = off).", valueName: "R"))
    var repetitionPenalty: Float = 1
    @Option(help: ArgumentHelp("The last N generated characters --repetition-penalty looks at (0 = all).", valueName: "N"))
    var repeatWindow: Int = 0
    @Option(parsing: .unconditionalSingleValue, help: ArgumentHelp(
        "Add BIAS (-100…100) to a character's log-probability; -100 bans it (repeatable). CHARACTER is the character itself or its token id; the last '=' separates it from BIAS.", valueName: "CHARACTER=BIAS"))
    var logitBias: [String] = []
    @Option(help: ArgumentHelp(
        "Beam search with W beams instead of sampling: the continuation of the highest mean log-probability per character (deterministic; 1 = --temp 0).", valueName: "W"))
    var beam: Int = 0

    /// The --logit-bias pairs, split at the last '='; nil entries are malformed.
    var biasPairs: [(key: String, bias: Float)?] {
        logitBias.map { s in
            guard let eq = s.lastIndex(of: "="), let b = Float(s[s.index(after: eq)...].trimmingCharacters(in: .whitespaces)) else { return nil }
            return (String(s[..<eq]), b)
        }
    }

    /// `o` with these penalties (the bias comes once the vocabulary is known: `resolvedBias`).
    func applied(to o: SamplingOptions) -> SamplingOptions {
        var o = o
        o.frequencyPenalty = frequencyPenalty; o.presencePenalty = presencePenalty
        o.repetitionPenalty = repetitionPenalty; o.repeatWindow = repeatWindow
        return o
    }

    func validate() throws {
        for (s, p) in zip(logitBias, biasPairs) {
            guard let p else { throw ValidationError("--logit-bias \(s.debugDescription): expected CHARACTER=BIAS, e.g. 'e=-2' or '\\n=-100'") }
            if !(p.bias >= -100 && p.bias <= 100) { throw ValidationError("--logit-bias \(s.debugDescription): the bias must be in -100...100") }
        }
        if beam < 0 || beam > 4096 { throw ValidationError("--beam must be between 1 and 4096 (0 = off)") }
    }
}

/// A --logit-bias key that the checkpoint's vocabulary cannot take.
struct LogitBiasError: Error, CustomStringConvertible {
    let checkpoint: String, problem: String
    var description: String { "\(checkpoint): --logit-bias: \(problem)" }
}

extension SampleCommand {
    func validatePenalties() throws {
        guard penalties.beam > 0 else { return }
        if numSamples != 1 || outputDir != nil { throw ValidationError("--beam gives one text: not with --num-samples or --output-dir") }
        let o = options
        if o.shapesLogits || !penalties.logitBias.isEmpty || topK != 0 || topP != 1 {
            throw ValidationError("--beam is deterministic: --top-k, --top-p, penalties and --logit-bias do not apply to it")
        }
    }

    /// `options` with the --logit-bias keys resolved against the checkpoint's vocabulary.
    func resolvedOptions(_ loaded: Checkpoint.Loaded) throws -> SamplingOptions {
        var o = options
        guard !penalties.logitBias.isEmpty else { return o }
        do {
            o.logitBias = try LogitBias.resolve(penalties.biasPairs.compactMap { $0 }, vocabulary: loaded.meta.vocabulary,
                                                normalize: loaded.meta.train.normalize)
        } catch { throw LogitBiasError(checkpoint: loaded.path, problem: "\(error)") }   // (binding the typed error crashed swiftc 6.3.1)
        return o
    }

    /// `sample --beam W`: the prime text, then the beam's text (cut before a --stop string), on
    /// standard output; its mean log p per character on standard error.
    func beamSample(_ loop: GenerationLoop, prompt: [Int32], primeText: String) throws {
        let W = penalties.beam
        let (historyBytes, o) = length.multipliedReportingOverflow(by: W * 8)
        try OutOfMemoryPrediction.check("beam search of \(length) characters with \(W) beams", needed: o ? Int.max : historyBytes,
                                        suggestion: "use a smaller --length or --beam")
        let r = BeamSearch(model: loop.model, vocabulary: loop.vocabulary, width: W).run(prompt: prompt, length: length, stop: stop)
        let out = Output.standard
        try out.write(primeText)
        try out.write(bytes: r.text)
        if out.tty { try out.write("\n") }
        try out.flush()
        let mean = String(format: "%.4f", r.meanLogProb)
        printError("beam \(W): \(r.tokens.count) characters\(r.finish == .stop ? " (ended by a --stop string)" : ""), mean log p per character \(mean)")
    }
}
