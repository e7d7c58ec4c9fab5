// Checkpoint/RunFolder.swift — the on-disk contract of a training run: the folder `<out>/<run>/` holds
// best.safetensors (lowest validation loss), latest.safetensors (where the run stopped) and loss.csv;
// `<out>/.cache/` holds the token cache shared by the runs under `<out>`. Every name of that contract
// lives here, with the look-ups `sample`, `eval`, `info` and `train --resume` do on it.

import Foundation

/// A run folder and the files in it.
public struct RunFolder: Sendable, Equatable {
    /// Which of a run's two checkpoints.
    public enum Checkpoint: Sendable {
        case best, latest
        /// Its file name inside the run folder.
        public var fileName: String { self == .best ? RunFolder.bestName : RunFolder.latestName }
        var other: Checkpoint { self == .best ? .latest : .best }
    }

    public static let bestName = "best.safetensors"
    public static let latestName = "latest.safetensors"
    public static let lossLogName = "loss.csv"
    /// The token-cache folder's name inside the folder that holds the runs.
    public static let cacheDirName = ".cache"

    /// The run folder itself.
    public let path: String

    public init(_ path: String) { self.path = path }

    /// best.safetensors: the checkpoint with the lowest validation loss so far.
    public var best: String { file(RunFolder.bestName) }
    /// latest.safetensors: where the run last saved (every validation, and on interrupt).
    public var latest: String { file(RunFolder.latestName) }
    /// loss.csv (see `LossLog`).
    public var lossLog: String { file(RunFolder.lossLogName) }

    /// `which` of this run's checkpoints.
    public func checkpoint(_ which: Checkpoint) -> String { file(which.fileName) }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// The default token-cache folder for the runs under `out` (`<out>/.cache`).
    public static func cacheDir(under out: String) -> String { (out as NSString).appendingPathComponent(cacheDirName) }

    // MARK: - Locating checkpoints

    /// Resolves a run folder or checkpoint file: a file is taken as is; a folder gives its `preferred`
    /// checkpoint, else the other one.
    /// - Throws: `CheckpointError` when the path does not exist or the folder holds neither checkpoint.
    public static func resolve(_ path: String, preferring preferred: Checkpoint = .best) throws -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw CheckpointError(file: path, message: "no such checkpoint file or run directory")
        }
        if !isDir.boolValue { return path }
        let run = RunFolder(path)
        for which in [preferred, preferred.other] {
            let p = run.checkpoint(which)
            if FileManager.default.fileExists(atPath: p) { return p }
        }
        throw CheckpointError(file: path, message: "run directory has no \(bestName) or \(latestName)")
    }

    /// The most recently modified run folder under `root` that holds a checkpoint.
    /// - Throws: `CheckpointError` when `root` is missing or holds no run with a checkpoint.
    public static func latestRun(under root: String) throws -> String {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: root) else {
            throw CheckpointError(file: root, message: "no checkpoints folder; train a model first (charrnn train CORPUS) or pass --checkpoint")
        }
        var newest: (String, Date)? = nil
        for n in names {
            let run = RunFolder((root as NSString).appendingPathComponent(n))
            for p in [run.best, run.latest] {
                if let d = (try? fm.attributesOfItem(atPath: p))?[.modificationDate] as? Date {
                    if newest == nil || d > newest!.1 { newest = (run.path, d) }
                }
            }
        }
        guard let newest else {
            throw CheckpointError(file: root, message: "no run with a checkpoint found; train a model first (charrnn train CORPUS) or pass --checkpoint")
        }
        return newest.0
    }
}
