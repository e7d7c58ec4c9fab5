// charrnn/CheckpointChoice.swift — which checkpoint `sample` and `eval` read, and the line on stderr
// that says so. Guarantees: the file named is the one `CheckpointOptions.resolve()` picks (the same
// rule, RunFolder.resolve), and a run folder whose best checkpoint is missing is named as such
// instead of silently standing in its latest; `sample`'s line carries the exact `--seed N` that
// repeats its text, whether the seed was given or drawn.

import CharRNN
import Foundation

/// The checkpoint file a command reads and how it was found.
struct CheckpointChoice {
    /// The .safetensors file.
    let path: String
    /// A run folder was given (or found under --runs) whose best checkpoint is missing, so its latest is read.
    let fellBackToLatest: Bool

    /// What the choice says about itself: the file, its iteration, and the fallback when there was one.
    func described(iteration: Int) -> String {
        let folder = parentPath(path)
        let why = fellBackToLatest ? "; \(folder.isEmpty ? "." : folder) has no \(RunFolder.bestName), so its latest" : ""
        return "checkpoint \(path) (iteration \(iteration)\(why))"
    }
}

extension CheckpointOptions {
    /// `resolve()`, and whether a run folder's latest checkpoint stands in for its missing best one.
    func choose() throws -> CheckpointChoice {
        let given = try checkpoint ?? RunFolder.latestRun(under: runs)
        let path = try RunFolder.resolve(given)
        var isDir: ObjCBool = false
        let folder = FileManager.default.fileExists(atPath: given, isDirectory: &isDir) && isDir.boolValue
        return CheckpointChoice(path: path, fellBackToLatest: folder && (path as NSString).lastPathComponent != RunFolder.bestName)
    }
}

extension SampleCommand {
    /// The line `sample` prints on stderr before generating: the checkpoint it read and the seed
    /// that repeats its text (`--seed N`, the same for every one of --num-samples).
    static func announcement(_ choice: CheckpointChoice, iteration: Int, seed: UInt64) -> String {
        "\(choice.described(iteration: iteration)); --seed \(seed) repeats this text"
    }
}
