// Checkpoint/Checkpoint.swift — a training run's complete state as one safetensors file.
//
// Tensors: the model under PyTorch state_dict names (StateDict), the optimizer moments under
// `optimizer.<slot>.<name>`, the carried training state under `state.h_l{k}` / `state.c_l{k}`.
// `__metadata__` (string → string, as safetensors requires) holds the format version, the model and
// training configs and the vocabulary as JSON strings, and the counters needed to resume bit for bit:
// iteration, epoch, data cursor, RNG state, current learning rate, optimizer step count, best val loss.
// Writes are atomic (SafeTensorsWriter.write: temp file, fsync, rename, fsync dir).

import Foundation

/// Corpus facts recorded so a resume can tell whether the corpus changed.
package struct CorpusInfo: Codable, Sendable, Equatable {
    package var name: String
    package var path: String
    package var bytes: Int
    package var tokens: Int
    /// `CorpusHash` of the file's bytes (16 hex digits); nil in checkpoints written before it existed.
    package var hash: String?
    /// Every input (files and directories) when there were several; `path` is the first.
    package var paths: [String]? = nil
    package init(name: String, path: String, bytes: Int, tokens: Int, hash: String? = nil) {
        self.name = name; self.path = path; self.bytes = bytes; self.tokens = tokens; self.hash = hash
    }
}

/// Counters of a run that a checkpoint carries.
package struct RunProgress: Sendable, Equatable {
    package var iteration = 0
    package var lr: Float = 0
    package var rng = Xoshiro256(seed: 0)
    package var optimizerSteps = 0
    package var bestValLoss: Double? = nil
    package var bestIteration = 0
    package var lastValLoss: Double? = nil
    package var elapsed: Double = 0
    /// Validations in a row that did not improve the best val loss by `--min-delta` (counted, and
    /// recorded as `patience_count`, only while the run has a `--patience`).
    package var sinceImprovement = 0
    package init() {}
}

/// Everything but the tensors.
public struct CheckpointMeta: Sendable {
    package static let formatName = "charrnn"
    package static let formatVersion = 1
    /// The network: cell, layers, hidden size, embedding, dropout, vocabulary size.
    public var model: ModelConfig
    /// The training settings of the run (tokenization included: `unit`, `normalize`).
    public var train: TrainConfig
    /// The tokens the model reads and writes, in id order.
    public var vocabulary: Vocabulary
    package var corpus: CorpusInfo
    package var progress: RunProgress
    /// Iterations per epoch (number of train minibatches).
    package var trainBatches: Int
    /// Further `__metadata__` entries (e.g. `vocab_counts`, `init_from`), written as they are and read
    /// back from every key this struct does not decode itself.
    package var extra: [String: String] = [:]
    package var epoch: Double { Double(progress.iteration) / Double(max(1, trainBatches)) }

    package init(model: ModelConfig, train: TrainConfig, vocabulary: Vocabulary, corpus: CorpusInfo, progress: RunProgress, trainBatches: Int) {
        self.model = model; self.train = train; self.vocabulary = vocabulary; self.corpus = corpus
        self.progress = progress; self.trainBatches = trainBatches
    }
}

/// The `__metadata__` keys a checkpoint's own fields are stored under: the one table the writer and
/// the reader use. Every other key is carried in `CheckpointMeta.extra`.
package enum MetaKey: String, CaseIterable, Sendable {
    case format, formatVersion = "format_version", model, train, vocab, unit, unknownID = "unk_id", corpus
    case trainBatches = "train_batches", iteration, epoch, cursor, lr, rng, optimizer
    case optimizerSteps = "optimizer_steps", bestIteration = "best_iteration", elapsed = "elapsed_sec"
    case bestValLoss = "best_val_loss", valLoss = "val_loss"
    case patienceCount = "patience_count"

    /// Every key of this table.
    static let all: Set<String> = Set(allCases.map(\.rawValue))
}

package struct CheckpointError: Error, CustomStringConvertible {
    package let file: String
    package let message: String
    package var description: String { "\(displayPath(file)): \(message)" }
}

/// Reading, validating and writing charrnn checkpoints (safetensors with PyTorch `nn.LSTM` names).
public enum Checkpoint {
    // MARK: - Write

