// charrnn/ArgumentChecks.swift — checks of what the user typed that ArgumentParser cannot make: text
// options whose bytes are not UTF-8 (CommandLine.arguments has already replaced them with U+FFFD, so
// the raw argv is read), lists of unknown characters kept to one readable line, and the commands that
// run in one process refusing to run once per rank under mpirun.

import ArgumentParser
import CharRNN
import Foundation

// MARK: - Text options must be UTF-8

enum RawArguments {
    /// The raw bytes of every command-line argument (argv[1...]), before any decoding.
    static var all: [[UInt8]] {
        (1..<Int(CommandLine.argc)).map { i in
            guard let p = CommandLine.unsafeArgv[i] else { return [] }
            return Array(UnsafeBufferPointer(start: UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self), count: strlen(p)))
        }
    }

    /// The first value given to one of `options` (`--prime X` or `--prime=X`) that is not valid UTF-8,
    /// with the option's name and the offset and value of the first bad byte.
    static func invalidUTF8(in options: [String], arguments: [[UInt8]] = all) -> String? {
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a == Array("--".utf8) { return nil }   // the rest are positional
            for o in options {
                var value: ArraySlice<UInt8>? = nil
                if a == Array(o.utf8), i + 1 < arguments.count { value = arguments[i + 1][...] }
                else if a.starts(with: Array((o + "=").utf8)) { value = a[(o.utf8.count + 1)...] }
                if let value, let at = firstInvalidByte(value) {
                    let byte = value[value.startIndex + at]
                    return "\(o) is not valid UTF-8: byte \(at + 1) of its value is 0x\(String(byte, radix: 16, uppercase: true)); "
                        + "give UTF-8 text (iconv -t UTF-8 converts other encodings)"
                }
            }
            i += 1
        }
        return nil
    }

    /// The offset of the first byte of `bytes` that does not begin a valid UTF-8 sequence, or nil.
    static func firstInvalidByte(_ bytes: ArraySlice<UInt8>) -> Int? {
        var parser = Unicode.UTF8.ForwardParser()
        var it = bytes.makeIterator()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &it) {
            case .valid(let s): offset += s.count
            case .emptyInput: return nil
            case .error: return offset
            }
        }
    }
}

// MARK: - Unknown characters, listed in one line

/// Debug-quoted characters separated by spaces: the first `limit`, then "and N more".
func listedCharacters(_ chars: [String], limit: Int = 20) -> String {
    let shown = chars.prefix(limit).map { $0.debugDescription }.joined(separator: " ")
    return chars.count > limit ? shown + " and \(chars.count - limit) more" : shown
}

// MARK: - One process under mpirun

enum SingleProcess {
    /// This process's rank when mpirun started it (OMPI_COMM_WORLD_RANK), else nil.
    static var mpiRank: Int? {
        guard MPI.launchedByMPIRun else { return nil }
        return ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"].flatMap { Int($0) } ?? 0
    }

    /// `command` runs in one process: under mpirun, rank 0 notes once that it alone runs, and every
    /// other rank returns false (it exits 0 at once, before reading or creating anything).
    static func proceed(_ command: String) -> Bool {
        guard let rank = mpiRank else { return true }
        let size = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"].flatMap { Int($0) } ?? 1
        if rank == 0 && size > 1 {
            printError("note: \(command) runs in one process: under mpirun, rank 0 alone runs it (the other \(size - 1) rank\(size == 2 ? "" : "s") exit)")
        }
        return rank == 0
    }
}
