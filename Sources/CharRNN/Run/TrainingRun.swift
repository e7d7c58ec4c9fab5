// Run/TrainingRun.swift — one `charrnn train` from its request to a `Trainer` ready to run: which
// kind of start it is (a fresh run, a resume, a fine-tuning run, a resume on a new corpus), the
// checkpoint read and restored once (before any corpus work), the corpus loaded (token cache, memory
// check, content hash), the run folder named (corpus name + timestamp unless a name is given), and the
// set-up facts reported as `Event`s. It prints nothing and exits nowhere: the CLI shows the events,
// drives `trainer.run`, and turns the typed errors into its one-line messages.

import Foundation

/// A run prepared from a `Request`: its corpus loaded, its folder made and locked, its `trainer`
/// built (fresh, resumed, fine-tuned or continued on a new corpus).
public struct TrainingRun {
    // MARK: - Request

    /// How the run starts.
    public enum Mode: Sendable {
        /// A new run with a model of this shape (`vocabSize` is taken from the corpus) and output layer.
        case fresh(model: ModelConfig, softmax: Softmax)
        /// Continues the run of `checkpoint` (a run folder prefers latest) exactly; `maxIters`/`epochs`
        /// replace its stopping point when given. `allowNewCorpus` accepts a corpus that differs from
        /// the recorded one (same vocabulary; the data layout is rebuilt).
        case resume(checkpoint: String, maxIters: Int?, epochs: Double?, allowNewCorpus: Bool)
        /// A new run starting from the weights of `checkpoint` (a run folder prefers best): its model
        /// and vocabulary, the request's training config, `dropout` replacing its dropout when given.
        case initFrom(checkpoint: String, dropout: Float?)
    }

    /// The output layer of a fresh run.
    public enum Softmax: Sendable, Equatable {
        case full
        /// Adaptive softmax; `cutoffs` nil = chosen from the corpus frequencies.
        case adaptive(cutoffs: [Int]?)
    }

    /// Where the first-pass token cache lives.
    public enum TokenCache: Sendable, Equatable {
        /// `RunFolder.cacheDir(under: outDir)`.
        case beside
        case at(String)
        case off
    }

    /// What to train: a fresh model, a resume or a fine-tuning, on which corpus files, into which folder.
    public struct Request: Sendable {
        /// Fresh, resume or fine-tune.
        public var mode: Mode
        /// Text files or folders of .txt files; may be empty on resume (the run's own corpus).
        /// `.initFrom` and `.resume` with `allowNewCorpus` take at most one.
        public var corpus: [String]
        /// The training config of a fresh or fine-tuning run (a resume uses its checkpoint's).
        public var train: TrainConfig
        /// The folder that holds the run folders.
        public var outDir: String
        /// The run folder's name (default: corpus name + timestamp): one path component. Not used on resume.
        public var name: String?
        /// `.beside` puts the cache under `outDir`, or on resume under the folder that holds the run.
        public var tokenCache: TokenCache
        /// The processes this one trains with: `LocalReducer` alone, `MPIReducer` under mpirun. Every
        /// rank builds the same run (rank 0's folder name), checks that they agree, and only rank 0
        /// writes the folder.
        package var reducer: any GradientReducer = LocalReducer()
        /// Whether this process writes the run folder (and so takes its lock): alone, or rank 0.
        var writesFolder: Bool { reducer.rank == 0 }
        /// A fresh or fine-tuning run may replace a run folder that already holds a run (`--overwrite`);
        /// never the folder of the `--init-from` checkpoint.
        public var overwrite: Bool
        /// On `.resume`: `--patience` (0 = none) and `--min-delta` given again; they replace the run's
        /// recorded ones (`ResumePoint`). A fresh or fine-tuning run takes them from `train`.
        public var resumePatience: Int? = nil
        public var resumeMinDelta: Double? = nil

        /// A request; `corpus` lists files or folders of .txt files (joined by a newline; empty on a resume that uses the run's own).
        public init(mode: Mode, corpus: [String], train: TrainConfig = TrainConfig(), outDir: String = "checkpoints",
                    name: String? = nil, tokenCache: TokenCache = .beside, overwrite: Bool = false) {
            self.mode = mode; self.corpus = corpus; self.train = train; self.outDir = outDir
            self.name = name; self.tokenCache = tokenCache; self.overwrite = overwrite
        }
    }

