// Train/Setting.swift — the user-facing settings, named once. The library's messages name a setting
// through this enum ("\(Setting.maxIters) must be …"), never by a spelling of its own: how a setting
// is spelled is the front end's to say. `Setting.spell` gives the name a message prints. `charrnn`
// sets it at start to its flags, the case name in kebab case (`--max-iters`: how swift-argument-parser
// names an option), and a CLI test checks that every case is an option of some subcommand, so the two
// cannot drift apart. The default is that same spelling, so the messages read the same to a program
// that uses the library without setting it (some suggest a command to run); such a program may set
// its own (`{ $0.rawValue }` gives the library's property names).

/// A setting a message can name.
package enum Setting: String, CaseIterable, Sendable, CustomStringConvertible {
    // model
    case layers, hidden, embed, dropout, softmax, cutoffs
    // data and training
    case seq, batch, epochs, maxIters, lr, lrDecay, lrDecayAfter, clip, trainFrac, valFrac, evalEvery, logEvery, valTokens
    case threads, minCount, maxVocab, lossy
    // schedules and stops
    case lrSchedule, warmupIters, minLr, patience, minDelta, maxTime, coldStartEvery
    // runs
    case name, out, resume, overwrite, initFrom, allowNewCorpus, checkpoint, force
    // sampling
    case temp, topK, topP
    case frequencyPenalty, presencePenalty, repetitionPenalty, repeatWindow, logitBias, beam

    /// How a message spells a setting; set once at start, before any work.
    package nonisolated(unsafe) static var spell: @Sendable (Setting) -> String = { "--" + $0.kebab }

    /// The case name in kebab case (`maxIters` → `max-iters`).
    package var kebab: String {
        var s = ""
        for c in rawValue { if c.isUppercase { s += "-" + c.lowercased() } else { s.append(c) } }
        return s
    }

    package var description: String { Setting.spell(self) }
}