    /// Serialises model, optimizer and state with `meta` and writes `path` atomically.
    package static func save(to path: String, model: CharRNNModel, optimizer: Optimizer?, state: RecurrentState?, meta: CheckpointMeta) throws {
        try save(to: [path], model: model, optimizer: optimizer, state: state, meta: meta)
    }

    /// The same checkpoint, serialised once, written atomically to each path in order. The tensors
    /// are the model's spec: parameters, then the optimizer's slots, then the carried state.
    package static func save(to paths: [String], model: CharRNNModel, optimizer: Optimizer?, state: RecurrentState?, meta: CheckpointMeta) throws {
        var w = SafeTensorsWriter()
        func add(_ t: TensorSpec, from base: UnsafePointer<Float>) { w.add(t.name, shape: t.shape, floats: UnsafeBufferPointer(start: base, count: t.count)) }
        for (t, v) in zip(model.spec.parameters, model.layout.views) { add(t, from: model.params.ptr + v.offset) }
        if let optimizer {
            let slots = model.spec.optimizerSlots(optimizer.kind), n = model.spec.parameters.count
            for (i, t) in slots.enumerated() { add(t, from: optimizer.moments[i / n].ptr + model.layout.views[i % n].offset) }
        }
        if let state {
            for (t, buf) in zip(model.spec.carriedState(streams: state.batch), state.h + state.c) { add(t, from: buf.ptr) }
        }
        w.metadata = try encode(meta, optimizer: optimizer, file: paths.first ?? "")
        try w.write(to: paths)
    }

