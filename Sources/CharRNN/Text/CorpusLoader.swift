// Text/CorpusLoader.swift — a corpus at scale: several inputs, bounded memory, vocabulary control,
// bad-input checks, progress, and the first-pass cache (`TokenCache`).
//
// Contract
// - Inputs: files and directories; a directory stands for its `*.txt` files in name order (byte-wise,
//   not recursive). Files are joined with one "\n" token between them. Errors name the file as given
//   (a directory's files as dir/name) and a byte offset from the start of that file.
// - One pass per file over a read-only mmap, in chunks of `chunkBytes` cut at a scalar boundary
//   (a grapheme-safe cut point with `--unit grapheme`). After each chunk its pages are dropped
//   (madvise DONTNEED), so resident memory while loading is the id buffer plus about one chunk, not
//   the file. Chunks are cut where decoding apart equals decoding together (`chunkEnd`: for NFC and
//   grapheme clusters only after a LF or between two ASCII bytes). Each chunk is hashed right after
//   it is decoded (`CorpusHash.Hasher`), so a single file's `contentHash` costs no second read.
// - Ids go straight into one buffer reserved at one slot per input byte (virtual; only the used
//   slots become resident) and shrunk at the end: 2 bytes per token while V ≤ 65,536, else 4.
// - Bad input: a NUL byte is an error (`.nulByte`), and so is a file whose first 64 KiB are more than
//   `binaryThreshold` non-text bytes (C0 controls other than tab/LF/VT/FF/CR/ESC, DEL, invalid UTF-8)
//   (`.binary`). Invalid UTF-8 is an error unless `lossy`: then each maximal invalid sequence
//   becomes one U+FFFD token and is counted. A file whose size or mtime changes between the start,
//   any chunk and the end of its decoding is an error (`.changed`); so is a file truncated under the
//   mapping in the middle of a chunk (the mapping is guarded: `MappingFaults` turns the SIGBUS into
//   zeros and a recorded offset, reported here as `.changed`).
// - Vocabulary control: with `minCount` and/or `maxVocab`, characters seen fewer than minCount times,
//   and all but the `maxVocab − 1` most frequent, share one unknown token: text "", id 0, sorted
//   first, so the rest of the vocabulary keeps its code-point order. The ids are remapped in place.
// - `counts` (occurrences per id) and `stats` (replacements, coverage, the most frequent characters
//   that fell out) come with the corpus.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Options and report

/// How to turn the input files into tokens. Part of the token cache's key.
package struct LoadOptions: Sendable, Equatable, Codable {
    package var unit: TokenUnit = .scalar
    package var normalize: Normalization = .none
    /// Replace invalid UTF-8 with U+FFFD (counted) instead of stopping.
    package var lossy = false
    /// Characters seen fewer times than this map to the unknown token (1 = keep all).
    package var minCount = 1
    /// At most this many tokens including the unknown one (nil = no limit).
    package var maxVocab: Int? = nil
    package init() {}

    /// True when some characters may be mapped to the unknown token.
    package var prunes: Bool { minCount > 1 || maxVocab != nil }

    package var problem: String? {
        if minCount < 1 { return "\(Setting.minCount) must be at least 1" }
        if let m = maxVocab, m < 2 { return "\(Setting.maxVocab) must be at least 2 (one character and the unknown token)" }
        return nil
    }
}

/// What loading found. All counts are tokens.
package struct CorpusStats: Sendable, Equatable, Codable {
    /// Invalid UTF-8 sequences replaced by U+FFFD (`lossy`).
    package var replacements = 0
    /// Distinct tokens before pruning.
    package var distinctTokens = 0
    /// Tokens whose character is in the vocabulary (not mapped to unknown).
    package var coveredTokens = 0
    /// Distinct characters mapped to the unknown token.
    package var droppedDistinct = 0
    /// The most frequent characters that fell out, with their counts (at most 10).
    package var topDropped: [DroppedToken] = []
    package init() {}

    package struct DroppedToken: Sendable, Equatable, Codable {
        package var token: String
        package var count: Int
    }
}

/// One input file: path as named in errors, and what `stat` said when it was opened.
package struct InputFile: Sendable, Equatable, Codable {
    package var path: String
    package var size: Int
    package var mtimeNanoseconds: Int64
    /// The inode's change time: set by the kernel on every write, rename or `utimensat`, and not
    /// settable from user space, so a rewrite that restores the mtime (`touch -r`) still changes it.
    package var ctimeNanoseconds: Int64
    package var inode: UInt64
}

// MARK: - Loader

