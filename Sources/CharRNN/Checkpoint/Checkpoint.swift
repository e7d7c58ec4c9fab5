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
public struct CorpusInfo: Codable, Sendable, Equatable {
    public var name: String
    public var path: String
    public var bytes: Int
    public var tokens: Int
    /// `CorpusHash` of the file's bytes (16 hex digits); nil in checkpoints written before it existed.
    public var hash: String?
    /// Every input (files and directories) when there were several; `path` is the first.
    public var paths: [String]? = nil
    public init(name: String, path: String, bytes: Int, tokens: Int, hash: String? = nil) {
        self.name = name; self.path = path; self.bytes = bytes; self.tokens = tokens; self.hash = hash
    }
}

/// Counters of a run that a checkpoint carries.
public struct RunProgress: Sendable, Equatable {
    public var iteration = 0
    public var lr: Float = 0
    public var rng = Xoshiro256(seed: 0)
    public var optimizerSteps = 0
    public var bestValLoss: Double? = nil
    public var bestIteration = 0
    public var lastValLoss: Double? = nil
    public var elapsed: Double = 0
    public init() {}
}

/// Everything but the tensors.
public struct CheckpointMeta: Sendable {
    public static let formatName = "charrnn"
    public static let formatVersion = 1
    public var model: ModelConfig
    public var train: TrainConfig
    public var vocabulary: Vocabulary
    public var corpus: CorpusInfo
    public var progress: RunProgress
    /// Iterations per epoch (number of train minibatches).
    public var trainBatches: Int
    /// Further `__metadata__` entries (e.g. `vocab_counts`, `init_from`), written as they are and read
    /// back from every key this struct does not decode itself.
    public var extra: [String: String] = [:]
    public var epoch: Double { Double(progress.iteration) / Double(max(1, trainBatches)) }

    public init(model: ModelConfig, train: TrainConfig, vocabulary: Vocabulary, corpus: CorpusInfo, progress: RunProgress, trainBatches: Int) {
        self.model = model; self.train = train; self.vocabulary = vocabulary; self.corpus = corpus
        self.progress = progress; self.trainBatches = trainBatches
    }
}

public struct CheckpointError: Error, CustomStringConvertible {
    public let file: String
    public let message: String
    public var description: String { "\(file): \(message)" }
}

public enum Checkpoint {
    // MARK: - Write

    /// Serialises model, optimizer and state with `meta` and writes `path` atomically.
    public static func save(to path: String, model: CharRNNModel, optimizer: Optimizer?, state: RecurrentState?, meta: CheckpointMeta) throws {
        try save(to: [path], model: model, optimizer: optimizer, state: state, meta: meta)
    }

    /// The same checkpoint, serialised once, written atomically to each path in order.
    public static func save(to paths: [String], model: CharRNNModel, optimizer: Optimizer?, state: RecurrentState?, meta: CheckpointMeta) throws {
        var w = SafeTensorsWriter()
        for v in model.layout.views {
            w.add(v.name, shape: v.shape, floats: UnsafeBufferPointer(start: model.params.ptr + v.offset, count: v.count))
        }
        if let optimizer {
            for (slot, buf) in zip(optimizer.kind.slots, optimizer.moments) {
                for v in model.layout.views {
                    w.add(StateDict.moment(slot, of: v.name), shape: v.shape,
                          floats: UnsafeBufferPointer(start: buf.ptr + v.offset, count: v.count))
                }
            }
        }
        if let state {
            let shape = [state.batch, model.config.hidden]
            for (k, h) in state.h.enumerated() { w.add(StateDict.stateH(k), shape: shape, floats: UnsafeBufferPointer(start: h.ptr, count: h.count)) }
            for (k, c) in state.c.enumerated() { w.add(StateDict.stateC(k), shape: shape, floats: UnsafeBufferPointer(start: c.ptr, count: c.count)) }
        }
        w.metadata = encode(meta, optimizer: optimizer)
        try w.write(to: paths)
    }

