// Train/TrainError.swift — why a training run could not start or had to stop. One case per cause, each
// carrying what the message needs; `description` is the one line the CLI prints after "error: ".

import Foundation

package enum TrainError: Error, CustomStringConvertible, Equatable {
    /// The training or model settings are invalid (`TrainConfig.problem`, `ModelConfig.problem`).
    case config(String)
    /// The adaptive softmax cutoffs cannot be used with this corpus and model.
    case softmaxCutoffs(String)
    /// The corpus at `file` has a single distinct token, `token` (debug-quoted), or none.
    case nothingToLearn(file: String, token: String?)
    /// `--resume`: the corpus file differs from the one the run in `checkpoint` recorded.
    case corpusChanged(checkpoint: String, change: String)
    /// `--resume`: the corpus's vocabulary (`ours` tokens) is not the checkpoint's (`theirs`).
    case vocabularyMismatch(checkpoint: String, ours: Int, theirs: Int)
    /// `--resume`: both vocabularies have `size` tokens but differ, first at `index` (debug-quoted tokens).
    case vocabularyContentMismatch(checkpoint: String, size: Int, index: Int, ours: String, theirs: String)
    /// Every character fell to the unknown token (`--min-count` / `--max-vocab`): `distinct` characters.
    case everythingUnknown(file: String, distinct: Int, minCount: Int)
    /// `--init-from` / `--allow-new-corpus`: a corpus not encoded with the checkpoint's vocabulary.
    case notEncodedWithCheckpointVocabulary(checkpoint: String)
    /// `--resume`: the corpus has `tokens` tokens; the run was trained on `expected`.
    case corpusLengthMismatch(checkpoint: String, tokens: Int, expected: Int)
    /// `--resume` from a checkpoint saved without optimizer moments.
    case noOptimizerState(checkpoint: String)
    /// `file` has `count` tokens outside the checkpoint's vocabulary of `vocabularySize`, which has no
    /// unknown token to map them to; `shown` are the first of them.
    case tokensOutsideVocabulary(file: String, count: Int, vocabularySize: Int, shown: [String])
    /// The loss or gradient norm of `iteration` is NaN/Inf; `checkpoint` is the last good one, if any.
    case nonFinite(iteration: Int, loss: Double, gradNorm: Float, checkpoint: String?)
    /// `--skip-nonfinite`: `steps` steps in a row (iterations `first`…`last`) were non-finite.
    case tooManyNonFiniteSteps(steps: Int, first: Int, last: Int, skipped: Int, checkpoint: String?)

    package var description: String {
        func kept(_ ckpt: String?) -> String {
            ckpt.map { "; the last good checkpoint is \($0)" } ?? "; no checkpoint had been written yet"
        }
        switch self {
        case let .config(m), let .softmaxCutoffs(m):
            return m
        case let .nothingToLearn(file, token):
            return "\(file): the corpus has only one distinct character (\(token ?? "nothing")); there is nothing to learn"
        case let .corpusChanged(ckpt, change):
            return "\(ckpt): the corpus changed: \(change); pass \(Setting.allowNewCorpus) to continue on it with the run's vocabulary"
        case let .vocabularyMismatch(ckpt, ours, theirs):
            return "\(ckpt): the corpus's vocabulary differs from the checkpoint's (\(ours) vs \(theirs) tokens); resume needs the same corpus"
        case let .vocabularyContentMismatch(ckpt, size, i, ours, theirs):
            return "\(ckpt): the corpus's vocabulary differs from the checkpoint's (both \(size) tokens, first at id \(i): \(ours) vs \(theirs)); resume needs the same corpus"
        case let .everythingUnknown(file, distinct, minCount):
            return "\(file): all \(distinct) distinct characters occur fewer than \(Setting.minCount) \(minCount) times and map to the unknown token; there is nothing to learn (lower \(Setting.minCount))"
        case let .notEncodedWithCheckpointVocabulary(ckpt):
            return "\(ckpt): the corpus is not encoded with the checkpoint's vocabulary"
        case let .corpusLengthMismatch(ckpt, tokens, expected):
            return "\(ckpt): the corpus has \(tokens) tokens but the run was trained on \(expected); resume needs the same corpus"
        case let .noOptimizerState(ckpt):
            return "\(ckpt): has no optimizer state to resume from"
        case let .tokensOutsideVocabulary(file, count, size, shown):
            return "\(file): \(count) tokens are not in the checkpoint's vocabulary of \(size) (\(shown.joined(separator: " "))); "
                + "the vocabulary has no unknown token to map them to, so the corpus must use only its characters"
        case let .nonFinite(it, loss, norm, ckpt):
            return "training diverged at iteration \(it): loss \(loss), gradient norm \(norm) (try a lower \(Setting.lr) or \(Setting.clip))\(kept(ckpt))"
        case let .tooManyNonFiniteSteps(steps, first, last, skipped, ckpt):
            return "training diverged: \(steps) steps in a row had a non-finite loss or gradient (iterations \(first)–\(last), \(skipped) skipped in all)\(kept(ckpt))"
        }
    }
}
