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
        Checkpoints go to <out>/<run>/ (run = corpus name + timestamp unless --name): \(RunFolder.bestName)
        (lowest validation loss), \(RunFolder.latestName) and \(RunFolder.lossLogName). Ctrl-C saves \(RunFolder.latestName) and
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
        group?.mpi.finalize()
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
            mode = .initFrom(checkpoint: initFrom, dropout: model.dropout)
        } else {
            mode = .fresh(model: model.config, softmax: softmax.choice)
        }
        return TrainingRun.Request(mode: mode, corpus: corpus, train: t, outDir: out, name: name, tokenCache: cache.setting)
    }

    func train(group: MPIReducer?) throws {
        let root = (group?.rank ?? 0) == 0
        var request = self.request
        request.group = group
        let setup: TrainingRun
        var bar: LoadProgressBar? = nil
        do {
            defer { bar?.finish() }
            setup = try TrainingRun(request) { event in
                if !root { return }
                if case let .loading(done, total) = event {
                    if bar == nil || done == 0 { bar?.finish(); bar = LoadProgressBar() }
                    bar?.update(done: done, total: total)
                    return
                }
                bar?.finish()
                switch event {
                case .loading: break
                case .detail(let line): SetupLog.info(line)
                case .checkpointRead(let path):
                    let ignored = initFrom == nil ? [] : model.givenShapeFlags + text.givenFlags
                    if !ignored.isEmpty {
                        printError("warning: \(ignored.joined(separator: " ")) ignored: --init-from takes the model and vocabulary from \(path)")
                    }
                case .fineTuning, .continuingOnNewCorpus, .resuming: printError(event.description)
                }
            }
        } catch TrainError.softmaxCutoffs(let problem) {
            throw ValidationError(problem)
        }
        SetupLog.release()
        let trainer = setup.trainer
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
        let summary = try trainer.run { if root { progress.handle($0) } }
        progress.finish()
        if !root { if summary.interrupted { throw ExitCode(Interrupt.exitCode) } else { return } }
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
