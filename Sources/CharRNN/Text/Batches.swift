// Text/Batches.swift — minibatches in karpathy/char-rnn's CharSplitLMMinibatchLoader layout.
//
// Dims: B batch (streams), T seq (steps per minibatch), N tokens used.
// Contract (CharSplitLMMinibatchLoader.lua + train.lua, reproduced exactly):
// - N = B·T·floor(len / (B·T)); the tail is dropped. Targets: y[i] = data[i+1] for i < N−1 and
//   y[N−1] = data[0] (the last target wraps around to the first token).
// - The N tokens are viewed as B rows (stream b = tokens [b·N/B, (b+1)·N/B)); minibatch k holds columns
//   [k·T, (k+1)·T) of every row, so stream b of minibatch k+1 continues where minibatch k stopped.
// - nbatches = N / (B·T). test_frac = max(0, 1 − (train_frac + val_frac)), treated as 0 when below 1e-9.
//   ntrain = floor(nbatches·train_frac); nval = nbatches − ntrain if test_frac is 0, else
//   floor(nbatches·val_frac); ntest = the rest. Splits are consecutive: train, then val, then test.
// - `fill` writes time-major (T, B) buffers: x[t·B + b] = input of stream b at column k·T + t; a
//   process of a data-parallel run fills only its block of streams (`streams:`), x[t·Bᵣ + b − b₀].
// - Bounded validation (`valBatches(maxTokens:)`): the first m = min(nval, max(1, ⌊maxTokens/(B·T)⌋))
//   minibatches of the val split, every stream. It is a prefix of the full pass over the split, so
//   the state carried from one of its minibatches to the next is the one the full pass carries.
// Caches nothing; reads the corpus' ids directly.

/// The train/val/test minibatch layout of a corpus.
package struct Batches: Sendable {
    /// Which consecutive range of minibatches.
    package enum Split: Sendable, CaseIterable { case train, val, test }

    /// B: number of parallel streams.
    package let batch: Int
    /// T: steps per minibatch.
    package let seq: Int
    /// Minibatches in each split.
    package let ntrain: Int, nval: Int, ntest: Int

    /// N: tokens actually used (a multiple of `batch * seq`).
    package var usedTokens: Int { (ntrain + nval + ntest) * batch * seq }
    /// Total minibatches (ntrain + nval + ntest).
    package var nbatches: Int { ntrain + nval + ntest }

    /// Lays out `tokenCount` tokens as char-rnn does.
    /// - Parameters:
    ///   - tokenCount: corpus length in tokens.
    ///   - batch: B ≥ 1.
    ///   - seq: T ≥ 1.
    ///   - trainFrac: fraction of minibatches for training, in [0, 1].
    ///   - valFrac: fraction for validation, in [0, 1]; the rest (if any) is the test split.
    ///   - file: corpus name for error messages.
    /// - Throws: `TextError.tooSmall` unless ntrain ≥ 1 and nval ≥ 1 (the message gives the minimum
    ///   token count); `TextError.invalidSplit` if the fractions cannot give that at any size.
    package init(tokenCount: Int, batch: Int, seq: Int, trainFrac: Double, valFrac: Double, file: String) throws {
        precondition(batch >= 1 && seq >= 1, "batch and seq must be at least 1")
        precondition(tokenCount >= 0, "negative token count")
        guard let minimumBatches = Batches.minimumBatches(trainFrac: trainFrac, valFrac: valFrac) else {
            throw TextError.invalidSplit(file: file, trainFrac: trainFrac, valFrac: valFrac)
        }
        let nbatches = tokenCount / (batch * seq)
        let (ntrain, nval, ntest) = Batches.splitCounts(nbatches: nbatches, trainFrac: trainFrac, valFrac: valFrac)
        guard ntrain >= 1 && nval >= 1 else {
            throw TextError.tooSmall(file: file, tokens: tokenCount, minimum: minimumBatches * batch * seq,
                                     batch: batch, seq: seq)
        }
        self.batch = batch
        self.seq = seq
        self.ntrain = ntrain
        self.nval = nval
        self.ntest = ntest
    }

    /// char-rnn's split of `nbatches` minibatches into (ntrain, nval, ntest).
    package static func splitCounts(nbatches: Int, trainFrac: Double, valFrac: Double) -> (train: Int, val: Int, test: Int) {
        let testFrac = max(0, 1 - (trainFrac + valFrac))
        let ntrain = Int((Double(nbatches) * trainFrac).rounded(.down))
        if abs(testFrac) < 1e-9 {
            return (ntrain, nbatches - ntrain, 0)
        }
        let nval = Int((Double(nbatches) * valFrac).rounded(.down))
        return (ntrain, nval, nbatches - ntrain - nval)
    }

    /// Smallest nbatches with ntrain ≥ 1 and nval ≥ 1, or nil if the fractions never allow it.
    /// Both counts are non-decreasing in nbatches, so the first hit is the minimum.
    static func minimumBatches(trainFrac: Double, valFrac: Double) -> Int? {
        guard trainFrac.isFinite, valFrac.isFinite, (0...1).contains(trainFrac), (0...1).contains(valFrac),
              trainFrac > 0 else { return nil }
        // With a test split, nval ≥ 1 needs valFrac ≥ 1/nbatches; without, train < 1 suffices.
        let bound = 1_000_000
        for n in 1...bound {
            let (t, v, _) = splitCounts(nbatches: n, trainFrac: trainFrac, valFrac: valFrac)
            if t >= 1 && v >= 1 { return n }
        }
        return nil
    }

    /// Number of minibatches in `split`.
    package func count(_ split: Split) -> Int {
        switch split {
        case .train: return ntrain
        case .val: return nval
        case .test: return ntest
        }
    }

    /// Index of the first minibatch of `split` among all nbatches.
    package func offset(_ split: Split) -> Int {
        switch split {
        case .train: return 0
        case .val: return ntrain
        case .test: return ntrain + nval
        }
    }

    /// Minibatches of the bounded validation: the first m = min(nval, max(1, ⌊maxTokens / (B·T)⌋)) of
    /// the val split (all B streams, consecutive, so the carried state is the full pass's); nil = all.
    package func valBatches(maxTokens: Int?) -> Int {
        guard let maxTokens else { return nval }
        return min(nval, max(1, maxTokens / (batch * seq)))
    }

    /// Writes minibatch `index` of `split`, time-major.
    /// - Parameters:
    ///   - split: train, val or test.
    ///   - index: 0 ≤ index < count(split); the global minibatch is k = offset(split) + index.
    ///   - corpus: the tokens; must hold at least `usedTokens`.
    ///   - x: (T, B) inputs, written (=): x[t·B + b] = token b·N/B + k·T + t.
    ///   - y: (T, B) targets, written (=): the token after each input, wrapping to token 0 at N−1.
    package func fill(_ split: Split, index: Int, corpus: Corpus,
                     x: UnsafeMutablePointer<Int32>, y: UnsafeMutablePointer<Int32>) {
        precondition(index >= 0 && index < count(split), "minibatch \(index) out of range for \(split)")
        let N = usedTokens
        precondition(corpus.count >= N, "corpus has \(corpus.count) tokens, layout needs \(N)")
        let B = batch, T = seq
        let k = offset(split) + index
        corpus.store.run(FillBatch(B: B, T: T, N: N, k: k, x: x, y: y))
    }

    /// Writes the block `streams` (b₀..<b₁ of the B streams) of minibatch `index` of `split`, time-major:
    /// x[t·Bᵣ + b − b₀] for Bᵣ = b₁ − b₀, the same tokens `fill(_:index:corpus:x:y:)` puts in those columns.
    package func fill(_ split: Split, index: Int, corpus: Corpus, streams: Range<Int>,
                     x: UnsafeMutablePointer<Int32>, y: UnsafeMutablePointer<Int32>) {
        precondition(index >= 0 && index < count(split), "minibatch \(index) out of range for \(split)")
        precondition(streams.lowerBound >= 0 && streams.upperBound <= batch && !streams.isEmpty, "streams \(streams) out of 0..<\(batch)")
        let N = usedTokens
        precondition(corpus.count >= N, "corpus has \(corpus.count) tokens, layout needs \(N)")
        corpus.store.run(FillStreams(B: batch, T: seq, N: N, k: offset(split) + index, streams: streams, x: x, y: y))
    }
}

