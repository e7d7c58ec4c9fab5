// Options shared by the subcommands: enum flags that list their values in --help, and the
// option groups that turn into library configs.

import ArgumentParser
import CharRNN

extension CellKind: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}
extension ClipMode: ExpressibleByArgument {}
extension TokenUnit: ExpressibleByArgument {}
extension Normalization: ExpressibleByArgument {}

struct ModelOptions: ParsableArguments {
    @Option(name: .customLong("model"), help: "Recurrent cell: lstm, gru or rnn (tanh).")
    var cell: CellKind = .lstm
    @Option(help: "Number of stacked recurrent layers.")
    var layers: Int = 2
    @Option(help: "Hidden units per layer.")
    var hidden: Int = 128
    @Option(help: ArgumentHelp("Embedding width; 0 feeds one-hot characters straight into the first layer.", valueName: "E"))
    var embed: Int = 0
    @Option(help: ArgumentHelp("Dropout probability between layers and before the decoder.", valueName: "P"))
    var dropout: Float = 0

    func config(vocabSize: Int) -> ModelConfig {
        ModelConfig(cell: cell, layers: layers, hidden: hidden, embed: embed, dropout: dropout, vocabSize: vocabSize)
    }

    func validate() throws {
        if let p = ModelConfig(cell: cell, layers: layers, hidden: hidden, embed: embed, dropout: dropout, vocabSize: 1).problem {
            throw ValidationError(p)
        }
    }
}

struct OptimizationOptions: ParsableArguments {
    @Option(help: "Characters per stream per minibatch (truncated-BPTT length).")
    var seq: Int = 50
    @Option(help: "Parallel streams per minibatch.")
    var batch: Int = 50
    @Option(help: "Passes over the training split.")
    var epochs: Double = 50
    @Option(help: ArgumentHelp("Stop after N iterations (overrides --epochs).", valueName: "N"))
    var maxIters: Int?
    @Option(help: "Optimizer: rmsprop (α 0.95, as char-rnn), adam (β 0.9/0.999) or sgd (momentum 0.9).")
    var optim: OptimizerKind = .rmsprop
    @Option(help: "Learning rate.")
    var lr: Float = 2e-3
    @Option(help: "Learning-rate multiplier applied at the end of each epoch after --lr-decay-after.")
    var lrDecay: Float = 0.97
    @Option(help: ArgumentHelp("Epochs before the learning rate starts decaying.", valueName: "EPOCHS"))
    var lrDecayAfter: Int = 10
    @Option(help: "Gradient clipping threshold (0 disables).")
    var clip: Float = 5
    @Option(help: "norm: scale to a global L2 norm ≤ --clip; value: clamp each element to ±--clip (char-rnn).")
    var clipMode: ClipMode = .norm
    @Option(help: "Fraction of minibatches used for training.")
    var trainFrac: Double = 0.95
    @Option(help: "Fraction of minibatches used for validation (the rest, if any, is test).")
    var valFrac: Double = 0.05
    @Option(help: ArgumentHelp("Validate (and checkpoint) every N iterations, and at each epoch end.", valueName: "N"))
    var evalEvery: Int = 1000
    @Option(help: ArgumentHelp("Write a loss.csv row every N iterations.", valueName: "N"))
    var logEvery: Int = 1
    @Option(help: "Random seed (initialisation, dropout). Same seed and --threads give a bit-identical run.")
    var seed: UInt64 = 123
    @Option(help: ArgumentHelp("CPU cores to use (0 = all).", valueName: "N"))
    var threads: Int = 0

    func apply(to t: inout TrainConfig) {
        t.seq = seq; t.batch = batch; t.epochs = epochs; t.maxIters = maxIters; t.optim = optim; t.lr = lr
        t.lrDecay = lrDecay; t.lrDecayAfter = lrDecayAfter; t.clip = clip; t.clipMode = clipMode
        t.trainFrac = trainFrac; t.valFrac = valFrac; t.evalEvery = evalEvery; t.logEvery = logEvery
        t.seed = seed; t.threads = threads
    }

    func validate() throws {
        var t = TrainConfig()
        apply(to: &t)
        if let p = t.problem { throw ValidationError(p) }
    }
}

struct TextOptions: ParsableArguments {
    @Option(help: "Token unit: scalar (one Unicode scalar) or grapheme (one user-perceived character).")
    var unit: TokenUnit = .scalar
    @Option(help: "Unicode normalization applied before tokenizing: none (text as written) or nfc.")
    var normalize: Normalization = .none
}

/// Which checkpoint `sample` and `eval` read.
struct CheckpointOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Run folder or .safetensors file (a folder means its best.safetensors).", valueName: "RUN_DIR_OR_FILE"))
    var checkpoint: String?
    @Option(help: ArgumentHelp("Folder searched for the newest run when --checkpoint is not given.", valueName: "DIR"))
    var runs: String = "checkpoints"

    /// The .safetensors file: --checkpoint, else best of the most recently modified run under --runs.
    func resolve() throws -> String { try Checkpoint.resolve(checkpoint ?? Checkpoint.latestRun(under: runs)) }
}
