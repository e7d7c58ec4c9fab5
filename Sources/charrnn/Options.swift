// Options shared by the subcommands: enum flags that list their values in --help, and the
// option groups that turn into library configs. Options whose use depends on whether they were given
// (`--epochs` on resume, `--dropout` with --init-from, the model and text flags --init-from ignores)
// are optionals; their defaults, taken from the library configs, are applied here and shown in the
// help text.

import ArgumentParser
import CharRNN
import Foundation

extension CellKind: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}
extension ClipMode: ExpressibleByArgument {}
extension TokenUnit: ExpressibleByArgument {}
extension Normalization: ExpressibleByArgument {}
extension WeightPrecision: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}
extension LRSchedule: ExpressibleByArgument {}

private let modelDefaults = ModelConfig(vocabSize: 1)
private let trainDefaults = TrainConfig()

struct ModelOptions: ParsableArguments {
    @Option(name: .customLong("model"), help: "Recurrent cell: lstm, gru or rnn (tanh). (default: \(modelDefaults.cell.rawValue))")
    var cell: CellKind?
    @Option(parsing: .unconditional, help: "Number of stacked recurrent layers. (default: \(modelDefaults.layers))")
    var layers: Int?
    @Option(parsing: .unconditional, help: "Hidden units per layer. (default: \(modelDefaults.hidden))")
    var hidden: Int?
    @Option(parsing: .unconditional, help: ArgumentHelp("Embedding width; 0 feeds one-hot characters straight into the first layer. (default: \(modelDefaults.embed))", valueName: "E"))
    var embed: Int?
    @Option(parsing: .unconditional, help: ArgumentHelp("Dropout probability between layers and before the decoder. (default: \(modelDefaults.dropout))", valueName: "P"))
    var dropout: Double?

    /// The model shape with the defaults filled in; the vocabulary size is the corpus's, set later.
    var config: ModelConfig {
        let d = modelDefaults
        return ModelConfig(cell: cell ?? d.cell, layers: layers ?? d.layers, hidden: hidden ?? d.hidden, embed: embed ?? d.embed,
                           dropout: dropout.map { Float($0) } ?? d.dropout, vocabSize: 1)
    }

    /// The shape flags given on the command line (--init-from takes the shape from its checkpoint).
    var givenShapeFlags: [String] {
        [(cell != nil, "--model"), (layers != nil, "--layers"), (hidden != nil, "--hidden"), (embed != nil, "--embed")]
            .filter(\.0).map(\.1)
    }
    /// --dropout, when given (a resume keeps the run's; --init-from may change it).
    var givenDropoutFlag: [String] { dropout != nil ? ["--dropout"] : [] }

    func validate() throws {
        // checked as given, before a Float rounds 0.9999999999 up to 1
        if let dropout, let p = Bounds.check("--dropout", dropout, in: 0...Bounds.maxDropout) { throw ValidationError(p) }
        if let p = config.problem { throw ValidationError(p) }
    }
}