    static func json<T: Encodable>(_ value: T, key: MetaKey, file: String) throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do { return String(decoding: try enc.encode(value), as: UTF8.self) } catch {
            throw CheckpointError(file: file, message: "cannot record \"\(key.rawValue)\" in the checkpoint (a value that JSON cannot hold, such as infinity or NaN)")
        }
    }

    static func encode(_ meta: CheckpointMeta, optimizer: Optimizer?, file: String) throws -> [String: String] {
        let p = meta.progress
        var m: [MetaKey: String] = [
            .format: CheckpointMeta.formatName,
            .formatVersion: String(CheckpointMeta.formatVersion),
            .model: try json(meta.model, key: .model, file: file),
            .train: try json(meta.train, key: .train, file: file),
            .vocab: try json(meta.vocabulary.tokens, key: .vocab, file: file),
            .unit: meta.vocabulary.unit.rawValue,
            .corpus: try json(meta.corpus, key: .corpus, file: file),
            .trainBatches: String(meta.trainBatches),
            .iteration: String(p.iteration),
            .epoch: String(meta.epoch),
            .cursor: String(meta.trainBatches > 0 ? p.iteration % meta.trainBatches : 0),
            .lr: "\(p.lr)",
            .rng: try json(p.rng.words.map { String($0) }, key: .rng, file: file),
            .optimizer: optimizer?.kind.rawValue ?? meta.train.optim.rawValue,
            .optimizerSteps: String(p.optimizerSteps),
            .bestIteration: String(p.bestIteration),
            .elapsed: String(p.elapsed),
        ]
        if let u = meta.vocabulary.unknownID { m[.unknownID] = String(u) }
        if let b = p.bestValLoss { m[.bestValLoss] = "\(b)" }
        if let v = p.lastValLoss { m[.valLoss] = "\(v)" }
        if meta.train.patience != nil { m[.patienceCount] = String(p.sinceImprovement) }
        var out = meta.extra.filter { !MetaKey.all.contains($0.key) }
        for (k, v) in m { out[k.rawValue] = v }
        return out
    }

    // MARK: - Read

    /// A checkpoint read and validated at the format level; `restore` puts its tensors in place.
    public struct Loaded: Sendable {
        /// The file it was read from.
        public let path: String
        package let file: SafeTensorsFile
        /// Everything but the tensors: model, training settings, vocabulary, corpus, progress.
        public let meta: CheckpointMeta
        package var hasOptimizerState: Bool {
            NetworkSpec(meta.model).optimizerSlots(meta.train.optim).allSatisfy { file.tensors[$0.name] != nil }
        }
    }

    /// Reads `path` (a .safetensors file) and decodes its metadata.
    /// - Throws: `CheckpointError` for a path that is not a regular file (a device such as /dev/zero, a
    ///   pipe or FIFO: read to the end, they could hold anything, or never end).
    public static func load(path: String) throws -> Loaded {
        var st = stat()
        if stat(path, &st) == 0, st.st_mode & S_IFMT != S_IFREG, st.st_mode & S_IFMT != S_IFDIR {
            throw CheckpointError(file: path, message: "is not a regular file (a device, pipe or FIFO); a checkpoint is a .safetensors file")
        }
        return try load(bytes: AtomicFile.read(from: path), path: path)
    }

    /// Validates and decodes a checkpoint held in memory (`path` names it in errors). Same checks as
    /// `load(path:)`; the fuzz target and the hostile-input tests call this.
    public static func load(bytes: [UInt8], path: String) throws -> Loaded {
        let file = try SafeTensorsFile(bytes: bytes, path: path)
        let md = file.metadata
        func fail(_ msg: String) -> CheckpointError { CheckpointError(file: path, message: msg) }
        func field(_ key: MetaKey) throws -> String {
            guard let v = md[key.rawValue] else { throw fail("not a charrnn checkpoint: metadata has no \"\(key.rawValue)\"") }
            return v
        }
        func decode<T: Decodable>(_ type: T.Type, _ key: MetaKey) throws -> T {
            do { return try JSONDecoder().decode(T.self, from: Data(try field(key).utf8)) } catch let e as CheckpointError { throw e } catch {
                throw fail("metadata \"\(key.rawValue)\" is not valid: \(fractionalField(T.self, try field(key)) ?? describeDecoding(error))")
            }
        }
        func int(_ key: MetaKey) throws -> Int {
            guard let v = Int(try field(key)) else { throw fail("metadata \"\(key.rawValue)\" is not an integer") }
            return v
        }
        guard md[MetaKey.format.rawValue] == CheckpointMeta.formatName else { throw fail("not a charrnn checkpoint (metadata format is \(md[MetaKey.format.rawValue].map { $0.debugDescription } ?? "missing"))") }
        let version = try int(.formatVersion)
        if version < 1 { throw fail("metadata \"format_version\" is \(version); versions start at 1") }
        if version > CheckpointMeta.formatVersion {
            throw fail("format version \(version) is newer than this charrnn reads (\(CheckpointMeta.formatVersion)); upgrade charrnn")
        }
        let model = try decode(ModelConfig.self, .model)
        if let problem = model.problem { throw fail("model config invalid: \(problem)") }
        let train = try decode(TrainConfig.self, .train)
        let tokens = try decode([String].self, .vocab)
        guard let unit = TokenUnit(rawValue: try field(.unit)) else { throw fail("unknown token unit \(md[MetaKey.unit.rawValue]!.debugDescription)") }
        guard tokens.count == model.vocabSize else { throw fail("vocabulary has \(tokens.count) entries but the model expects \(model.vocabSize)") }
        let unknownText = md[MetaKey.unknownID.rawValue].flatMap { Int($0) }
        if let problem = vocabularyProblem(tokens, unit: unit, unknownID: unknownText) { throw fail("metadata \"vocab\": \(problem)") }
        try checkModelTensors(model, in: file, fail: fail)
        if let problem = train.problem { throw fail("train config invalid: \(problem)") }
        let corpus = try decode(CorpusInfo.self, .corpus)
        var p = RunProgress()
        p.iteration = try int(.iteration)
        p.optimizerSteps = try int(.optimizerSteps)
        p.bestIteration = try int(.bestIteration)
        guard let lr = Float(try field(.lr)) else { throw fail("metadata \"lr\" is not a number") }
        p.lr = lr
        let words = try decode([String].self, .rng).compactMap { UInt64($0) }
        guard words.count == 4, words.contains(where: { $0 != 0 }) else { throw fail("metadata \"rng\" is not a valid generator state") }
        p.rng = Xoshiro256(words: words)
        guard p.iteration >= 0, p.optimizerSteps >= 0, p.bestIteration >= 0, lr.isFinite, lr >= 0 else {
            throw fail("metadata counters are invalid (negative iteration or step count, or a non-finite learning rate)")
        }
        func number(_ key: MetaKey) throws -> Double? {
            guard let s = md[key.rawValue] else { return nil }
            guard let v = Double(s) else { throw fail("metadata \"\(key.rawValue)\" is not a number (\(s.debugDescription))") }
            return v
        }
        p.bestValLoss = try number(.bestValLoss)
        p.lastValLoss = try number(.valLoss)
        p.elapsed = try number(.elapsed) ?? 0
        guard p.elapsed.isFinite, p.elapsed >= 0, p.elapsed <= Bounds.maxElapsedSeconds else {
            throw fail("metadata \"elapsed_sec\" is \(p.elapsed); a training time is between 0 and \(Bounds.show(Bounds.maxElapsedSeconds)) seconds")
        }
        if md[MetaKey.patienceCount.rawValue] != nil {
            p.sinceImprovement = try int(.patienceCount)
            guard p.sinceImprovement >= 0 else { throw fail("metadata \"patience_count\" is \(p.sinceImprovement); a count of validations is not negative") }
        }
        var unknownID: Int? = nil
        if let u = md[MetaKey.unknownID.rawValue] {
            guard let v = Int(u), v >= 0, v < tokens.count else { throw fail("metadata \"unk_id\" is not a vocabulary id") }
            unknownID = v
        }
        let trainBatches = try int(.trainBatches)
        guard trainBatches >= 1 else { throw fail("metadata \"train_batches\" is \(trainBatches); a run has at least one train minibatch") }
        if md[MetaKey.cursor.rawValue] != nil {
            let cursor = try int(.cursor)
            guard cursor == p.iteration % trainBatches else {
                throw fail("metadata \"cursor\" is \(cursor) but iteration \(p.iteration) of \(trainBatches) minibatches per epoch puts it at \(p.iteration % trainBatches)")
            }
        }
        var meta = CheckpointMeta(model: model, train: train, vocabulary: Vocabulary(unit: unit, tokens: tokens, unknownID: unknownID),
                                  corpus: corpus, progress: p, trainBatches: trainBatches)
        meta.extra = md.filter { !MetaKey.all.contains($0.key) }
        return Loaded(path: path, file: file, meta: meta)
    }

    /// Model-level validation (STYLE.md, after the format rules): every parameter tensor of the
    /// config's spec is present as F32 with its exact shape. Building the model then allocates no more
    /// than the file holds, so a forged `hidden` or `layers` cannot ask for terabytes. The config has
    /// passed `problem`, whose bounds keep the spec's sizes from overflowing.
    static func checkModelTensors(_ c: ModelConfig, in file: SafeTensorsFile, fail: (String) -> CheckpointError) throws {
        // Each layer has four tensors in the file; more layers than tensors cannot be valid (and the
        // spec of a forged 1024-layer config need not be built).
        guard c.layers <= file.tensors.count else {
            throw fail("model config has \(c.layers) layers but the file holds only \(file.tensors.count) tensors")
        }
        for t in NetworkSpec(c).parameters {
            guard let info = file.tensors[t.name] else { throw SafeTensorsError(file: file.path, kind: .notFound(t.name)) }
            guard info.dtype == .F32 else { throw SafeTensorsError(file: file.path, kind: .wrongDType(t.name, info.dtype)) }
            guard info.shape == t.shape else { throw SafeTensorsError(file: file.path, kind: .wrongShape(t.name, info.shape, expected: t.shape)) }
        }
    }

    /// Copies the model tensors (and, when given, optimizer moments and carried state) into place.
    /// Every expected tensor must be present with its exact shape and dtype F32, and hold only
    /// finite values (a NaN or Inf weight would make `sample` print garbage and `eval` report nan).
    package static func restore(_ c: Loaded, model: CharRNNModel, optimizer: Optimizer? = nil, state: RecurrentState? = nil) throws {
        precondition(model.config == c.meta.model, "restore into a model of another shape")
        func finite(_ name: String, _ p: UnsafePointer<Float>, _ n: Int) throws {
            for i in 0..<n where !p[i].isFinite {
                throw CheckpointError(file: c.path, message: "tensor \(name) holds a non-finite value (\(p[i]) at index \(i)); the checkpoint is corrupt or the run diverged")
            }
        }
        for (t, v) in zip(model.spec.parameters, model.layout.views) {
            try c.file.copyFloats(t.name, shape: t.shape, into: model.params.ptr + v.offset)
            try finite(t.name, model.params.ptr + v.offset, t.count)
        }
        model.parametersChanged()
        if let optimizer {
            let n = model.spec.parameters.count
            for (i, t) in model.spec.optimizerSlots(optimizer.kind).enumerated() {
                try c.file.copyFloats(t.name, shape: t.shape, into: optimizer.moments[i / n].ptr + model.layout.views[i % n].offset)
                try finite(t.name, optimizer.moments[i / n].ptr + model.layout.views[i % n].offset, t.count)
            }
            optimizer.stepCount = c.meta.progress.optimizerSteps
        }
        if let state {
            for (t, buf) in zip(model.spec.carriedState(streams: state.batch), state.h + state.c) {
                try c.file.copyFloats(t.name, shape: t.shape, into: buf.ptr)
                try finite(t.name, buf.ptr, t.count)
            }
        }
    }
}