    // MARK: - Outcome

    /// What the run turned out to be.
    package enum Plan: Sendable, Equatable {
        case fresh
        case resume
        /// A resume on a corpus that differs from the recorded one, at `path`.
        case newCorpus(path: String)
        /// A fine-tuning run from the checkpoint at `source`.
        case initFrom(source: String)
    }

    /// Set-up facts, in the order they happen.
    public enum Event: Sendable, CustomStringConvertible {
        /// Corpus decoding progress (bytes); `done` 0 when a load starts.
        case loading(done: Int, total: Int)
        /// The checkpoint of `--resume`/`--init-from` was read and its tensors restored.
        case checkpointRead(path: String)
        /// Set-up detail: corpus and token cache, vocabulary, adaptive softmax, memory, data layout.
        case detail(String)
        case fineTuning(from: String, iteration: Int)
        case continuingOnNewCorpus(path: String, tokens: Int)
        case resuming(runDir: String, iteration: Int, epoch: Double)

        /// One line for the user.
        public var description: String {
            switch self {
            case let .loading(done, total): return "loading \(done) / \(total) bytes"
            case let .checkpointRead(path): return "read \(path)"
            case let .detail(s): return s
            case let .fineTuning(from, it): return "fine-tuning from \(from) (iteration \(it)): fresh optimizer state, new run"
            case let .continuingOnNewCorpus(path, tokens): return "continuing on a new corpus \(path): \(tokens) tokens"
            case let .resuming(dir, it, epoch): return "resuming \(dir) at iteration \(it) (epoch \(String(format: "%.2f", epoch)))"
            }
        }
    }

    package let plan: Plan
    /// The prepared trainer: call `run(report:)` while this value (which holds the run folder's lock) is alive.
    public let trainer: Trainer
    /// The run folder's writer lock, held while this value lives (see `RunLock`); only the process that
    /// writes the folder holds it (rank 0 of a data-parallel run), nil on the other ranks.
    package let lock: RunLock?

    // MARK: - Set-up

    /// Prepares the run of `request`: reads and restores the checkpoint (if any), loads the corpus,
    /// creates the run folder and builds the trainer; sets the process's worker-pool width from the
    /// run's `threads`.
    /// - Throws: `TrainError`, `TextError`, `CheckpointError`, `SafeTensorsError`, `LossLogError`,
    ///   `OutOfMemoryPrediction`.
    public init(_ request: Request, report: (Event) -> Void = { _ in }) throws {
        if case .resume = request.mode {} else if let name = request.name { try RunFolder.checkName(name) }
        switch request.mode {
        case let .fresh(model, softmax):
            (plan, trainer, lock) = try Self.fresh(request, model: model, softmax: softmax, report: report)
        case let .resume(checkpoint, maxIters, epochs, allowNewCorpus):
            (plan, trainer, lock) = try Self.resume(request, checkpoint: checkpoint, maxIters: maxIters, epochs: epochs,
                                              allowNewCorpus: allowNewCorpus, report: report)
        case let .initFrom(checkpoint, dropout):
            (plan, trainer, lock) = try Self.initFrom(request, checkpoint: checkpoint, dropout: dropout, report: report)
        }
        // ranks that disagree: a fresh run's folder is left as it was found (no .lock, no empty loss.csv)
        do { try trainer.checkAgreement() } catch { lock?.abandon(); throw error }
    }