struct OptimizationOptions: ParsableArguments {
    // Optionals, the defaults (the library's TrainConfig) applied in `apply` and shown in the help, so
    // that `givenFlags` knows what the command line said (--resume ignores these).
    @Option(parsing: .unconditional, help: "Characters per stream per minibatch (truncated-BPTT length). (default: \(trainDefaults.seq))")
    var seq: Int?
    @Option(parsing: .unconditional, help: "Parallel streams per minibatch. (default: \(trainDefaults.batch))")
    var batch: Int?
    @Option(parsing: .unconditional, help: "Passes over the training split; on --resume, replaces the run's. (default: \(trainDefaults.epochs))")
    var epochs: Double?
    @Option(parsing: .unconditional, help: ArgumentHelp("Stop after N iterations (overrides --epochs).", valueName: "N"))
    var maxIters: Int?
    @Option(help: "Optimizer: rmsprop (α 0.95, as char-rnn), adam (β 0.9/0.999) or sgd (momentum 0.9). (default: \(trainDefaults.optim.rawValue))")
    var optim: OptimizerKind?
    @Option(parsing: .unconditional, help: "Learning rate. (default: \(trainDefaults.lr))")
    var lr: Double?
    @Option(parsing: .unconditional, help: "Learning-rate multiplier applied at the end of each epoch after --lr-decay-after. (default: \(trainDefaults.lrDecay))")
    var lrDecay: Float?
    @Option(parsing: .unconditional, help: ArgumentHelp("Epochs before the learning rate starts decaying. (default: \(trainDefaults.lrDecayAfter))", valueName: "EPOCHS"))
    var lrDecayAfter: Int?
    @Option(parsing: .unconditional, help: "Gradient clipping threshold (0 disables). (default: \(trainDefaults.clip))")
    var clip: Double?
    @Option(help: "norm: scale to a global L2 norm ≤ --clip; value: clamp each element to ±--clip (char-rnn). (default: \(trainDefaults.clipMode.rawValue))")
    var clipMode: ClipMode?
    @Option(parsing: .unconditional, help: "Fraction of minibatches used for training. (default: \(trainDefaults.trainFrac))")
    var trainFrac: Double?
    @Option(parsing: .unconditional, help: "Fraction of minibatches used for validation (the rest, if any, is test). (default: \(trainDefaults.valFrac))")
    var valFrac: Double?
    @Option(parsing: .unconditional, help: ArgumentHelp("Validate (and checkpoint) every N iterations, and at each epoch end. (default: \(trainDefaults.evalEvery))", valueName: "N"))
    var evalEvery: Int?
    @Option(help: ArgumentHelp("Validate on the first minibatches of the val split (every stream), at most N tokens (at least one minibatch), the same ones each time; all = the whole split. (default: \(trainDefaults.valTokens!))", valueName: "N|all"))
    var valTokens: ValTokens?
    @Option(parsing: .unconditional, help: ArgumentHelp("Write a \(RunFolder.lossLogName) row every N iterations. (default: \(trainDefaults.logEvery))", valueName: "N"))
    var logEvery: Int?
    @Option(parsing: .unconditional, help: "Random seed (initialisation, dropout). Same seed and --threads give a bit-identical run. (default: \(trainDefaults.seed))")
    var seed: UInt64?
    @Option(help: "Arithmetic of the training products: fp32, or bf16 (bfloat16 operands, float32 sums; weights, optimizer and checkpoints stay fp32; fast with AVX512_BF16, slower without). (default: fp32)")
    var precision: Precision?
    // schedule and early stopping (issue 20)
    @Option(help: "Learning-rate schedule: step (× --lr-decay per epoch, char-rnn), cosine (from --lr to --min-lr over the run, nanoGPT) or constant. (default: step)")
    var lrSchedule: LRSchedule?
    @Option(parsing: .unconditional, help: ArgumentHelp("Linear warmup: iteration i < N trains at lr·(i+1)/(N+1). (default: 0)", valueName: "N"))
    var warmupIters: Int?
    @Option(parsing: .unconditional, help: ArgumentHelp("End of the cosine schedule; with step, a floor for the decay. (default: 0 for cosine, none for step)", valueName: "LR"))
    var minLr: Double?
    @Option(parsing: .unconditional, help: ArgumentHelp("Stop after N validations in a row that do not improve the best val loss by --min-delta; 0 = never (on --resume, replaces the run's). (default: 0)", valueName: "N"))
    var patience: Int?
    @Option(parsing: .unconditional, help: ArgumentHelp("Improvement of the best val loss (nats per token) that resets --patience; on --resume, replaces the run's. (default: 0)", valueName: "D"))
    var minDelta: Double?
    @Option(parsing: .unconditional, help: ArgumentHelp("Each stream restarts from a zero state every N minibatches, staggered (about --batch/N streams per minibatch), so the model learns the cold starts sampling begins with; 0 = never, the state carried from the start (char-rnn). (default: \(TrainConfig.defaultColdStartEvery))", valueName: "N"))
    var coldStartEvery: Int?

