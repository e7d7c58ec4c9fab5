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

    func validate() throws {
        if corpus.isEmpty && resume == nil { throw ValidationError("Missing expected argument '<CORPUS>' (or --resume RUN_DIR_OR_FILE)") }
    }

    func run() throws {
        do { try train() } catch let e as ValidationError { throw e } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
    }

    func train() throws {
        let trainer: Trainer
        if let resume {
            let loaded = try Checkpoint.load(path: try Checkpoint.resolve(resume, preferred: "latest.safetensors"))
            let paths = corpus.isEmpty ? (loaded.meta.corpus.paths ?? [loaded.meta.corpus.path]) : corpus
            let (c, _) = try scale.load(paths: paths, options: loaded.meta.train.loadOptions, out: out, train: loaded.meta.train)
            trainer = try Trainer(resume: loaded, corpus: c, maxIters: opt.maxIters, epochs: explicitEpochs())
            setThreads(loaded.meta.train.threads)
            printError("resuming \(trainer.runDir) at iteration \(loaded.meta.progress.iteration) (epoch \(String(format: "%.2f", loaded.meta.epoch)))")
        } else {
            let path = corpus[0]
            var t = TrainConfig()
            opt.apply(to: &t)
            t.unit = text.unit; t.normalize = text.normalize
            scale.apply(to: &t)
            setThreads(t.threads)
            let (c, files) = try scale.load(paths: corpus, options: t.loadOptions, out: out, train: t)
            var info = CorpusInfo(name: c.name, path: path, bytes: files.reduce(0) { $0 + $1.size }, tokens: c.count)
            if corpus.count > 1 { info.paths = corpus }
            let runName = name ?? "\(c.name)-\(Self.timestamp())"
            let dir = (out as NSString).appendingPathComponent(runName)
            var mc = model.config(vocabSize: c.vocabulary.count)
            try scale.applySoftmax(to: &mc, corpus: c)
            try ScaleOptions.checkMemory(corpus: c, config: mc, train: t)
            trainer = try Trainer(corpus: c, corpusInfo: info, model: mc, train: t, runDir: dir)
            let b = trainer.batches
            printError("minibatches of \(t.batch)×\(t.seq): train \(b.ntrain), val \(b.nval), test \(b.ntest); "
                       + "\(trainer.totalIterations) iterations; model \(model.cell.rawValue) \(model.layers)×\(model.hidden), "
                       + "\(trainer.model.config.parameterCount) parameters → \(dir)")
        }
        let progress = ProgressPrinter(evalEvery: trainer.meta.train.evalEvery)
        Interrupt.install()
        trainer.shouldStop = { Interrupt.requested }
        let summary = try trainer.run { progress.handle($0) }
        progress.finish()
        if summary.interrupted {
            printError("interrupted at iteration \(summary.iterations); saved \(trainer.latestPath)")
            printError("resume with: charrnn train --resume \(trainer.runDir)")
            throw ExitCode(Interrupt.exitCode)
        }
        let best = summary.bestValLoss.map { String(format: "%.4f", $0) } ?? "-"
        printError("done: \(summary.iterations) iterations, best val loss \(best) at iteration \(trainer.meta.progress.bestIteration)")
        printError("sample with: charrnn sample --checkpoint \(trainer.runDir)")
    }

    /// --epochs only counts on resume when given explicitly.
    func explicitEpochs() -> Double? {
        CommandLine.arguments.contains { $0 == "--epochs" || $0.hasPrefix("--epochs=") } ? opt.epochs : nil
    }

    func setThreads(_ n: Int) { if n > 0 { BLASThreads.set(n) } }

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