    static func json<T: Encodable>(_ value: T) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try! enc.encode(value), as: UTF8.self)
    }

    static func encode(_ meta: CheckpointMeta, optimizer: Optimizer?) -> [String: String] {
        let p = meta.progress
        var m: [String: String] = [
            "format": CheckpointMeta.formatName,
            "format_version": String(CheckpointMeta.formatVersion),
            "model": json(meta.model),
            "train": json(meta.train),
            "vocab": json(meta.vocabulary.tokens),
            "unit": meta.vocabulary.unit.rawValue,
            "corpus": json(meta.corpus),
            "train_batches": String(meta.trainBatches),
            "iteration": String(p.iteration),
            "epoch": String(meta.epoch),
            "cursor": String(meta.trainBatches > 0 ? p.iteration % meta.trainBatches : 0),
            "lr": "\(p.lr)",
            "rng": json(p.rng.words.map { String($0) }),
            "optimizer": optimizer?.kind.rawValue ?? meta.train.optim.rawValue,
            "optimizer_steps": String(p.optimizerSteps),
            "best_iteration": String(p.bestIteration),
            "elapsed_sec": String(p.elapsed),
        ]
        if let u = meta.vocabulary.unknownID { m["unk_id"] = String(u) }
        if let b = p.bestValLoss { m["best_val_loss"] = "\(b)" }
        if let v = p.lastValLoss { m["val_loss"] = "\(v)" }
        m.merge(meta.extra) { core, _ in core }
        return m
    }

    // MARK: - Read

    /// The metadata keys `load` decodes into `CheckpointMeta`'s own fields.
    static let coreKeys: Set<String> = ["format", "format_version", "model", "train", "vocab", "unit", "corpus", "train_batches",
                                        "iteration", "epoch", "cursor", "lr", "rng", "optimizer", "optimizer_steps",
                                        "best_iteration", "elapsed_sec", "best_val_loss", "val_loss"]

    /// A checkpoint read and validated at the format level; `restore` puts its tensors in place.
    public struct Loaded: Sendable {
        public let path: String
        public let file: SafeTensorsFile
        public let meta: CheckpointMeta
        public var hasOptimizerState: Bool { file.tensors[StateDict.moment(meta.train.optim.slots[0], of: StateDict.weightHH(0))] != nil }
    }

    /// Reads `path` (a .safetensors file) and decodes its metadata.
    public static func load(path: String) throws -> Loaded {
        try load(bytes: AtomicFile.read(from: path), path: path)
    }

    /// Validates and decodes a checkpoint held in memory (`path` names it in errors). Same checks as
    /// `load(path:)`; the fuzz target and the hostile-input tests call this.
    public static func load(bytes: [UInt8], path: String) throws -> Loaded {
        let file = try SafeTensorsFile(bytes: bytes, path: path)
        let md = file.metadata
        func fail(_ msg: String) -> CheckpointError { CheckpointError(file: path, message: msg) }
        func field(_ key: String) throws -> String {
            guard let v = md[key] else { throw fail("not a charrnn checkpoint: metadata has no \"\(key)\"") }
            return v
        }
        func decode<T: Decodable>(_ type: T.Type, _ key: String) throws -> T {
            do { return try JSONDecoder().decode(T.self, from: Data(try field(key).utf8)) } catch let e as CheckpointError { throw e } catch {
                throw fail("metadata \"\(key)\" is not valid: \(error)")
            }
        }
        func int(_ key: String) throws -> Int {
            guard let v = Int(try field(key)) else { throw fail("metadata \"\(key)\" is not an integer") }
            return v
        }
        guard md["format"] == CheckpointMeta.formatName else { throw fail("not a charrnn checkpoint (metadata format is \(md["format"].map { "\"\($0)\"" } ?? "missing"))") }
        let version = try int("format_version")
        if version > CheckpointMeta.formatVersion {
            throw fail("format version \(version) is newer than this charrnn reads (\(CheckpointMeta.formatVersion)); upgrade charrnn")
        }
        let model = try decode(ModelConfig.self, "model")
        if let problem = model.problem { throw fail("model config invalid: \(problem)") }
        let train = try decode(TrainConfig.self, "train")
        let tokens = try decode([String].self, "vocab")
        guard let unit = TokenUnit(rawValue: try field("unit")) else { throw fail("unknown token unit \(md["unit"]!)") }
        guard tokens.count == model.vocabSize else { throw fail("vocabulary has \(tokens.count) entries but the model expects \(model.vocabSize)") }
        try checkModelTensors(model, in: file, fail: fail)
        if let problem = train.problem { throw fail("train config invalid: \(problem)") }
        let corpus = try decode(CorpusInfo.self, "corpus")
        var p = RunProgress()
        p.iteration = try int("iteration")
        p.optimizerSteps = try int("optimizer_steps")
        p.bestIteration = try int("best_iteration")
        guard let lr = Float(try field("lr")) else { throw fail("metadata \"lr\" is not a number") }
        p.lr = lr
        let words = try decode([String].self, "rng").compactMap { UInt64($0) }
        guard words.count == 4, words.contains(where: { $0 != 0 }) else { throw fail("metadata \"rng\" is not a valid generator state") }
        p.rng = Xoshiro256(words: words)
        guard p.iteration >= 0, p.optimizerSteps >= 0, p.bestIteration >= 0, lr.isFinite, lr >= 0 else {
            throw fail("metadata counters are invalid (negative iteration or step count, or a non-finite learning rate)")
        }
        p.bestValLoss = md["best_val_loss"].flatMap(Double.init)
        p.lastValLoss = md["val_loss"].flatMap(Double.init)
        p.elapsed = md["elapsed_sec"].flatMap(Double.init) ?? 0
        var unknownID: Int? = nil
        if let u = md["unk_id"] {
            guard let v = Int(u), v >= 0, v < tokens.count else { throw fail("metadata \"unk_id\" is not a vocabulary id") }
            unknownID = v
        }
        let trainBatches = try int("train_batches")
        guard trainBatches >= 0 else { throw fail("metadata \"train_batches\" is negative") }
        var meta = CheckpointMeta(model: model, train: train, vocabulary: Vocabulary(unit: unit, tokens: tokens, unknownID: unknownID),
                                  corpus: corpus, progress: p, trainBatches: trainBatches)
        meta.extra = md.filter { !coreKeys.contains($0.key) }
        return Loaded(path: path, file: file, meta: meta)
    }

    /// Model-level validation (STYLE.md, after the format rules): every parameter tensor the config
    /// implies is present as F32 with its exact shape. Building the model then allocates no more than
    /// the file holds, so a forged `hidden` or `layers` cannot ask for terabytes, and the sizes
    /// computed here are overflow-checked.
    static func checkModelTensors(_ c: ModelConfig, in file: SafeTensorsFile, fail: (String) -> CheckpointError) throws {
        // Each layer has four tensors in the file; more layers than tensors cannot be valid.
        guard c.layers <= file.tensors.count else {
            throw fail("model config has \(c.layers) layers but the file holds only \(file.tensors.count) tensors")
        }
        let (G, overflow) = c.cell.gates.multipliedReportingOverflow(by: c.hidden)
        guard !overflow else { throw fail("model config hidden size \(c.hidden) is too large") }
        var expected: [(String, [Int])] = []
        if c.embed > 0 { expected.append((StateDict.embedding, [c.vocabSize, c.embed])) }
        for k in 0..<c.layers {
            expected += [(StateDict.weightIH(k), [G, c.inputSize(layer: k)]), (StateDict.weightHH(k), [G, c.hidden]),
                         (StateDict.biasIH(k), [G]), (StateDict.biasHH(k), [G])]
        }
        if let a = c.adaptive {
            // the config's own `problem` (checked before this) bounds cutoffs and order to the vocabulary
            let b = a.bounds
            expected += [(StateDict.adaptiveHeadWeight, [a.headSize + a.clusters, c.hidden]),
                         (StateDict.adaptiveHeadBias, [a.headSize + a.clusters])]
            for i in 0..<a.clusters {
                let w = a.tailWidth(i, hidden: c.hidden)
                expected += [(StateDict.adaptiveTailProj(i), [w, c.hidden]), (StateDict.adaptiveTailOut(i), [b[i + 1] - b[i], w])]
            }
        } else {
            expected += [(StateDict.decoderWeight, [c.vocabSize, c.hidden]), (StateDict.decoderBias, [c.vocabSize])]
        }
        for (name, shape) in expected {
            guard let info = file.tensors[name] else { throw SafeTensorsError(file: file.path, kind: .notFound(name)) }
            guard info.dtype == .F32 else { throw SafeTensorsError(file: file.path, kind: .wrongDType(name, info.dtype)) }
            guard info.shape == shape else { throw SafeTensorsError(file: file.path, kind: .wrongShape(name, info.shape, expected: shape)) }
        }
    }

    /// Copies the model tensors (and, when given, optimizer moments and carried state) into place.
    /// Every expected tensor must be present with its exact shape and dtype F32.
    public static func restore(_ c: Loaded, model: CharRNNModel, optimizer: Optimizer? = nil, state: RecurrentState? = nil) throws {
        precondition(model.config == c.meta.model, "restore into a model of another shape")
        for v in model.layout.views {
            try c.file.copyFloats(v.name, shape: v.shape, into: model.params.ptr + v.offset)
        }
        if let optimizer {
            for (slot, buf) in zip(optimizer.kind.slots, optimizer.moments) {
                for v in model.layout.views {
                    try c.file.copyFloats(StateDict.moment(slot, of: v.name), shape: v.shape, into: buf.ptr + v.offset)
                }
            }
            optimizer.stepCount = c.meta.progress.optimizerSteps
        }
        if let state {
            let shape = [state.batch, model.config.hidden]
            for (k, h) in state.h.enumerated() { try c.file.copyFloats(StateDict.stateH(k), shape: shape, into: h.ptr) }
            for (k, cc) in state.c.enumerated() { try c.file.copyFloats(StateDict.stateC(k), shape: shape, into: cc.ptr) }
        }
    }
}
