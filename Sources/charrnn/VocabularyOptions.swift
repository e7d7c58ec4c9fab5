// `train`'s vocabulary control and decoding: --min-count, --max-vocab, --lossy.

import ArgumentParser
import CharRNN

struct VocabularyOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Characters seen fewer than N times map to one unknown token (learned, never sampled). (default: 1)", valueName: "N"))
    var minCount: Int?
    @Option(help: ArgumentHelp("Keep at most N tokens, the unknown token included; the rarest characters map to it.", valueName: "N"))
    var maxVocab: Int?
    @Flag(help: "Replace invalid UTF-8 with U+FFFD (and report how many) instead of stopping.")
    var lossy = false

    func validate() throws {
        var o = LoadOptions()
        o.minCount = minCount ?? 1; o.maxVocab = maxVocab
        if let p = o.problem { throw ValidationError(p) }
    }

    /// The vocabulary flags given on the command line (--resume and --init-from keep the checkpoint's);
    /// --lossy is a flag whose only spelling sets it, so set means given.
    var givenFlags: [String] {
        [(maxVocab != nil, "--max-vocab"), (minCount != nil, "--min-count"), (lossy, "--lossy")].filter(\.0).map(\.1)
    }

    func apply(to t: inout TrainConfig) {
        t.minCount = minCount.flatMap { $0 > 1 ? $0 : nil }
        t.maxVocab = maxVocab
        t.lossy = lossy ? true : nil
    }
}
