// charrnn train — parses the flags into a `TrainingRun.Request`, shows the run's set-up events, then
// drives `Trainer.run` with progress lines, Ctrl-C/SIGTERM handling and exit codes.
// Under mpirun every rank runs this; rank 0 alone prints the set-up, progress and summary. An error
// every rank meets together (`DistributedError`: a mismatch between ranks) is printed once, by rank 0,
// and the ranks end MPI cleanly; any other error is printed by its rank ("rank r: error: …") and that
// rank exits 1, which makes mpirun end the job.

import ArgumentParser
import CharRNN
import Foundation

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a character-level model on UTF-8 text files.",
        discussion: """
        Checkpoints go to <out>/<run>/ (run = corpus name + timestamp unless --name): \(RunFolder.bestName) \
        (lowest validation loss), \(RunFolder.latestName) and \(RunFolder.lossLogName). Ctrl-C saves \(RunFolder.latestName) and \
        prints the command that resumes the run exactly where it stopped.
        """)

    @Argument(help: ArgumentHelp("UTF-8 text files, or folders of .txt files (name order), joined by a newline (optional with --resume: the run's own corpus).", valueName: "CORPUS"))
    var corpus: [String] = []

    @OptionGroup(title: "Model") var model: ModelOptions
    @OptionGroup(title: "Optimization") var opt: OptimizationOptions
    @OptionGroup(title: "Optimization") var threads: ThreadsOption
    @OptionGroup(title: "Text") var text: TextOptions
    @OptionGroup(title: "Vocabulary and scale") var vocabulary: VocabularyOptions
    @OptionGroup(title: "Vocabulary and scale") var softmax: SoftmaxOptions
    @OptionGroup(title: "Vocabulary and scale") var cache: TokenCacheOptions
    @OptionGroup var progressOptions: ProgressOptions

    @Option(help: ArgumentHelp("Run name, one folder name inside --out (default: corpus name + timestamp).", valueName: "RUN"))
    var name: String?
    @Flag(help: "Replace the run already in <out>/<run> (its checkpoints and loss log); without it such a run is refused. Never the --init-from source.")
    var overwrite = false
    @Option(name: .customLong("out"), help: ArgumentHelp("Folder that holds the run folders. (default: checkpoints)", valueName: "DIR"))
    var outGiven: String?
    var out: String { outGiven ?? "checkpoints" }
    @Option(help: ArgumentHelp("Continue a run exactly: its folder or a .safetensors file (prefers latest).", valueName: "RUN_DIR_OR_FILE"))
    var resume: String?
    @Flag(help: "With --resume: accept a corpus that differs from the run's (same vocabulary; the data layout is rebuilt).")
    var allowNewCorpus = false
    @Flag(help: "Skip the update of a step whose loss or gradient is NaN/Inf instead of stopping (the run still stops after 10 such steps in a row).")
    var skipNonfinite = false
    @Option(help: ArgumentHelp("Fine-tune: a new run starting from this checkpoint's weights (model config and vocabulary from it, fresh optimizer).", valueName: "RUN_DIR_OR_FILE"))
    var initFrom: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("Stop cleanly once this process has trained this long (90s, 20m, 8h, 1h30m; loading not counted): validate, save best and latest; resumable, with a new budget from the resume's own command line.", valueName: "DURATION"))
    var maxTime: String?

    func validate() throws {
        if corpus.isEmpty && resume == nil { throw ValidationError("Missing expected argument '<CORPUS>' (or --resume RUN_DIR_OR_FILE)") }
        if resume != nil && initFrom != nil { throw ValidationError("--resume and --init-from cannot be combined") }
        if allowNewCorpus && resume == nil { throw ValidationError("--allow-new-corpus only applies to --resume") }
        if (initFrom != nil || allowNewCorpus) && corpus.count > 1 { throw ValidationError("--init-from and --allow-new-corpus take one corpus file") }
        if let name { do { try RunFolder.checkName(name) } catch { throw ValidationError("\(error)") } }
        if overwrite && resume != nil { throw ValidationError("--overwrite does not apply to --resume (a resume continues its run in place)") }
        if let maxTime { _ = try Self.budget(maxTime) }
    }

    /// `--max-time` in seconds.
    static func budget(_ text: String) throws -> Double {
        do { return try DurationArgument.seconds(text) } catch let e as DurationArgument.Problem {
            throw ValidationError("--max-time \(text.debugDescription): \(e.message)")
        }
    }

    func run() throws {
        let group: MPIReducer?
        do { group = try MPIReducer.launchedByMPIRun() } catch { printError("error: \(error)"); throw ExitCode.failure }
        let root = (group?.rank ?? 0) == 0
        let prefix = group.map { $0.size > 1 ? "rank \($0.rank): " : "" } ?? ""
        SetupLog.hold()
        do { try train(group: group) } catch let e as ValidationError { SetupLog.discard(); throw e } catch let e as ExitCode {
            SetupLog.release(); group?.mpi.finalize(); throw e
        } catch let e as DistributedError {
            SetupLog.discard()
            if root { printError("error: \(e)") }
            group?.mpi.finalize()
            throw ExitCode.failure
        } catch {
            SetupLog.discard()
            printError(prefix + "error: \(error)")
            throw ExitCode.failure
        }
        group?.finish()
    }

    /// The library's request for these flags.
    var request: TrainingRun.Request {
        var t = TrainConfig()
        opt.apply(to: &t)
        t.threads = threads.threads
        text.apply(to: &t)
        vocabulary.apply(to: &t)
        let mode: TrainingRun.Mode
        if let resume {
            mode = .resume(checkpoint: resume, maxIters: opt.maxIters, epochs: opt.epochs, allowNewCorpus: allowNewCorpus)
        } else if let initFrom {
            mode = .initFrom(checkpoint: initFrom, dropout: model.dropout.map { Float($0) })
        } else {
            mode = .fresh(model: model.config, softmax: softmax.choice)
        }
        var r = TrainingRun.Request(mode: mode, corpus: corpus, train: t, outDir: out, name: name, tokenCache: cache.setting,
                                    overwrite: overwrite)
        if resume != nil { r.resumePatience = opt.patience; r.resumeMinDelta = opt.minDelta }
        return r
    }

    /// Flags given on the command line that a resume or a fine-tuning run does not use: one warning each.
    var ignoredFlags: [String] {
        // what --init-from takes from its checkpoint: the model's shape, output layer, tokenization and vocabulary
        let shape = model.givenShapeFlags + text.givenFlags + softmax.givenFlags + vocabulary.givenFlags
        if resume != nil {
            // everything but the stopping point, the corpus and the cache is the run's own
            return shape + model.givenDropoutFlag + opt.givenRunFlags + (threads.given != nil ? ["--threads"] : [])
                + (name != nil ? ["--name"] : []) + (outGiven != nil ? ["--out"] : [])
        }
        if initFrom != nil { return shape }
        return []
    }

    func train(group: MPIReducer?) throws {
        let root = (group?.rank ?? 0) == 0
        if root { threads.noteIfBounded() }
        var request = self.request
        if let group { request.reducer = group }
        let setup: TrainingRun
        var bar: LoadProgressBar? = nil
        do {
            defer { bar?.finish() }
            setup = try TrainingRun(request) { event in
                if !root { return }
                if case let .loading(done, total) = event {
                    if bar == nil || done == 0 { bar?.finish(); bar = LoadProgressBar(mode: progressOptions.progress) }
                    bar?.update(done: done, total: total)
                    return
                }
                bar?.finish()
                switch event {
                case .loading: break
                case .detail(let line): SetupLog.info(line)
                case .checkpointRead(let path):
                    for flag in ignoredFlags {
                        let why = resume != nil ? "--resume continues the run with the settings recorded in" : "--init-from takes the model, output layer and vocabulary from"
                        printError("warning: \(flag) ignored: \(why) \(path)")
                    }
                case .fineTuning, .continuingOnNewCorpus, .resuming: printError(event.description)
                }
            }
        } catch TrainError.softmaxCutoffs(let problem) {
            // a flag problem found only once the corpus is known: one line and the usage-error status,
            // not a ValidationError from run(), which would print the root command's usage
            SetupLog.discard()
            printError("error: \(problem)")
            throw ExitCode.validationFailure
        }
        SetupLog.release()
        if root, setup.trainer.meta.train.stepPrecision == .bf16, BF16GEMMKernel.selected == .portable {
            printError("note: --precision bf16 runs the portable bf16 kernels (this CPU has no AVX512_BF16, or CHARRNN_BF16_KERNEL=portable): slower than fp32; same results within bf16 rounding")
        }
        if root, setup.trainer.meta.train.coldStartEvery == nil {
            // measured in issue 19: LSTMs trained so, fp32 and bf16 alike, failed on up to 3.4% of cold starts
            printError("note: no cold starts (--cold-start-every 0, or a run from before they existed): models trained so have failed badly on a few starts from a zero state (README, Cold starts); check one with scripts/quality/cold-start-scan.py")
        }
        try withExtendedLifetime(setup.lock) { try run(setup.trainer, root: root) }
    }

    /// Runs the trainer of a prepared run (whose folder lock the caller holds); `root`: this process
    /// reports (alone, or rank 0 of a data-parallel run).
    func run(_ trainer: Trainer, root: Bool) throws {
        let progress = ProgressPrinter(trainer: trainer, mode: progressOptions.progress)
        Interrupt.install()
        trainer.shouldStop = { Interrupt.requested }
        trainer.skipNonFinite = skipNonfinite
        trainer.maxTime = try maxTime.map(Self.budget)
        #if CHARRNN_FAULTS
        TestFaults.install(on: trainer)
        #endif
        let startIteration = trainer.meta.progress.iteration
        let summary = try trainer.run { if root { progress.handle($0) } }
        progress.finish()
        if !root { if summary.interrupted { throw ExitCode(Interrupt.exitCode) } else { return } }
        if summary.interrupted {
            let why = Interrupt.output.map { "\($0)" } ?? "interrupted"
            printError("\(Interrupt.output == nil ? "" : "error: ")\(why) at iteration \(summary.iterations); saved \(trainer.latestPath)")
            printError("resume with: charrnn train --resume \(shellQuoted(trainer.runDir))")
            throw ExitCode(Interrupt.exitCode)
        }
        let best = summary.bestValLoss.map { String(format: "%.4f", $0) } ?? "-"
        if summary.skippedSteps > 0 { printError("skipped \(summary.skippedSteps) non-finite steps (--skip-nonfinite)") }
        if let stop = summary.plannedStop {
            for line in Self.plannedStopLines(stop, trainer: trainer, summary: summary, budget: maxTime) { printError(line) }
        }
        printError("done: \(summary.iterations) iterations, best val loss \(best) at iteration \(trainer.meta.progress.bestIteration)")
        if resume != nil && summary.iterations == startIteration {
            printError(Self.finishedRunHint(runDir: trainer.runDir, iteration: summary.iterations, maxIters: trainer.meta.train.maxIters, epochs: trainer.meta.train.epochs))
        }
        printError("sample with: charrnn sample --checkpoint \(shellQuoted(trainer.runDir))")
        if let failure = progress.failure { printError("error: \(failure)"); throw ExitCode(failure.exitCode) }
    }
}