/// Streams b₀..<b₁ of minibatch k: x[t·Bᵣ + b − b₀] = ids[b·N/B + k·T + t], y the id after it.
private struct FillStreams: IDLoop {
    let B: Int, T: Int, N: Int, k: Int
    let streams: Range<Int>
    let x: UnsafeMutablePointer<Int32>   // (T, Bᵣ) written (=)
    let y: UnsafeMutablePointer<Int32>   // (T, Bᵣ) written (=)

    func run<ID: TokenID>(_ ids: UnsafeMutableBufferPointer<ID>) {
        let rowLength = N / B, Br = streams.count
        for b in streams {
            let start = b * rowLength + k * T
            for t in 0..<T {
                let i = start + t
                x[t * Br + b - streams.lowerBound] = Int32(truncatingIfNeeded: ids[i])
                y[t * Br + b - streams.lowerBound] = Int32(truncatingIfNeeded: ids[i + 1 < N ? i + 1 : 0])
            }
        }
    }
}

/// Minibatch k of the stream layout from the ids: x[t·B + b] = ids[b·N/B + k·T + t], y the id after
/// it (ids[0] after ids[N−1]).
private struct FillBatch: IDLoop {
    let B: Int, T: Int, N: Int, k: Int
    let x: UnsafeMutablePointer<Int32>   // (T, B) written (=)
    let y: UnsafeMutablePointer<Int32>   // (T, B) written (=)

    func run<ID: TokenID>(_ ids: UnsafeMutableBufferPointer<ID>) {
        let rowLength = N / B
        for b in 0..<B {
            let start = b * rowLength + k * T
            for t in 0..<T {
                let i = start + t
                x[t * B + b] = Int32(truncatingIfNeeded: ids[i])
                y[t * B + b] = Int32(truncatingIfNeeded: ids[i + 1 < N ? i + 1 : 0])     // ydata[N−1] = data[0]
            }
        }
    }
}