    static func fresh(_ r: Request, model: ModelConfig, softmax: Softmax, report: (Event) -> Void) throws -> (Plan, Trainer, RunLock?) {
        precondition(!r.corpus.isEmpty, "a fresh run needs a corpus")
        let t = r.train, path = r.corpus[0]
        try WorkerPool.configure(threads: t.threads)
        let (c, files) = try loadCorpus(r.corpus, options: t.loadOptions, request: r, report: report)
        // absolute paths: a resume from another working directory finds the corpus again
        var info = CorpusInfo(name: c.name, path: RunContinuation.absolutePath(path), bytes: files.reduce(0) { $0 + $1.size },
                              tokens: c.count, hash: c.contentHash)
        if r.corpus.count > 1 { info.paths = r.corpus.map(RunContinuation.absolutePath) }
        var mc = model
        mc.vocabSize = c.vocabulary.count
        if case let .adaptive(cutoffs) = softmax { try chooseAdaptiveSoftmax(&mc, corpus: c, manual: cutoffs, report: report) }
        // the data layout first: a --batch larger than the corpus is "too small", not "out of memory"
        _ = try Batches(tokenCount: c.count, batch: t.batch, seq: t.seq, trainFrac: t.trainFrac, valFrac: t.valFrac, file: path)
        try checkMemory(corpus: c, config: mc, train: t, reducer: r.reducer, report: report)
        var dir = runDir(r, corpusName: c.name)
        let lock: RunLock?
        if defaultName(r) { (dir, lock) = try RunFolder.claimUnused(dir) } else {
            lock = r.writesFolder ? try RunFolder.claimNew(dir, replacing: r.overwrite) : nil
        }
        let trainer = try lock.abandoningOnError { try Trainer(corpus: c, corpusInfo: info, model: mc, train: t, runDir: dir, reducer: r.reducer) }
        reportLayout(trainer, report: report)
        return (.fresh, trainer, lock)
    }

    static func resume(_ r: Request, checkpoint: String, maxIters: Int?, epochs: Double?, allowNewCorpus: Bool,
                       report: (Event) -> Void) throws -> (Plan, Trainer, RunLock?) {
        let file = try RunFolder.resolve(checkpoint, preferring: .latest)
        let folder = parentPath(file)
        // a run writes only files it owns: not through links into another run (`cp -as`), all named at once
        if r.writesFolder { try RunFolder(folder.isEmpty ? "." : folder).checkOwnedFiles() }
        // the lock before the checkpoint is read: a run that another process is writing is neither read
        // half-written nor continued twice
        let lock = r.writesFolder ? try RunLock(runDir: folder.isEmpty ? "." : folder) : nil
        // the token cache beside the run (under the folder that holds it), not under the default --out
        var r = r
        r.outDir = URL(fileURLWithPath: folder.isEmpty ? "." : folder).standardizedFileURL.deletingLastPathComponent().path
        let loaded = try Checkpoint.load(path: file)
        // every tensor checked and restored into the model that will train on, before any corpus work
        let point = try ResumePoint(loaded, maxIters: maxIters, epochs: epochs, patience: r.resumePatience, minDelta: r.resumeMinDelta,
                                    reducer: r.reducer)
        report(.checkpointRead(path: loaded.path))
        let recorded = loaded.meta.corpus
        let paths = r.corpus.isEmpty ? try RunContinuation.recordedCorpus(recorded, checkpoint: checkpoint) : r.corpus
        let plan: Plan
        let trainer: Trainer
        // A single corpus file is compared with what the run recorded: its size, then the content
        // hash that decoding (or the token cache) gives — the file is read once.
        // (a pipe or FIFO has no size to compare and can be read only once: it takes the general path)
        if paths.count == 1, isRegularFile(paths[0], strictly: true) {
            let path = paths[0]
            var change: String? = nil
            var decoded: Corpus? = nil
            let bytes = try RunContinuation.fileSize(path)
            if bytes != recorded.bytes {
                change = "\(path) has \(bytes) bytes but the run was trained on \(recorded.bytes) (\(recorded.path))"
            } else {
                let (c, _) = try loadCorpus(paths, options: loaded.meta.train.loadOptions, request: r, report: report)
                if let h = recorded.hash, let now = c.contentHash, now != h {
                    change = "\(path) has content hash \(now) but the run was trained on \(h) (\(recorded.path))"
                } else {
                    decoded = c
                }
            }
            if let change {
                guard allowNewCorpus else { throw TrainError.corpusChanged(checkpoint: loaded.path, change: change) }
                let (c, info) = try RunContinuation.corpus(path: path, vocabulary: loaded.meta.vocabulary, normalize: loaded.meta.train.normalize)
                trainer = try Trainer(resume: point, corpus: c, newCorpus: info, reducer: r.reducer)
                plan = .newCorpus(path: path)
                report(.continuingOnNewCorpus(path: path, tokens: c.count))
            } else if let c = decoded, c.vocabulary == loaded.meta.vocabulary {
                trainer = try Trainer(resume: point, corpus: c, reducer: r.reducer)
                plan = .resume
            } else {
                // The same text, but the run's vocabulary is not the one the loader builds from it (a
                // fine-tuned run, one continued on a new corpus, or one whose unknown token took other
                // characters): the data is rebuilt with the checkpoint's own vocabulary and mapping.
                let (c, _) = try RunContinuation.corpus(path: path, vocabulary: loaded.meta.vocabulary, normalize: loaded.meta.train.normalize)
                trainer = try Trainer(resume: point, corpus: c, reducer: r.reducer)
                plan = .resume
            }
        } else {
            let (c, _) = try loadCorpus(paths, options: loaded.meta.train.loadOptions, request: r, report: report)
            trainer = try Trainer(resume: point, corpus: c, reducer: r.reducer)
            plan = .resume
        }
        if r.reducer.rank == 0 { RunContinuation.removeStaleTempFiles(runDir: trainer.runDir) }
        try WorkerPool.configure(threads: loaded.meta.train.threads)
        report(.detail(trainer.validationSummary))
        report(.resuming(runDir: trainer.runDir, iteration: loaded.meta.progress.iteration, epoch: loaded.meta.epoch))
        return (plan, trainer, lock)
    }

