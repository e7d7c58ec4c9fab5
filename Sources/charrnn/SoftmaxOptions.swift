// `train`'s output layer: --softmax full|adaptive and the adaptive softmax's --cutoffs.

import ArgumentParser
import CharRNN

/// Output layer of the model.
enum SoftmaxKind: String, CaseIterable, ExpressibleByArgument {
    case full, adaptive
}

struct SoftmaxOptions: ParsableArguments {
    @Option(name: .customLong("softmax"), help: "Output layer: full softmax, or adaptive (frequent characters in a head, rare ones in smaller tail clusters; training only, validation and sampling use the exact distribution). (default: full)")
    var kind: SoftmaxKind?
    var softmax: SoftmaxKind { kind ?? .full }
    @Option(help: ArgumentHelp("Adaptive softmax cutoffs as frequency ranks, e.g. 1000,3000 (default: chosen from the corpus).", valueName: "LIST"))
    var cutoffs: String?

    /// The output-layer flags given on the command line (--resume and --init-from keep the checkpoint's).
    var givenFlags: [String] { [(kind != nil, "--softmax"), (cutoffs != nil, "--cutoffs")].filter(\.0).map(\.1) }

    var manualCutoffs: [Int]? {
        cutoffs.map { $0.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
    }

    /// The library's output-layer choice.
    var choice: TrainingRun.Softmax { softmax == .adaptive ? .adaptive(cutoffs: manualCutoffs) : .full }

    func validate() throws {
        if let c = cutoffs {
            guard softmax == .adaptive else { throw ValidationError("--cutoffs needs --softmax adaptive") }
            let parts = c.split(separator: ",")
            guard !parts.isEmpty, let m = manualCutoffs, m.count == parts.count else {
                throw ValidationError("--cutoffs must be a comma-separated list of increasing ranks, e.g. 1000,3000")
            }
        }
    }
}
