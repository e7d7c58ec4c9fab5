// `train`'s vocabulary control and decoding: --min-count, --max-vocab, --lossy.

import ArgumentParser
import CharRNN

struct VocabularyOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Characters seen fewer than N times map to one unknown token (learned, never sampled).", valueName: "N"))
    var minCount: Int = 1
    @Option(help: ArgumentHelp("Keep at most N tokens, the unknown token included; the rarest characters map to it.", valueName: "N"))
    var maxVocab: Int?
    @Flag(help: "Replace invalid UTF-8 with U+FFFD (and report how many) instead of stopping.")
    var lossy = false

    func validate() throws {
        var o = LoadOptions()
        o.minCount = minCount; o.maxVocab = maxVocab
        if let p = o.problem { throw ValidationError(p) }
    }

    func apply(to t: inout TrainConfig) {
        t.minCount = minCount > 1 ? minCount : nil
        t.maxVocab = maxVocab
        t.lossy = lossy ? true : nil
    }
}
