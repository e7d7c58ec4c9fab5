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
                                         EvalCommand.self, InfoCommand.self, PlotCommand.self, ExportCommand.self]
        #if !CHARRNN_NO_SERVER
        s.append(ServeCommand.self)
        #endif
        return s
    }

    /// SIGPIPE is ignored, so that a write to a closed pipe fails with EPIPE where the output is
    /// written (`Output`) instead of killing the process mid-run (`train … | head -1` used to lose its work).
    /// Help and version text go through `Output` too, so `charrnn --help > /dev/full` fails like
    /// any other command's output instead of exiting 0 with nothing written.
    static func main() async {
        signal(SIGPIPE, SIG_IGN)
        // the library's messages name settings; here they are this tool's flags
        Setting.spell = { "--" + $0.kebab }
        do {
            var command = try parseAsRoot(nil)
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()   // `charrnn help …` runs ArgumentParser's help command, which throws its text
            }
        } catch {
            guard exitCode(for: error) == .success else { UsageErrors.exit(error) }
            do {
                try Output.standard.line(fullMessage(for: error))
                try Output.standard.flush()
            } catch let e {
                FileHandle.standardError.write(Data("error: \(e.description)\n".utf8))
                Foundation.exit(e.exitCode)
            }
            Foundation.exit(0)
        }
    }
}