    func apply(to t: inout TrainConfig) {
        let d = trainDefaults
        t.seq = seq ?? d.seq; t.batch = batch ?? d.batch; t.epochs = epochs ?? d.epochs; t.maxIters = maxIters
        t.optim = optim ?? d.optim; t.lr = lr.map { Float($0) } ?? d.lr
        t.lrDecay = lrDecay ?? d.lrDecay; t.lrDecayAfter = lrDecayAfter ?? d.lrDecayAfter
        t.clip = clip.map { Float($0) } ?? d.clip; t.clipMode = clipMode ?? d.clipMode
        t.trainFrac = trainFrac ?? d.trainFrac; t.valFrac = valFrac ?? d.valFrac
        t.evalEvery = evalEvery ?? d.evalEvery; t.logEvery = logEvery ?? d.logEvery
        t.seed = seed ?? d.seed
        t.valTokens = valTokens.map(\.limit) ?? d.valTokens
        t.stepPrecision = precision ?? d.stepPrecision
        t.schedule = lrSchedule ?? d.schedule
        t.warmupIters = warmupIters.flatMap { $0 == 0 ? nil : $0 }
        t.minLR = minLr.map { Float($0) }
        t.patience = patience.flatMap { $0 == 0 ? nil : $0 }
        t.minDelta = minDelta.flatMap { $0 == 0 ? nil : $0 }
        t.coldStartEvery = coldStartEvery.map { $0 == 0 ? nil : $0 } ?? d.coldStartEvery
    }

    /// The flags of the run's recorded settings given on the command line (--epochs and --max-iters,
    /// the stopping point, are not among them: a resume may move it).
    var givenRunFlags: [String] {
        [(seq != nil, "--seq"), (batch != nil, "--batch"), (optim != nil, "--optim"), (lr != nil, "--lr"),
         (lrDecay != nil, "--lr-decay"), (lrDecayAfter != nil, "--lr-decay-after"), (clip != nil, "--clip"),
         (clipMode != nil, "--clip-mode"), (trainFrac != nil, "--train-frac"), (valFrac != nil, "--val-frac"),
         (evalEvery != nil, "--eval-every"), (logEvery != nil, "--log-every"), (seed != nil, "--seed"),
         (precision != nil, "--precision"), (lrSchedule != nil, "--lr-schedule"), (warmupIters != nil, "--warmup-iters"),
         (minLr != nil, "--min-lr"), (coldStartEvery != nil, "--cold-start-every")].filter(\.0).map(\.1)
    }

    func validate() throws {
        // checked as given (a Float turns 1e39 into inf and 1e-50 into 0), then as the library sees them
        if let lr, let p = Bounds.check("--lr", lr, in: Bounds.learningRate) { throw ValidationError(p) }
        if let clip, let p = Bounds.check("--clip", clip, in: 0...Bounds.maxClip) { throw ValidationError(p + "; 0 disables clipping") }
        if let epochs, let p = Bounds.checkEpochs(epochs) { throw ValidationError(p) }
        if let minLr, !(minLr >= 0 && minLr <= Bounds.learningRate.upperBound) {
            throw ValidationError("--min-lr must be between 0 and --lr (got \(Bounds.show(minLr)))")
        }
        if let patience, patience < 0 { throw ValidationError("--patience must be between 1 and \(Bounds.maxPatience), or 0 for none (got \(patience))") }
        var t = TrainConfig()
        apply(to: &t)
        if let p = t.problem { throw ValidationError(p) }
    }
}

/// `--val-tokens N|all`.
struct ValTokens: ExpressibleByArgument {
    /// nil = the whole split.
    var limit: Int?
    init?(argument: String) {
        if argument == "all" { limit = nil } else if let n = Int(argument), n >= 1 { limit = n } else { return nil }
    }
}

