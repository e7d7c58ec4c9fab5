// Export/ExportSource.swift — what every export format starts from: a checkpoint validated and
// restored exactly as `sample` and `eval` restore it (format checks, tensor shapes, finite values),
// its parameters by state_dict name, and the metadata a runtime needs to tokenize and sample the
// same way (ExportMetadata, written into the ONNX model's metadata_props and the HTML page).
// Also the one writer of export files: atomic (AtomicFile: temp file, fsync, rename, fsync dir),
// refusing to replace an existing file unless asked (hard-linked into place, so not even a file
// created meanwhile is replaced), so a failure leaves no partial file.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The tokenizer and sampling facts of an exported model, as JSON (key `charrnn` of the ONNX
/// metadata_props; `meta` of the HTML page). Documented in the README's "Export" section.
package struct ExportMetadata: Codable, Sendable, Equatable {
    package static let formatName = "charrnn-export"
    package static let formatVersion = 1
    package var format = formatName
    package var formatVersion = formatVersion
    /// lstm, gru or rnn; layers; hidden units; embedding width (0 = one-hot input); V.
    package var cell: String, layers: Int, hidden: Int, embed: Int, vocabSize: Int
    /// "full" or "adaptive" (the exported graph gives exact full log-probabilities either way).
    package var output: String
    /// Id → token text (UTF-8). A token's id is its index.
    package var vocab: [String]
    /// "scalar" (one Unicode scalar per token) or "grapheme" (one extended grapheme cluster).
    package var unit: String
    /// "none" or "nfc": normalization applied to text before tokenizing.
    package var normalize: String
    /// Id standing for characters outside the vocabulary (never sampled), or nil: such characters are skipped.
    package var unknownId: Int?
    /// The token fed first when generating without a prime text (a newline), or nil: then the first
    /// distribution is uniform (log p = −log V for every id).
    package var startId: Int?
    /// Run facts, for display.
    package var iteration: Int, corpus: String, valLoss: Double?

    enum CodingKeys: String, CodingKey {
        case format, formatVersion = "format_version", cell, layers, hidden, embed, vocabSize = "vocab_size", output, vocab, unit
        case normalize, unknownId = "unknown_id", startId = "start_id", iteration, corpus, valLoss = "val_loss"
    }

    package init(_ meta: CheckpointMeta) {
        let m = meta.model
        cell = m.cell.rawValue; layers = m.layers; hidden = m.hidden; embed = m.embed; vocabSize = m.vocabSize
        output = m.adaptive == nil ? "full" : "adaptive"
        vocab = meta.vocabulary.tokens; unit = meta.vocabulary.unit.rawValue; normalize = meta.train.normalize.rawValue
        unknownId = meta.vocabulary.unknownID; startId = meta.vocabulary.startID
        iteration = meta.progress.iteration; corpus = meta.corpus.name
        valLoss = meta.progress.bestValLoss.flatMap { $0.isFinite ? $0 : nil }
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(format, forKey: .format); try c.encode(formatVersion, forKey: .formatVersion)
        try c.encode(cell, forKey: .cell); try c.encode(layers, forKey: .layers); try c.encode(hidden, forKey: .hidden)
        try c.encode(embed, forKey: .embed); try c.encode(vocabSize, forKey: .vocabSize); try c.encode(output, forKey: .output)
        try c.encode(vocab, forKey: .vocab); try c.encode(unit, forKey: .unit); try c.encode(normalize, forKey: .normalize)
        try c.encode(unknownId, forKey: .unknownId); try c.encode(startId, forKey: .startId)   // explicit nulls
        try c.encode(iteration, forKey: .iteration); try c.encode(corpus, forKey: .corpus); try c.encode(valLoss, forKey: .valLoss)
    }

    /// Compact JSON with sorted keys; `asciiOnly` escapes every non-ASCII character and `<` (for
    /// embedding in an HTML <script>).
    package func json(asciiOnly: Bool = false) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        // every field is a finite number, a string or an array of strings: encoding cannot fail
        let s = String(decoding: (try? enc.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
        guard asciiOnly else { return s }
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for u in s.utf16 {
            if u < 0x80 && u != 0x3c { out.unicodeScalars.append(Unicode.Scalar(UInt8(u))) } else {
                let h = String(u, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            }
        }
        return out
    }
}

/// Why an export was refused.
package struct ExportError: Error, CustomStringConvertible, Equatable {
    package let path: String
    package let message: String
    package init(path: String, message: String) { self.path = path; self.message = message }
    package var description: String { "\(path): \(message)" }
}

/// A checkpoint ready to export: its model's parameters by state_dict name.
package struct ExportSource: Sendable {
    package let meta: CheckpointMeta
    package let config: ModelConfig
    package let metadata: ExportMetadata
    /// Parameter name → float32 values (row-major, the checkpoint's shapes: `NetworkSpec` order).
    package let tensors: [String: [Float]]
    package let spec: NetworkSpec

    /// Restores the checkpoint into a model (every check `sample` makes) and copies its parameters.
    /// - Throws: `CheckpointError` / `SafeTensorsError` for a checkpoint that fails validation.
    package init(checkpoint: Checkpoint.Loaded) throws {
        let model = CharRNNModel(config: checkpoint.meta.model, maxT: 1, maxB: 1)
        try Checkpoint.restore(checkpoint, model: model)
        meta = checkpoint.meta
        config = checkpoint.meta.model
        spec = model.spec
        metadata = ExportMetadata(checkpoint.meta)
        var t: [String: [Float]] = [:]
        for (s, v) in zip(model.spec.parameters, model.layout.views) {
            t[s.name] = Array(UnsafeBufferPointer(start: model.params.ptr + v.offset, count: s.count))
        }
        tensors = t
    }

    /// The tensor `name` (which the spec guarantees exists).
    package func tensor(_ name: String) -> [Float] {
        guard let t = tensors[name] else { preconditionFailure("no tensor \(name)") }
        return t
    }
}

/// Writes export files.
package enum ExportFile {
    /// Writes `bytes` to `path` atomically. Unless `overwrite`, refuses a path that exists (also a
    /// dangling symlink), and stays refusing if another process creates it meanwhile: the complete
    /// file is staged under a hidden sibling name and hard-linked into place (link(2) never
    /// replaces), falling back to a rename on file systems without hard links. A directory is always refused.
    /// - Throws: `ExportError` (exists, is a directory), `FileIOError` naming `path` (cannot create,
    ///   no space, …); on any failure no file is left at `path` or beside it.
    package static func write(_ bytes: [UInt8], to path: String, overwrite: Bool) throws {
        var st = stat()
        if lstat(path, &st) == 0 {
            var target = stat()
            if st.st_mode & S_IFMT == S_IFDIR || (stat(path, &target) == 0 && target.st_mode & S_IFMT == S_IFDIR) {
                throw ExportError(path: path, message: "is a directory; give a file name with -o")
            }
            if !overwrite { throw exists(path) }
        }
        if overwrite { return try AtomicFile.write(bytes, to: path) }
        let dir = parentPath(path), base = (path as NSString).lastPathComponent
        let staged = (dir.isEmpty ? "" : dir + "/") + ".\(base).export-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do { try AtomicFile.write(bytes, to: staged) } catch let e as FileIOError {
            throw FileIOError(path: path, operation: e.operation, code: e.code)
        }
        defer { _ = unlink(staged) }
        if link(staged, path) != 0 {
            let code = errno
            if code == EEXIST { throw exists(path) }
            guard [EPERM, EOPNOTSUPP, ENOTSUP, EMLINK, ENOSYS].contains(code) else { throw FileIOError(path: path, operation: "link", code: code) }
            // no hard links here: check once more and rename (the staged file is complete and fsynced)
            if lstat(path, &st) == 0 { throw exists(path) }
            if rename(staged, path) != 0 { throw FileIOError(path: path, operation: "rename", code: errno) }
        }
        let fd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { _ = fsync(fd); _ = close(fd) }
    }

    static func exists(_ path: String) -> ExportError {
        ExportError(path: path, message: "already exists; pass \(Setting.force) to replace it")
    }
}
