// charrnn train — builds the vocabulary, trains, validates, checkpoints and logs loss.csv.

import ArgumentParser
import CharRNN
import Foundation

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a character-level model on a UTF-8 text file.",
        discussion: """
        Checkpoints go to <out>/<run>/ (run = corpus name + timestamp unless --name): best.safetensors
        (lowest validation loss), latest.safetensors and loss.csv. Ctrl-C saves latest.safetensors and
        prints the command that resumes the run exactly where it stopped.
        """)

    @Argument(help: ArgumentHelp("UTF-8 text to learn (optional with --resume: the run's own corpus).", valueName: "CORPUS"))
    var corpus: String?

    @OptionGroup(title: "Model") var model: ModelOptions
    @OptionGroup(title: "Optimization") var opt: OptimizationOptions
    @OptionGroup(title: "Text") var text: TextOptions

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
        if corpus == nil && resume == nil { throw ValidationError("Missing expected argument '<CORPUS>' (or --resume RUN_DIR_OR_FILE)") }
        if resume != nil && initFrom != nil { throw ValidationError("--resume and --init-from cannot be combined") }
        if allowNewCorpus && resume == nil { throw ValidationError("--allow-new-corpus only applies to --resume") }
    }

    func run() throws {
        do { try train() } catch let e as ValidationError { throw e } catch let e as ExitCode { throw e } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
    }

    func train() throws {
        let trainer: Trainer
        if let resume {
            let loaded = try Checkpoint.load(path: try Checkpoint.resolve(resume, preferred: "latest.safetensors"))
            let path = corpus ?? loaded.meta.corpus.path
            if let change = try RunContinuation.corpusChange(recorded: loaded.meta.corpus, path: path) {
                guard allowNewCorpus else {
                    throw TrainError.invalid("\(loaded.path): the corpus changed: \(change); pass --allow-new-corpus to continue on it with the run's vocabulary")
                }
                let (c, info) = try RunContinuation.corpus(path: path, vocabulary: loaded.meta.vocabulary, normalize: loaded.meta.train.normalize)
                trainer = try Trainer(resume: loaded, corpus: c, maxIters: opt.maxIters, epochs: explicitEpochs(), newCorpus: info)
                printError("continuing on a new corpus \(path): \(c.count) tokens")
            } else {
                let c = try Corpus.load(path: path, unit: loaded.meta.vocabulary.unit, normalize: loaded.meta.train.normalize)
                trainer = try Trainer(resume: loaded, corpus: c, maxIters: opt.maxIters, epochs: explicitEpochs())
            }
            RunContinuation.removeStaleTempFiles(runDir: trainer.runDir)
            setThreads(loaded.meta.train.threads)
            printError("resuming \(trainer.runDir) at iteration \(loaded.meta.progress.iteration) (epoch \(String(format: "%.2f", loaded.meta.epoch)))")
        } else {
            let path = corpus!
            var t = TrainConfig()
            opt.apply(to: &t)
            t.unit = text.unit; t.normalize = text.normalize
            setThreads(t.threads)
            let t0 = Date()
            let c = try Corpus.load(path: path, unit: t.unit, normalize: t.normalize)
            let bytes = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
            let info = CorpusInfo(name: c.name, path: path, bytes: bytes, tokens: c.count, hash: try CorpusHash.file(path))
            let runName = name ?? "\(c.name)-\(Self.timestamp())"
            let dir = (out as NSString).appendingPathComponent(runName)
            if let initFrom {
                trainer = try fineTune(initFrom, corpus: path, train: t, runDir: dir)
            } else {
                trainer = try Trainer(corpus: c, corpusInfo: info, model: model.config(vocabSize: c.vocabulary.count), train: t, runDir: dir)
            }
            printError(String(format: "corpus %@: %d tokens (%@), vocabulary %d, loaded in %.2fs",
                              path, c.count, t.unit.rawValue, c.vocabulary.count, Date().timeIntervalSince(t0)))
            let b = trainer.batches
            let mc = trainer.model.config
            printError("minibatches of \(t.batch)×\(t.seq): train \(b.ntrain), val \(b.nval), test \(b.ntest); "
                       + "\(trainer.totalIterations) iterations; model \(mc.cell.rawValue) \(mc.layers)×\(mc.hidden), "
                       + "\(mc.parameterCount) parameters → \(dir)")
        }
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

    static func timestamp() -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "yyyyMMdd-HHmmss"
        return f.string(from: Date())
    }
}

func printError(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}