extension TrainCommand {
    /// What a planned stop (--patience, --max-time) prints before the summary: why the run stopped,
    /// and what to pass to train on. A resume of a run whose patience is spent trains nothing and says so.
    static func plannedStopLines(_ stop: PlannedStop, trainer: Trainer, summary: TrainSummary, budget: String?) -> [String] {
        let p = trainer.meta.progress, t = trainer.meta.train, dir = shellQuoted(trainer.runDir)
        switch stop {
        case .patience:
            let n = p.sinceImprovement, patience = t.patience ?? 0
            let delta = t.minDelta.map { " by at least \(Bounds.show($0))" } ?? ""
            let best = p.bestValLoss.map { String(format: "%.4f at iteration %d", $0, p.bestIteration) } ?? "-"
            let why = "\(n) validation\(n == 1 ? "" : "s") in a row did not improve the best val loss (\(best))\(delta); --patience \(patience)"
            let head = summary.startIteration == summary.iterations && summary.startIteration > 0
                ? "the run stopped early at iteration \(summary.iterations) (\(why)): nothing to train"
                : "stopped early at iteration \(summary.iterations): \(why)"
            return [head,
                    "to train on: charrnn train --resume \(dir) --patience \(n + patience) (another \(patience) validations), or --patience 0 (no early stopping)"]
        case .maxTime:
            return ["time budget \(budget ?? "") spent at iteration \(summary.iterations); validated and saved \(trainer.latestPath)",
                    "resume with: charrnn train --resume \(dir) (--max-time DURATION for a new budget)"]
        }
    }
}