// MARK: - Metadata checks

/// Why a checkpoint's vocabulary cannot be used, or nil: every entry but the unknown token (whose
/// text is "") is non-empty, and one Unicode scalar when the unit is `scalar`; no entry appears twice;
/// and the entries other than the unknown token are in code-point order, as a vocabulary built from a
/// corpus always is (`Vocabulary`).
func vocabularyProblem(_ tokens: [String], unit: TokenUnit, unknownID: Int?) -> String? {
    var seen = Set<[UInt8]>()
    var previous: [UInt8]? = nil
    for (i, t) in tokens.enumerated() {
        let bytes = Array(t.utf8)
        if i == unknownID {
            if !t.isEmpty { return "entry \(i) is the unknown token but is \(t.debugDescription), not \"\"" }
            continue
        }
        if t.isEmpty { return "entry \(i) is empty (only the unknown token may be)" }
        if unit == .scalar && t.unicodeScalars.count != 1 {
            return "entry \(i) \(t.debugDescription) is \(t.unicodeScalars.count) Unicode scalars; a scalar vocabulary holds one per entry"
        }
        if !seen.insert(bytes).inserted { return "entry \(i) \(t.debugDescription) appears twice" }
        if let previous, !previous.lexicographicallyPrecedes(bytes) {
            return "entry \(i) \(t.debugDescription) is out of code-point order"
        }
        previous = bytes
    }
    return nil
}

