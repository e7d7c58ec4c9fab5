// Train/Bounds.swift — the one table of numeric bounds. The CLI's flag validation and the library's
// checks (`TrainConfig.problem`, `ModelConfig.problem`, checkpoint metadata, the trainer's iteration
// arithmetic, the worker pool, `eval`, `bench`) all read these, so a value the CLI accepts is one the
// library can run, and a forged checkpoint cannot ask for more than a flag can.
//
// The bounds are far past any useful value; what they exclude is what would trap (Double → Int
// conversions, Int multiplications), exhaust the machine (threads) or lose meaning in a Float
// (a learning rate that rounds to 0 or to infinity).

import Foundation

package enum Bounds {
    // MARK: - Iterations and epochs

    /// Total iterations of a run (`--max-iters`, or `--epochs` × minibatches per epoch): 2^50. Exact
    /// in a Double, and far from overflowing any sum or product the trainer and the ETA make with it.
    package static let maxIterations = 1 << 50
    /// `--epochs`: finite, positive, at most 10^9 (the product with the minibatch count is then
    /// checked against `maxIterations`).
    package static let maxEpochs = 1e9

    // MARK: - Optimization

    /// `--lr`: in [1e-10, 100]; outside it a Float learning rate is meaningless or rounds to 0 / ∞.
    package static let learningRate: ClosedRange<Double> = 1e-10...100
    /// `--clip`: 0 (off) up to 10^9.
    package static let maxClip = 1e9
    /// `--dropout`: [0, 0.99]. Above 0.99 a Float rounds towards 1, which would drop everything.
    package static let maxDropout = 0.99

    // MARK: - Shapes

    /// `--seq` and `--batch` of training, evaluation and bench: each at most 2^24, and their
    /// product at most `maxTokensPerMinibatch` (the activations scale with it).
    package static let maxSeq = 1 << 24
    package static let maxBatch = 1 << 24
    package static let maxTokensPerMinibatch = 1 << 28
    /// `bench --vocab` and the synthetic characters: `syntheticCharacter` has this many.
    package static let maxSyntheticVocab = (0xD800 - 0x4E00) + (0x110000 - 0x10000)

    // MARK: - Threads

    /// Threads a checkpoint or library caller may ask for (absolute, machine-independent).
    package static let threadLimit = 1024
    /// `--threads` on this machine: at most 4 × its cores (and at least 8), and never above
    /// `threadLimit`. More threads than cores only contend; far more can exhaust the process table.
    package static var maxThreads: Int { min(threadLimit, max(8, 4 * ProcessInfo.processInfo.activeProcessorCount)) }

    /// A checkpoint's `elapsed_sec`: 0 up to 10^12 s (31,000 years).
    package static let maxElapsedSeconds = 1e12
    /// `--patience`: validations without improvement (a million is already "never").
    package static let maxPatience = 1_000_000
    /// `--min-delta`, in nats per token.
    package static let maxMinDelta = 1e6

    /// `--normalize nfc`: the longest run of combining marks normalized as one piece (see
    /// `UTF8Decoder.scanNFCBounded`).
    package static let maxCombiningRun = 1024

    // MARK: - Inputs read into memory

    /// A non-regular corpus (pipe, FIFO, `/dev/stdin`, a character device) is read once into memory,
    /// at most this many bytes (1 GiB); more is refused. `/dev/zero` hits it instead of exhausting memory.
    package static let maxStreamBytes = 1 << 30

    // MARK: - Helpers

    /// The `--epochs` check: "--epochs must be positive and at most 1000000000 (got inf)".
    package static func checkEpochs(_ v: Double) -> String? {
        v > 0 && v <= maxEpochs ? nil : "\(Setting.epochs) must be positive and at most \(show(maxEpochs)) (got \(show(v)))"
    }

    /// "--flag must be between lo and hi (got v)" when `v` is outside `range` or not finite.
    package static func check(_ flag: String, _ v: Double, in range: ClosedRange<Double>) -> String? {
        v.isFinite && range.contains(v) ? nil : "\(flag) must be between \(show(range.lowerBound)) and \(show(range.upperBound)) (got \(show(v)))"
    }

    /// A number as the user would write it: 2e-3 → "0.002", 1e39 → "1e+39", ∞ → "inf".
    package static func show(_ v: Double) -> String {
        if v.isNaN { return "nan" }
        if v.isInfinite { return v > 0 ? "inf" : "-inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int(v)) }
        return String(format: "%g", v) == String(v) ? String(v) : String(format: "%.10g", v)
    }

    /// The i-th synthetic character of `bench` (i < `maxSyntheticVocab`): CJK from U+4E00 up to the
    /// surrogates, then the supplementary planes from U+10000 — never a surrogate, never repeated.
    package static func syntheticCharacter(_ i: Int) -> String {
        precondition(i >= 0 && i < maxSyntheticVocab)
        let bmp = 0xD800 - 0x4E00
        let v = i < bmp ? 0x4E00 + i : 0x10000 + (i - bmp)
        return String(UnicodeScalar(UInt32(v))!)
    }
}