    static func initFrom(_ r: Request, checkpoint: String, dropout: Float?, report: (Event) -> Void) throws -> (Plan, Trainer, RunLock?) {
        precondition(r.corpus.count == 1, "a fine-tuning run takes one corpus file")
        let path = r.corpus[0]
        var t = r.train
        try WorkerPool.configure(threads: t.threads)
        let base = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        var dir = runDir(r, corpusName: base)
        // the weights read once, before any corpus work or run folder
        let source = try FineTuneSource(try Checkpoint.load(path: try RunFolder.resolve(checkpoint)))
        let loaded = source.checkpoint
        report(.checkpointRead(path: loaded.path))
        if RunFolder.sameFile(parentPath(loaded.path), dir) {
            // before any corpus work: the source is never replaced, --overwrite or not
            _ = try RunFolder.claimNew(dir, replacing: false, protecting: loaded.path)
        }
        t.unit = loaded.meta.vocabulary.unit; t.normalize = loaded.meta.train.normalize
        let (c, info) = try RunContinuation.corpus(path: path, vocabulary: loaded.meta.vocabulary, normalize: t.normalize)
        report(.fineTuning(from: loaded.path, iteration: loaded.meta.progress.iteration))
        let lock: RunLock?
        if defaultName(r) && !RunFolder.sameFile(parentPath(loaded.path), dir) {
            (dir, lock) = try RunFolder.claimUnused(dir)
        } else {
            lock = r.writesFolder ? try RunFolder.claimNew(dir, replacing: r.overwrite, protecting: loaded.path) : nil
        }
        let trainer = try lock.abandoningOnError {
            try Trainer(initFrom: source, corpus: c, corpusInfo: info, train: t, dropout: dropout, runDir: dir, reducer: r.reducer)
        }
        reportLayout(trainer, report: report)
        return (.initFrom(source: loaded.path), trainer, lock)
    }

    // MARK: - Corpus

