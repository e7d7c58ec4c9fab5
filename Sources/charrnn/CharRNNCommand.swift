// charrnn — the command-line tool: a root that only routes to one small command per file.

import ArgumentParser
import CharRNN
import Foundation

@main
struct CharRNNCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "charrnn",
        abstract: "Train character-level LSTM/GRU/RNN language models on any UTF-8 text, and sample from them.",
        discussion: """
        Typical use:
          charrnn train corpus.txt            train; checkpoints and \(RunFolder.lossLogName) go to checkpoints/<run>/
          charrnn sample --temp 0.8           generate from the newest run's best checkpoint
          charrnn serve --port 8080           serve it over HTTP (OpenAI-style API and a web page)
        """,
        version: charrnnVersion,
        subcommands: subcommands)

    static var subcommands: [ParsableCommand.Type] {
        var s: [ParsableCommand.Type] = [TrainCommand.self, SampleCommand.self, BenchCommand.self,
                                         EvalCommand.self, InfoCommand.self, PlotCommand.self]
        #if !CHARRNN_NO_SERVER
        s.append(ServeCommand.self)
        #endif
        return s
    }

    /// SIGPIPE is ignored, so that a write to a closed pipe fails with EPIPE where the output is
    /// written (`Output`) instead of killing the process mid-run (`train … | head -1` used to lose its work).
    static func main() async {
        signal(SIGPIPE, SIG_IGN)
        await main(nil)
    }
}