package enum CorpusLoader {
    /// Bytes decoded between progress reports, page drops and change checks.
    package static let chunkBytes = 8 << 20
    /// Fraction of non-text bytes in a file's first 64 KiB above which it is rejected as binary.
    package static let binaryThreshold = 0.30

    /// Expands directories into their `*.txt` files (name order) and stats every file.
    /// - Throws: `TextError.cannotRead` for a missing path, an unreadable directory, or a directory
    ///   with no .txt file.
    package static func inputs(_ paths: [String]) throws(TextError) -> [InputFile] {
        var out: [InputFile] = []
        for path in paths {
            var st = stat()
            if stat(path, &st) != 0 { throw .cannotRead(path, code: errno) }
            if st.st_mode & S_IFMT == S_IFDIR {
                guard let dir = opendir(path) else { throw .cannotRead(path, code: errno) }
                var names: [String] = []
                while let e = readdir(dir) {
                    let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                        String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
                    }
                    if name.hasSuffix(".txt") && !name.hasPrefix(".") { names.append(name) }
                }
                closedir(dir)
                names.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
                if names.isEmpty { throw .cannotRead(file: path, reason: "directory has no .txt files") }
                let prefix = path.hasSuffix("/") ? path : path + "/"
                for n in names {
                    let p = prefix + n
                    var fst = stat()
                    if stat(p, &fst) != 0 { throw .cannotRead(p, code: errno) }
                    if fst.st_mode & S_IFMT == S_IFDIR { continue }
                    out.append(InputFile(path: p, stat: fst))
                }
            } else {
                out.append(InputFile(path: path, stat: st))
            }
        }
        return out
    }

    /// Loads and decodes `files` in order, joined by "\n", then prunes the vocabulary as `options` ask.
    /// The corpus' `contentHash` is the hash of the file's bytes, computed while decoding, when
    /// `files` is one regular file; nil otherwise.
    /// - Parameters:
    ///   - name: the corpus name (for run names).
    ///   - progress: called after each chunk with (bytes done, total bytes).
    /// - Throws: `TextError`.
    package static func load(_ files: [InputFile], name: String, options: LoadOptions,
                            progress: (Int, Int) -> Void = { _, _ in }) throws(TextError) -> Corpus {
        try load(files, name: name, options: options, chunkBytes: chunkBytes, progress: progress)
    }

    /// `load` with a chunk size of `chunkBytes` (tests use small ones).
    static func load(_ files: [InputFile], name: String, options: LoadOptions, chunkBytes: Int,
                     progress: (Int, Int) -> Void) throws(TextError) -> Corpus {
        precondition(!files.isEmpty, "no input files")
        if let p = options.problem { throw .invalidOption(p) }
        let total = files.reduce(0) { $0 + $1.size }
        var sink = InterningSink()
        defer { sink.release() }
        sink.willScan(byteCount: total + files.count)        // one reservation for all files and separators
        var replacements = 0
        var hash: String? = nil
        var done = 0
        let newline: [UInt8] = [0x0A]
        for (k, file) in files.enumerated() {
            if k > 0 { newline.withUnsafeBufferPointer { sink.scalar(0x0A, bytes: $0.baseAddress!, length: 1) } }
            let decoded = try decodeFile(file, options: options, chunkBytes: chunkBytes, sink: &sink) { d in
                progress(done + d, total)
            }
            replacements += decoded.replacements
            hash = decoded.hash
            done += file.size
            progress(done, total)
        }
        if sink.count == 0 { throw .empty(file: files.map(\.path).joined(separator: " ")) }
        let (vocabulary, store) = sink.finish(unit: options.unit)
        var corpus = Corpus(name: name, vocabulary: vocabulary, store: store)
        corpus.counts = store.counts(V: vocabulary.count)
        corpus.stats.replacements = replacements
        corpus.stats.distinctTokens = vocabulary.count
        corpus.stats.coveredTokens = corpus.count
        corpus.contentHash = files.count == 1 ? hash : nil
        if options.prunes { corpus = prune(corpus, options: options) }
        return corpus
    }

    /// Occurrences of each id (the same as `Corpus.tokenCounts`).
    static func countTokens(_ store: TokenStore, V: Int) -> [Int] { store.counts(V: V) }

    // MARK: Decoding one file

    /// Decodes one file into `sink`.
    /// - Returns: the number of U+FFFD replacements, and the file's `CorpusHash` (nil unless it is a
    ///   regular file).
    static func decodeFile<S: TokenSink>(_ file: InputFile, options: LoadOptions, chunkBytes: Int, sink: inout S,
                                         progress: (Int) -> Void) throws(TextError) -> (replacements: Int, hash: String?) {
        let fd = open(file.path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw .cannotRead(file.path, code: errno) }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw .cannotRead(file.path, code: errno) }
        var hasher = CorpusHash.Hasher()
        if st.st_mode & S_IFMT != S_IFREG {
            // Pipes and devices: read into memory. They cannot be read again, so no hash is kept.
            let replaced = try FileBytes.withContents(fd: fd, path: file.path) { (bytes, _) throws(TextError) -> Int in
                try decodeBytes(bytes, file: file.path, options: options, checksText: true, chunkBytes: chunkBytes,
                                sink: &sink, hasher: &hasher, afterChunk: { (d) throws(TextError) in progress(d) })
            }
            return (replaced, nil)
        }
        let opened = InputFile(path: file.path, stat: st)
        if opened.size != file.size || opened.mtimeNanoseconds != file.mtimeNanoseconds {
            throw .changed(file: file.path, offset: 0)
        }
        let mapped: MappedFile
        do { mapped = try MappedFile(fd: fd, size: opened.size, path: file.path, sequential: true, guarded: true) } catch {
            throw .cannotRead(file.path, code: error.code)
        }
        defer { mapped.unmap() }
        // After every chunk, including the last: the file must not have changed since it was opened
        // (checked before the progress report, so a caller sees only verified offsets).
        let afterChunk = { (offset: Int) throws(TextError) in
            var now = stat()
            if fstat(fd, &now) != 0 { throw .cannotRead(file.path, code: errno) }
            let n = InputFile(path: file.path, stat: now)
            if n.size != opened.size || n.mtimeNanoseconds != opened.mtimeNanoseconds {
                throw .changed(file: file.path, offset: offset)
            }
            progress(offset)
        }
        // Truncated in the middle of a chunk: the missing bytes read as zeros (a NUL error, or wrong
        // tokens), so a recorded fault wins over whatever decoding made of them.
        let replaced: Int
        do {
            replaced = try decodeBytes(mapped.bytes, file: file.path, options: options, checksText: true,
                                       dropsPages: true, chunkBytes: chunkBytes, sink: &sink, hasher: &hasher,
                                       afterChunk: afterChunk)
        } catch {
            if let at = mapped.faultOffset { throw .changed(file: file.path, offset: at) }
            throw error
        }
        let hash = CorpusHash.format(hasher.finish(mapped.bytes))
        if let at = mapped.faultOffset { throw .changed(file: file.path, offset: at) }
        return (replaced, hash)
    }

    /// Checks, then decodes `input` (a whole file's bytes) chunk by chunk into `sink`, feeding each
    /// chunk to `hasher` right after decoding it, so the content hash needs no second read. Chunks end
    /// where decoding the two sides apart gives the same tokens and errors as decoding them together
    /// (`chunkEnd`), so the result does not depend on `chunkBytes`.
    /// - Parameters:
    ///   - checksText: reject NUL bytes and binary files (for files), or not (text given in memory).
    ///   - dropsPages: `input` is a file mapping whose decoded pages may be released.
    ///   - afterChunk: called with the offset reached after each chunk (progress, change checks).
    /// - Returns: the number of U+FFFD replacements (`options.lossy`).
    static func decodeBytes<S: TokenSink>(_ input: UnsafeBufferPointer<UInt8>, file: String, options: LoadOptions,
                                          checksText: Bool, dropsPages: Bool = false, chunkBytes: Int = chunkBytes,
                                          sink: inout S, hasher: inout CorpusHash.Hasher,
                                          afterChunk: (Int) throws(TextError) -> Void = { _ in }) throws(TextError) -> Int {
        guard let base = input.baseAddress, input.count > 0 else { return 0 }
        // a UTF-16 or UTF-32 text is named as such, with the command that converts it (file or memory)
        if let encoding = wideEncoding(input) { throw .wideEncoding(file: file, encoding: encoding) }
        let n = input.count
        let nfc = options.normalize == .nfc
        if checksText {
            try rejectBinary(input, file: file)
            // NFC text is checked for NUL all at once, so a NUL anywhere is reported before invalid UTF-8.
            if nfc, let z = memchr(base, 0, n) { throw nulError(input, at: UnsafeRawPointer(z) - UnsafeRawPointer(base), file: file) }
        }
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        var replaced = 0
        var pos = 0
        var dropped = 0                                      // pages below this offset were released
        while pos < n {
            let end = chunkEnd(base, from: pos, count: n, chunkBytes: chunkBytes, options: options)
            if checksText && !nfc, let z = memchr(base + pos, 0, end - pos) {
                throw nulError(input, at: UnsafeRawPointer(z) - UnsafeRawPointer(base), file: file)
            }
            replaced += try decodeRange(input, from: pos, to: end, file: file, options: options, sink: &sink)
            hasher.absorb(input, through: end)
            // Release the pages already decoded and hashed (read-only private mapping: they are just dropped).
            let releaseEnd = (end / pageSize) * pageSize
            if dropsPages && releaseEnd > dropped {
                _ = madvise(UnsafeMutableRawPointer(mutating: base + dropped), releaseEnd - dropped, MADV_DONTNEED)
                dropped = releaseEnd
            }
            pos = end
            try afterChunk(pos)
        }
        return replaced
    }

    /// Where a chunk from `pos` ends: about `chunkBytes` on, at a point where decoding the two sides
    /// apart equals decoding them together. Scalars: not on a continuation byte (up to 3 back, else on
    /// past the run of them). Grapheme clusters and NFC: after a LF or between two ASCII bytes other
    /// than CR LF (`UTF8Decoder.nextCut`), else the end.
    static func chunkEnd(_ base: UnsafePointer<UInt8>, from pos: Int, count n: Int, chunkBytes: Int,
                         options: LoadOptions) -> Int {
        let target = pos + max(chunkBytes, 1)
        if target >= n { return n }
        guard options.unit == .scalar && options.normalize == .none else {
            return UTF8Decoder.nextCut(base, from: target, lowerBound: pos, end: n, preferBefore: true)
        }
        var end = target
        while end > pos + 1 && end > target - 3 && base[end] & 0xC0 == 0x80 { end -= 1 }
        if base[end] & 0xC0 != 0x80 { return end }
        end = target
        while end < n && base[end] & 0xC0 == 0x80 { end += 1 }
        return end
    }

    /// Decodes `input[from..<to]`; in lossy mode, invalid sequences become U+FFFD. A BOM is skipped
    /// only at the start of the file.
    static func decodeRange<S: TokenSink>(_ input: UnsafeBufferPointer<UInt8>, from: Int, to: Int, file: String,
                                          options: LoadOptions, sink: inout S) throws(TextError) -> Int {
        let base = input.baseAddress!
        let bom = from == 0 ? UTF8Decoder.bomLength(input) : 0
        func decodeValid(_ a: Int, _ b: Int) throws(TextError) {
            guard b > a else { return }
            do {
                if options.normalize == .nfc {
                    try UTF8Decoder.tokenize(UnsafeBufferPointer(start: base + a, count: b - a), unit: options.unit,
                                             normalize: .nfc, skipsBOM: false, into: &sink)
                } else {
                    try UTF8Decoder.scanDirect(base, from: a, to: b, unit: options.unit, into: &sink)
                }
            } catch {
                if case let .invalidUTF8(offset) = error, options.normalize == .nfc {
                    throw TextError(.invalidUTF8(offset: a + offset), in: input, file: file)
                }
                throw TextError(error, in: input, file: file)
            }
        }
        if !options.lossy {
            try decodeValid(from + bom, to)
            return 0
        }
        var pos = from + bom
        var replaced = 0
        let fffd: [UInt8] = [0xEF, 0xBF, 0xBD]
        while pos < to {
            guard let bad = UTF8Decoder.firstInvalid(base + pos, count: to - pos) else {
                try decodeValid(pos, to)
                break
            }
            try decodeValid(pos, pos + bad)
            let at = pos + bad
            fffd.withUnsafeBufferPointer { sink.scalar(0xFFFD, bytes: $0.baseAddress!, length: 3) }
            replaced += 1
            pos = min(to, at + maximalSubpart(base + at, count: to - at))
        }
        return replaced
    }

    /// Length of the maximal subpart of an ill-formed sequence at `p` (Unicode §3.9, Table 3-7): the
    /// longest prefix of a well-formed sequence, at least 1 byte. One U+FFFD replaces it (as Swift,
    /// ICU and WHATWG do).
    static func maximalSubpart(_ p: UnsafePointer<UInt8>, count n: Int) -> Int {
        let lead = p[0]
        let length: Int
        var lo: UInt8 = 0x80, hi: UInt8 = 0xBF                 // allowed range of the second byte
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; lo = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; hi = 0x9F
        case 0xF0: length = 4; lo = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; hi = 0x8F
        default: return 1
        }
        var k = 1
        while k < length && k < n {
            let b = p[k]
            if k == 1 ? (b < lo || b > hi) : (b & 0xC0 != 0x80) { break }
            k += 1
        }
        return k
    }

    /// "UTF-16LE", "UTF-16BE", "UTF-32LE" or "UTF-32BE" when the bytes start with that byte-order mark.
    static func wideEncoding(_ b: UnsafeBufferPointer<UInt8>) -> String? {
        func starts(_ m: [UInt8]) -> Bool { b.count >= m.count && zip(b, m).allSatisfy { $0 == $1 } }
        if starts([0xFF, 0xFE, 0, 0]) { return "UTF-32LE" }
        if starts([0, 0, 0xFE, 0xFF]) { return "UTF-32BE" }
        if starts([0xFF, 0xFE]) { return "UTF-16LE" }
        if starts([0xFE, 0xFF]) { return "UTF-16BE" }
        return nil
    }

    static func nulError(_ input: UnsafeBufferPointer<UInt8>, at offset: Int, file: String) -> TextError {
        let at = TextLocation(offset: offset, in: input)
        return .nulByte(file: file, line: at.line, column: at.column, byteOffset: offset)
    }

    /// Rejects a file whose first 64 KiB are mostly not text.
    static func rejectBinary(_ input: UnsafeBufferPointer<UInt8>, file: String) throws(TextError) {
        let n = min(input.count, 1 << 16)
        guard n >= 16, let p = input.baseAddress else { return }
        var bad = 0
        var first = -1
        var i = 0
        while i < n {
            let b = p[i]
            if b < 0x80 {
                let text = b >= 0x20 && b != 0x7F || (b >= 0x09 && b <= 0x0D) || b == 0x1B
                if !text { bad += 1; if first < 0 { first = i } }
                i += 1
                continue
            }
            var cp: Int32 = -1
            let len = UTF8Decoder.scalarLength(p + i, count: n - i, value: &cp)
            if len <= 0 {
                if n - i < 4 && i > 0 { break }              // a sequence cut by the 64 KiB window
                bad += 1; if first < 0 { first = i }
                i += 1
            } else {
                i += len
            }
        }
        let fraction = Double(bad) / Double(n)
        if fraction > binaryThreshold {
            throw .binary(file: file, byteOffset: first, percent: Int((fraction * 100).rounded()), sampled: n)
        }
    }

    // MARK: Vocabulary control

    /// Maps the rare characters to one unknown token (id 0, text "") and remaps the ids in place (the
    /// corpus is not handed out yet, so nobody else sees its store change).
    static func prune(_ corpus: Corpus, options: LoadOptions) -> Corpus {
        let V = corpus.vocabulary.count
        let counts = corpus.counts
        // Keep: count ≥ minCount, then the (maxVocab − 1) most frequent (ties: lower id first).
        var keep = (0..<V).filter { counts[$0] >= options.minCount }
        if let m = options.maxVocab, keep.count > m - 1 {
            keep.sort { counts[$0] > counts[$1] || (counts[$0] == counts[$1] && $0 < $1) }
            keep = Array(keep.prefix(m - 1))
            keep.sort()
        }
        if keep.count == V { return corpus }                  // nothing falls out: no unknown token
        var remap = [Int32](repeating: 0, count: V)           // old id → new id; 0 = unknown
        var tokens = [""]
        var newCounts = [0]
        for (k, old) in keep.enumerated() {
            remap[old] = Int32(k + 1)
            tokens.append(corpus.vocabulary.tokens[old])
            newCounts.append(counts[old])
        }
        var dropped: [Int] = []
        for old in 0..<V where remap[old] == 0 { dropped.append(old); newCounts[0] += counts[old] }
        dropped.sort { counts[$0] > counts[$1] || (counts[$0] == counts[$1] && $0 < $1) }
        corpus.store.remap(remap)
        var out = Corpus(name: corpus.name, vocabulary: Vocabulary(unit: corpus.vocabulary.unit, tokens: tokens, unknownID: 0),
                         store: corpus.store)
        out.counts = newCounts
        out.stats = corpus.stats
        out.contentHash = corpus.contentHash
        out.stats.coveredTokens = corpus.count - newCounts[0]
        out.stats.droppedDistinct = dropped.count
        out.stats.topDropped = dropped.prefix(10).map { .init(token: corpus.vocabulary.tokens[$0], count: counts[$0]) }
        return out
    }
}

extension InputFile {
    init(path: String, stat st: stat) {
        self.path = path
        size = Int(st.st_size)
        mtimeNanoseconds = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        ctimeNanoseconds = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
        inode = UInt64(st.st_ino)
    }
}

extension Corpus {
    /// Percentage of tokens whose character is in the vocabulary (100 without an unknown token).
    package var coveragePercent: Double {
        count == 0 ? 100 : 100 * Double(stats.coveredTokens) / Double(count)
    }
}