    /// Loads the corpus (through the token cache unless it is off) after checking that the token
    /// buffer will fit in memory, reporting progress and what it found.
    static func loadCorpus(_ paths: [String], options: LoadOptions, request r: Request,
                           report: (Event) -> Void) throws -> (Corpus, [InputFile]) {
        let files = try CorpusLoader.inputs(paths)
        let total = files.reduce(0) { $0 + $1.size }
        try OutOfMemoryPrediction.check("decoding \(paths.joined(separator: " ")) (\(megabytes(total)))",
                                        needed: predictedTokens(files) * 2 + CorpusLoader.chunkBytes,
                                        suggestion: "train on fewer or smaller files")
        let cacheDirectory: String?
        switch r.tokenCache {
        case .beside: cacheDirectory = RunFolder.cacheDir(under: r.outDir)
        case let .at(dir): cacheDirectory = dir
        case .off: cacheDirectory = nil
        }
        report(.loading(done: 0, total: total))
        let t0 = Date()
        let (corpus, _, outcome) = try CorpusLoader.load(paths: paths, options: options, cacheDirectory: cacheDirectory,
                                                         progress: { report(.loading(done: $0, total: $1)) })
        let secs = Date().timeIntervalSince(t0)
        let names = files.count > 3 ? "\(files.count) files from \(paths.joined(separator: " "))" : files.map(\.path).joined(separator: " ")
        let rate = Double(total) / 1_048_576 / max(secs, 1e-9)
        switch outcome {
        case .hit(let p):
            report(.detail(String(format: "corpus %@ (%@): token cache %@ loaded in %.2fs", names, megabytes(total), p, secs)))
        case .built(let p, let reason):
            if let reason { report(.detail("token cache \(p): \(reason); rebuilt")) }
            report(.detail(String(format: "corpus %@ (%@): decoded in %.2fs (%.0f MB/s); token cache → %@",
                                  names, megabytes(total), secs, rate, p)))
        case .writeFailed(let p, let message):
            report(.detail("warning: could not write the token cache \(p): \(message)"))
            report(.detail(String(format: "corpus %@ (%@): decoded in %.2fs", names, megabytes(total), secs)))
        case .off:
            report(.detail(String(format: "corpus %@ (%@): decoded in %.2fs (%.0f MB/s)", names, megabytes(total), secs, rate)))
        }
        let s = corpus.stats
        if s.replacements > 0 {
            report(.detail("\(Setting.lossy): replaced \(s.replacements) invalid UTF-8 sequence\(s.replacements == 1 ? "" : "s") with U+FFFD"))
        }
        var line = "\(corpus.count) tokens (\(options.unit.rawValue)), vocabulary \(corpus.vocabulary.count)"
        if corpus.vocabulary.unknownID != nil {
            line += String(format: " including the unknown token; coverage %.3f%% (%d of %d distinct characters fell out",
                           corpus.coveragePercent, s.droppedDistinct, s.distinctTokens)
            if !s.topDropped.isEmpty {
                line += "; most frequent: " + s.topDropped.map { "\($0.token.debugDescription) \($0.count)" }.joined(separator: ", ")
            }
            line += ")"
        } else {
            line += ", coverage 100%"
        }
        report(.detail(line))
        return (corpus, files)
    }

    /// Tokens expected from the byte count: the share of UTF-8 lead bytes in the first MiB of each file.
    static func predictedTokens(_ files: [InputFile]) -> Int {
        var tokens = 0
        for f in files {
            // a pipe or FIFO is read once, by the decoder (reading a sample here would consume it)
            guard TrainingRun.isRegularFile(f.path, strictly: true) else { tokens += f.size; continue }
            guard let h = FileHandle(forReadingAtPath: f.path) else { tokens += f.size; continue }
            let sample = h.readData(ofLength: 1 << 20)
            try? h.close()
            let leads = sample.reduce(0) { $0 + ($1 & 0xC0 == 0x80 ? 0 : 1) }
            tokens += sample.isEmpty ? f.size : Int(Double(f.size) * Double(leads) / Double(sample.count) * 1.05) + 1
        }
        return tokens
    }

    // MARK: - Model

    /// Sets the adaptive softmax of `config` from the corpus' frequencies (or `manual` cutoffs).
    /// - Throws: `TrainError.softmaxCutoffs` when the cutoffs do not fit the vocabulary.
    static func chooseAdaptiveSoftmax(_ config: inout ModelConfig, corpus: Corpus, manual: [Int]?, report: (Event) -> Void) throws {
        let a = AdaptiveSoftmaxConfig.choose(counts: corpus.counts, hidden: config.hidden, manual: manual)
        if let p = a.problem { throw TrainError.softmaxCutoffs(p) }
        config.adaptive = a
        let b = a.bounds, total = max(1, corpus.count)
        var parts: [String] = []
        for i in 0..<b.count {
            let lo = i == 0 ? 0 : b[i - 1], hi = b[i]
            let n = a.order[lo..<hi].reduce(0) { $0 + corpus.counts[$1] }
            parts.append(String(format: "%@ ranks %d..<%d (%.1f%% of tokens%@)", i == 0 ? "head" : "tail \(i - 1)", lo, hi,
                                100 * Double(n) / Double(total), i == 0 ? "" : ", width \(a.tailWidth(i - 1, hidden: config.hidden))"))
        }
        report(.detail("adaptive softmax: cutoffs \(a.cutoffs.map(String.init).joined(separator: ",")): " + parts.joined(separator: "; ")))
    }