struct TextOptions: ParsableArguments {
    @Option(help: "Token unit: scalar (one Unicode scalar) or grapheme (one user-perceived character). (default: \(trainDefaults.unit.rawValue))")
    var unit: TokenUnit?
    @Option(help: "Unicode normalization applied before tokenizing: none (text as written) or nfc. (default: \(trainDefaults.normalize.rawValue))")
    var normalize: Normalization?

    func apply(to t: inout TrainConfig) {
        t.unit = unit ?? trainDefaults.unit
        t.normalize = normalize ?? trainDefaults.normalize
    }

    /// The text flags given on the command line (--init-from takes them from its checkpoint).
    var givenFlags: [String] { [(unit != nil, "--unit"), (normalize != nil, "--normalize")].filter(\.0).map(\.1) }
}

/// `--threads`, for every command that computes.
struct ThreadsOption: ParsableArguments {
    @Option(name: .customLong("threads"), parsing: .unconditional, help: ArgumentHelp("CPU cores to use (0 = all). (default: 0)", valueName: "N"))
    var given: Int?
    /// The cores asked for (0 = all).
    var threads: Int { given ?? 0 }

    func validate() throws {
        if threads < 0 || threads > Bounds.maxThreads {
            throw ValidationError("--threads must be 0 (all cores) or between 1 and \(Bounds.maxThreads) (4 × this machine's cores, at least 8; got \(threads))")
        }
    }

    /// Sizes the worker pool that the model's kernels split their work over.
    /// - Throws: `WorkerPoolError` when a worker thread cannot be started.
    func configure() throws {
        noteIfBounded()
        try WorkerPool.configure(threads: threads)
    }

    /// One line on stderr when --threads asks for more cores than the process may use.
    func noteIfBounded() {
        let cores = WorkerPool.availableCores
        if threads > cores {
            FileHandle.standardError.write(Data("note: --threads \(threads) is more than the \(cores) cores available; using \(cores)\n".utf8))
        }
    }
}

/// Which checkpoint `sample` and `eval` read.
struct CheckpointOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Run folder or .safetensors file (a folder means its \(RunFolder.bestName)).", valueName: "RUN_DIR_OR_FILE"))
    var checkpoint: String?
    @Option(help: ArgumentHelp("Folder searched for the newest run when --checkpoint is not given.", valueName: "DIR"))
    var runs: String = "checkpoints"

    /// The .safetensors file: --checkpoint, else best of the most recently modified run under --runs.
    func resolve() throws -> String { try RunFolder.resolve(checkpoint ?? RunFolder.latestRun(under: runs)) }
}

/// A duration on the command line (`--max-time`): one or more number-unit pairs, largest unit first,
/// each unit once: `90s`, `20m`, `8h`, `1h30m`, `2d`, `1.5h`. A bare number is refused (seconds or
/// minutes? the unit is required).
enum DurationArgument {
    struct Problem: Error { let message: String }

    static func seconds(_ text: String) throws -> Double {
        let units: [(Character, Double)] = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
        let shape = "a duration is a number and a unit, s, m, h or d, e.g. 90s, 20m, 8h or 1h30m"
        var total = 0.0, number = "", next = 0
        for c in text.lowercased() {
            if c.isASCII && (c.isNumber || c == ".") { number.append(c); continue }
            guard let u = units.firstIndex(where: { $0.0 == c }) else { throw Problem(message: "unknown unit \(String(c).debugDescription); " + shape) }
            guard u >= next else { throw Problem(message: "units go from the largest to the smallest, each once; " + shape) }
            guard let v = Double(number), v.isFinite else { throw Problem(message: shape) }
            total += v * units[u].1
            number = ""; next = u + 1
        }
        guard number.isEmpty, next > 0 else { throw Problem(message: (number.isEmpty ? "" : "no unit; ") + shape) }
        guard total > 0 else { throw Problem(message: "must be more than 0") }
        guard total <= Bounds.maxElapsedSeconds else { throw Problem(message: "must be at most \(Bounds.show(Bounds.maxElapsedSeconds)) seconds") }
        return total
    }
}
