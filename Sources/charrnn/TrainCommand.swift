// charrnn train — builds the vocabulary, trains, validates, checkpoints and logs loss.csv.

import ArgumentParser
import CharRNN
import Foundation

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a character-level model on UTF-8 text files.",
        discussion: """
        Checkpoints go to <out>/<run>/ (run = corpus name + timestamp unless --name): best.safetensors
        (lowest validation loss), latest.safetensors and loss.csv. Ctrl-C saves latest.safetensors and
        prints the command that resumes the run exactly where it stopped.
        """)

    @Argument(help: ArgumentHelp("UTF-8 text files, or folders of .txt files (name order), joined by a newline (optional with --resume: the run's own corpus).", valueName: "CORPUS"))
    var corpus: [String] = []

    @OptionGroup(title: "Model") var model: ModelOptions
    @OptionGroup(title: "Optimization") var opt: OptimizationOptions
    @OptionGroup(title: "Text") var text: TextOptions
    @OptionGroup(title: "Vocabulary and scale") var scale: ScaleOptions

    @Option(help: ArgumentHelp("Run name (default: corpus name + timestamp).", valueName: "RUN"))
    var name: String?
    @Option(help: ArgumentHelp("Folder that holds the run folders.", valueName: "DIR"))
    var out: String = "checkpoints"
    @Option(help: ArgumentHelp("Continue a run exactly: its folder or a .safetensors file (prefers latest).", valueName: "RUN_DIR_OR_FILE"))
    var resume: String?
    @Flag(help: "With --resume: accept a corpus that differs from the run's (same vocabulary; the data layout is rebuilt).")
    var allowNewCorpus = false
    @Flag(help: "Skip the update of a step whose loss or gradient is NaN/Inf instead of stopping (the run still stops after 10 such steps in a row).")
    var skipNonfinite = false
    @Option(help: ArgumentHelp("Fine-tune: a new run starting from this checkpoint's weights (model config and vocabulary from it, fresh optimizer).", valueName: "RUN_DIR_OR_FILE"))
    var initFrom: String?

    func validate() throws {
        if corpus.isEmpty && resume == nil { throw ValidationError("Missing expected argument '<CORPUS>' (or --resume RUN_DIR_OR_FILE)") }
        if resume != nil && initFrom != nil { throw ValidationError("--resume and --init-from cannot be combined") }
        if allowNewCorpus && resume == nil { throw ValidationError("--allow-new-corpus only applies to --resume") }
        if (initFrom != nil || allowNewCorpus) && corpus.count > 1 { throw ValidationError("--init-from and --allow-new-corpus take one corpus file") }
    }

    func run() throws {
        SetupLog.hold()
        do { try train() } catch let e as ValidationError { SetupLog.discard(); throw e } catch let e as ExitCode { SetupLog.release(); throw e } catch {
            SetupLog.discard()
            printError("error: \(error)")
            throw ExitCode.failure
        }
    }

    func train() throws {
        let trainer: Trainer
        if let resume {
            let loaded = try Checkpoint.load(path: try Checkpoint.resolve(resume, preferred: "latest.safetensors"))
            // refuse a checkpoint whose tensors do not match its metadata before any corpus work
            try Checkpoint.restore(loaded, model: CharRNNModel(config: loaded.meta.model, maxT: 1, maxB: 1))
            let paths = corpus.isEmpty ? (loaded.meta.corpus.paths ?? [loaded.meta.corpus.path]) : corpus
            // A single corpus file is compared with what the run recorded (size, content hash).
            if paths.count == 1, Self.isRegularFile(paths[0]),
               let change = try RunContinuation.corpusChange(recorded: loaded.meta.corpus, path: paths[0]) {
                guard allowNewCorpus else {
                    throw TrainError.invalid("\(loaded.path): the corpus changed: \(change); pass --allow-new-corpus to continue on it with the run's vocabulary")
                }
                let (c, info) = try RunContinuation.corpus(path: paths[0], vocabulary: loaded.meta.vocabulary, normalize: loaded.meta.train.normalize)
                trainer = try Trainer(resume: loaded, corpus: c, maxIters: opt.maxIters, epochs: explicitEpochs(), newCorpus: info)
                printError("continuing on a new corpus \(paths[0]): \(c.count) tokens")
            } else {
                let (c, _) = try scale.load(paths: paths, options: loaded.meta.train.loadOptions, out: out, train: loaded.meta.train)
                trainer = try Trainer(resume: loaded, corpus: c, maxIters: opt.maxIters, epochs: explicitEpochs())
            }
            RunContinuation.removeStaleTempFiles(runDir: trainer.runDir)
            setThreads(loaded.meta.train.threads)
            printError("resuming \(trainer.runDir) at iteration \(loaded.meta.progress.iteration) (epoch \(String(format: "%.2f", loaded.meta.epoch)))")
        } else {
            let path = corpus[0]
            var t = TrainConfig()
            opt.apply(to: &t)
            t.unit = text.unit; t.normalize = text.normalize
            scale.apply(to: &t)
            setThreads(t.threads)
            if let initFrom {
                let base = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
                let dir = (out as NSString).appendingPathComponent(name ?? "\(base)-\(Self.timestamp())")
                trainer = try fineTune(initFrom, corpus: path, train: t, runDir: dir)
            } else {
                let (c, files) = try scale.load(paths: corpus, options: t.loadOptions, out: out, train: t)
                var info = CorpusInfo(name: c.name, path: path, bytes: files.reduce(0) { $0 + $1.size }, tokens: c.count,
                                      hash: corpus.count == 1 && Self.isRegularFile(path) ? try CorpusHash.file(path) : nil)
                if corpus.count > 1 { info.paths = corpus }
                let runName = name ?? "\(c.name)-\(Self.timestamp())"
                let dir = (out as NSString).appendingPathComponent(runName)
                var mc = model.config(vocabSize: c.vocabulary.count)
                try scale.applySoftmax(to: &mc, corpus: c)
                // the data layout first: a --batch larger than the corpus is "too small", not "out of memory"
                _ = try Batches(tokenCount: c.count, batch: t.batch, seq: t.seq, trainFrac: t.trainFrac, valFrac: t.valFrac, file: path)
                try ScaleOptions.checkMemory(corpus: c, config: mc, train: t)
                trainer = try Trainer(corpus: c, corpusInfo: info, model: mc, train: t, runDir: dir)
            }
            let b = trainer.batches
            let mc = trainer.model.config
            SetupLog.info("minibatches of \(t.batch)×\(t.seq): train \(b.ntrain), val \(b.nval), test \(b.ntest); "
                       + "\(trainer.totalIterations) iterations; model \(mc.cell.rawValue) \(mc.layers)×\(mc.hidden), "
                       + "\(mc.parameterCount) parameters → \(trainer.runDir)")
        }
        SetupLog.release()
        let progress = ProgressPrinter(evalEvery: trainer.meta.train.evalEvery)
        Interrupt.install()
        trainer.shouldStop = { Interrupt.requested }
        trainer.skipNonFinite = skipNonfinite
        // Fault injection for the reliability tests: CHARRNN_FAULT_NONFINITE=3,4,5 puts a NaN into the
        // gradient at those (1-based) iterations.
        if let spec = ProcessInfo.processInfo.environment["CHARRNN_FAULT_NONFINITE"] {
            let at = Set(spec.split(separator: ",").compactMap { Int($0) })
            trainer.gradientFault = { it, g in if at.contains(it) { g[0] = .nan } }
        }
        let summary = try trainer.run { progress.handle($0) }
        progress.finish()
        if summary.interrupted {
            printError("interrupted at iteration \(summary.iterations); saved \(trainer.latestPath)")
            printError("resume with: charrnn train --resume \(trainer.runDir)")
            throw ExitCode(Interrupt.exitCode)
        }
        let best = summary.bestValLoss.map { String(format: "%.4f", $0) } ?? "-"
        if summary.skippedSteps > 0 { printError("skipped \(summary.skippedSteps) non-finite steps (--skip-nonfinite)") }
        printError("done: \(summary.iterations) iterations, best val loss \(best) at iteration \(trainer.meta.progress.bestIteration)")
        printError("sample with: charrnn sample --checkpoint \(trainer.runDir)")
    }

    /// --init-from: the checkpoint's model and vocabulary, this command's optimization flags.
    func fineTune(_ source: String, corpus path: String, train t: TrainConfig, runDir: String) throws -> Trainer {
        let loaded = try Checkpoint.load(path: try Checkpoint.resolve(source))
        let ignored = ["--model", "--layers", "--hidden", "--embed", "--unit", "--normalize"].filter { f in
            CommandLine.arguments.contains { $0 == f || $0.hasPrefix(f + "=") }
        }
        if !ignored.isEmpty { printError("warning: \(ignored.joined(separator: " ")) ignored: --init-from takes the model and vocabulary from \(loaded.path)") }
        var t = t
        t.unit = loaded.meta.vocabulary.unit; t.normalize = loaded.meta.train.normalize
        let (c, info) = try RunContinuation.corpus(path: path, vocabulary: loaded.meta.vocabulary, normalize: t.normalize)
        let dropout = CommandLine.arguments.contains { $0 == "--dropout" || $0.hasPrefix("--dropout=") } ? model.dropout : nil
        printError("fine-tuning from \(loaded.path) (iteration \(loaded.meta.progress.iteration)): fresh optimizer state, new run")
        return try Trainer(initFrom: loaded, corpus: c, corpusInfo: info, train: t, dropout: dropout, runDir: runDir)
    }

    /// --epochs only counts on resume when given explicitly.
    func explicitEpochs() -> Double? {
        CommandLine.arguments.contains { $0 == "--epochs" || $0.hasPrefix("--epochs=") } ? opt.epochs : nil
    }

    func setThreads(_ n: Int) { BLASThreads.set(n) }

    static func isRegularFile(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && !isDir.boolValue
    }

    static func timestamp() -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "yyyyMMdd-HHmmss"
        return f.string(from: Date())
    }
}

/// Informational lines of `train`'s set-up (corpus summary, cache, memory estimate) are held back
/// until the run starts, so a refused run prints only its one-line error.
enum SetupLog {
    static var held: [String]? = nil
    static func info(_ s: String) { if held != nil { held!.append(s) } else { printError(s) } }
    static func hold() { held = [] }
    static func release() { let h = held ?? []; held = nil; h.forEach(printError) }
    static func discard() { held = nil }
}

/// Runs a command's work; a library error becomes one `error: …` line on stderr and exit status 1.
func reportingErrors(_ work: () throws -> Void) throws {
    do { try work() } catch {
        printError("error: \(error)")
        throw ExitCode.failure
    }
}

func printError(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}