    /// Refuses a run that will not fit, with the estimate and what to change.
    /// Data-parallel: each rank's activations are for its block of streams, and the ranks on this host
    /// (mpirun's OMPI_COMM_WORLD_LOCAL_SIZE) need their memory at the same time.
    static func checkMemory(corpus: Corpus, config: ModelConfig, train: TrainConfig, reducer: any GradientReducer,
                            report: (Event) -> Void) throws {
        let e = MemoryEstimate(tokenCount: 0, bytesPerToken: corpus.bytesPerToken, config: config, train: train,
                               streams: reducer.streams(of: train.batch).count)
        let local = reducer.size == 1 ? 1 : max(1, Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "") ?? 1)
        let perHost = local > 1 ? " per process, × \(local) processes on this host" : ""
        report(.detail("memory estimate: token array \(megabytes(corpus.count * corpus.bytesPerToken)) (resident) + model \(e)\(perHost)"))
        var hints: [String] = []
        if config.adaptive == nil && config.vocabSize > 2000 { hints.append("\(Setting.softmax) adaptive") }
        if config.vocabSize > 2000 { hints.append("\(Setting.maxVocab) \(max(2, config.vocabSize / 2))") }
        if train.batch > 1 { hints.append("\(Setting.batch) \(max(1, train.batch / 2))") }
        hints.append("a smaller \(Setting.hidden)")
        if local > 1 { hints.append("fewer processes on this host") }
        try OutOfMemoryPrediction.check(local > 1 ? "the model, optimizer and activations of \(local) processes" : "the model, optimizer and activations",
                                        needed: e.total * local,
                                        suggestion: "try " + hints.joined(separator: ", or "))
    }

    static func reportLayout(_ trainer: Trainer, report: (Event) -> Void) {
        let b = trainer.batches, t = trainer.meta.train, mc = trainer.model.config
        report(.detail(trainer.validationSummary))
        if trainer.reducer.size > 1 {
            let g = trainer.reducer
            report(.detail("data-parallel: \(g.size) processes, each a block of the \(t.batch) streams (rank 0: \(trainer.streams.count)); "
                           + "sharded update (reduce-scatter and allgather in rank order), \(g.bytesSentPerIteration(parameters: mc.parameterCount)) bytes sent per rank per iteration"))
        }
        report(.detail("minibatches of \(t.batch)×\(t.seq): train \(b.ntrain), val \(b.nval), test \(b.ntest); "
                       + "\(trainer.totalIterations) iterations; model \(mc.cell.rawValue) \(mc.layers)×\(mc.hidden), "
                       + "\(mc.parameterCount) parameters → \(trainer.runDir)"))
    }

    // MARK: - Helpers

    /// `<out>/<name>`, the name defaulting to `<corpus name>-<yyyyMMdd-HHmmss>`.
    static func runDir(_ r: Request, corpusName: String) -> String {
        // data-parallel: rank 0's clock names the folder (the ranks may start a second apart)
        let stamp = r.reducer.broadcast(timestamp())
        return (r.outDir as NSString).appendingPathComponent(r.name ?? "\(RunFolder.defaultStem(corpusName: corpusName))-\(stamp)")
    }

    /// Whether the run folder gets a default name this process may change (`claimUnused`): no
    /// --name, no --overwrite, and one process (the ranks of a data-parallel run must agree on it).
    static func defaultName(_ r: Request) -> Bool {
        r.name == nil && !r.overwrite && r.writesFolder && r.reducer.size == 1
    }

    static func timestamp() -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "yyyyMMdd-HHmmss"
        return f.string(from: Date())
    }

    /// Whether `path` exists and is not a folder (`strictly`: is a regular file, not a pipe or device).
    static func isRegularFile(_ path: String, strictly: Bool = false) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        return strictly ? st.st_mode & S_IFMT == S_IFREG : st.st_mode & S_IFMT != S_IFDIR
    }

    static func megabytes(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1_048_576) }
}

extension Optional where Wrapped == RunLock {
    /// `RunLock.abandoningOnError` when there is a lock (the process that writes the folder), else the body.
    func abandoningOnError<T>(_ body: () throws -> T) throws -> T {
        switch self {
        case .some(let lock): return try lock.abandoningOnError(body)
        case .none: return try body()
        }
    }
}