/// The top-level field of `json` that holds a fractional number where `T` needs an integer (Linux
/// Foundation reports that as "not valid JSON", with no field): the first one whose value, made
/// integral, lets `T` decode. Nil when the text is not JSON or no such field explains the failure.
func fractionalField<T: Decodable>(_ type: T.Type, _ json: String) -> String? {
    guard let obj = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else { return nil }
    for (k, v) in obj.sorted(by: { $0.key < $1.key }) {
        guard let n = v as? NSNumber, n.doubleValue.isFinite,
              n.doubleValue != n.doubleValue.rounded(), abs(n.doubleValue) < 1e15 else { continue }
        var fixed = obj
        fixed[k] = Int(n.doubleValue)
        if let d = try? JSONSerialization.data(withJSONObject: fixed), (try? JSONDecoder().decode(T.self, from: d)) != nil {
            return "field \"\(k)\" is \(n.doubleValue), not an integer"
        }
    }
    return nil
}

/// A JSON decoding error as one line: the field and what was wrong with it.
func describeDecoding(_ error: Error) -> String {
    func path(_ c: [CodingKey]) -> String {
        c.isEmpty ? "" : "field \"" + c.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") + "\" "
    }
    switch error as? DecodingError {
    case let .typeMismatch(type, ctx)?:
        return "\(path(ctx.codingPath))is not \(type == Int.self ? "an integer" : type == String.self ? "a string" : "a \(type)")"
            + (ctx.debugDescription.isEmpty ? "" : " (\(ctx.debugDescription))")
    case let .valueNotFound(_, ctx)?: return "\(path(ctx.codingPath))is null"
    case let .keyNotFound(key, ctx)?: return "\(path(ctx.codingPath))has no \"\(key.stringValue)\""
    case let .dataCorrupted(ctx)?:
        // Foundation reports a number that does not fit (`"hidden": 32.5`) as data corruption with no
        // path; its description says which number, which "not valid JSON" would not
        return "\(path(ctx.codingPath))\(ctx.codingPath.isEmpty ? "" : "is ")not valid: \(ctx.debugDescription)"
    default: return "\(error)"
    }
}
