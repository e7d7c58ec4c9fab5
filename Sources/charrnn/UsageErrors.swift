// charrnn/UsageErrors.swift — how a failed parse or a refused flag ends the process: as every other
// charrnn error, starting "error: " (ArgumentParser writes "Error: "), with ArgumentParser's usage lines
// after it and its exit status (64 for a usage error). An unknown option gets a suggestion that knows
// charrnn's names: an option whose words contain the typed ones (`--iters` → `--max-iters`), or one it
// begins (`--temp` → `--temperature`), before ArgumentParser's nearest spelling (which offers
// `--layers` for `--iters`).

import ArgumentParser
import Foundation

enum UsageErrors {
    /// Prints `error`'s message on stderr and exits with its status.
    static func exit(_ error: Error) -> Never {
        let message = rewrite(CharRNNCommand.fullMessage(for: error), arguments: CommandLine.arguments)
        if !message.isEmpty { printError(message) }
        Foundation.exit(CharRNNCommand.exitCode(for: error).rawValue)
    }

    /// The message with charrnn's "error: " and, for an unknown long option, charrnn's suggestion.
    static func rewrite(_ message: String, arguments: [String]) -> String {
        var m = message
        if m.hasPrefix("Error: ") { m = "error: " + m.dropFirst("Error: ".count) }
        guard let r = m.range(of: #"Unknown option '--[^']+'(\. Did you mean '--[^']+'\?)?"#, options: .regularExpression) else { return m }
        let phrase = m[r]
        let typed = String(phrase.dropFirst("Unknown option '".count).prefix { $0 != "'" })
        let options = optionNames(of: arguments.dropFirst().first)
        guard let better = suggestion(for: typed, among: options) else { return m }
        return m.replacingCharacters(in: r, with: "Unknown option '\(typed)'. Did you mean '\(better)'?")
    }

    /// The long options of the subcommand named `name` (or of the root), as its help lists them.
    static func optionNames(of name: String?) -> [String] {
        let command = CharRNNCommand.subcommands.first { $0._commandName == name } ?? CharRNNCommand.self
        let help = command.helpMessage(columns: 10_000)
        var names: [String] = []
        var rest = help[...]
        while let r = rest.range(of: #"--[a-z][a-z0-9-]*"#, options: .regularExpression) {
            let n = String(rest[r])
            if !names.contains(n) { names.append(n) }
            rest = rest[r.upperBound...]
        }
        return names
    }

    /// An option whose dash-separated words include all of `typed`'s (`--iters` → `--max-iters`), or
    /// that `typed` begins (`--temp` → `--temperature`); the shortest such, nil when none.
    static func suggestion(for typed: String, among options: [String]) -> String? {
        let words = Set(typed.dropFirst(2).split(separator: "-").map { stem($0) })
        guard !words.isEmpty else { return nil }
        let fits = options.filter { o in
            o != typed && (words.isSubset(of: Set(o.dropFirst(2).split(separator: "-").map { stem($0) })) || o.hasPrefix(typed))
        }
        return fits.min { ($0.count, $0) < ($1.count, $1) }
    }

    /// A word without a plural "s" (`iter`/`iters`, `epoch`/`epochs` match).
    static func stem(_ w: Substring) -> String { w.count > 3 && w.hasSuffix("s") ? String(w.dropLast()) : String(w) }
}
