// Text/Corpus.swift — a training text as a flat array of token ids, plus the text errors.
//
// Contract
// - `load` maps the file (mmap, read-only) and decodes it in one pass with `UTF8Decoder`; no Swift
//   String of the file is ever built. Non-regular files (pipes, /dev/stdin) are read into memory instead.
// - While scanning, each new token gets a provisional id in order of first appearance (flat table for
//   the BMP, dictionaries for the rest). Ids are stored as UInt16 and widened in place to UInt32 the
//   moment a 65,537th distinct token appears. At the end the vocabulary is sorted in code-point order
//   and the ids are remapped in place with one table lookup per token.
// - Memory: ~2 bytes per token (4 when V > 65,536) plus the mapped file while loading. The id buffer
//   is reserved at one slot per input byte (an upper bound) and shrunk to fit at the end.
// - A leading BOM is skipped. Empty text after it, unreadable files and invalid UTF-8 are errors;
//   invalid UTF-8 is reported as file:line:column (byte offset), see `TextError`.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Errors

/// Errors from reading, decoding and splitting a corpus. Each description is one line.
public enum TextError: Error, CustomStringConvertible, Equatable {
    /// The file could not be opened or read; `reason` is `strerror(errno)`.
    case cannotRead(file: String, reason: String)
    /// Invalid UTF-8 at 1-based `line` and `column` (in Unicode scalars), `byteOffset` 0-based from the
    /// start of the file (BOM included); `bytes` are the offending bytes.
    case invalidUTF8(file: String, line: Int, column: Int, byteOffset: Int, bytes: [UInt8])
    /// No tokens after the optional BOM.
    case empty(file: String)
    /// utf8proc failed to normalize (out of memory).
    case normalizationFailed(file: String, reason: String)
    /// Fewer tokens than one training and one validation minibatch need; `minimum` is the least that works.
    case tooSmall(file: String, tokens: Int, minimum: Int, batch: Int, seq: Int)
    /// Split fractions outside [0, 1], or that leave no training or no validation minibatch at any size.
    case invalidSplit(file: String, trainFrac: Double, valFrac: Double)
    /// A NUL byte (text files have none) at 1-based line/column, 0-based `byteOffset`.
    case nulByte(file: String, line: Int, column: Int, byteOffset: Int)
    /// More than `CorpusLoader.binaryThreshold` of the first `sampled` bytes are not text.
    case binary(file: String, byteOffset: Int, percent: Int, sampled: Int)
    /// The file's size or modification time changed while it was being read (near `offset`).
    case changed(file: String, offset: Int)
    /// A loading option is out of range.
    case invalidOption(String)

    public var description: String {
        switch self {
        case let .cannotRead(file, reason):
            return "cannot read \(file): \(reason)"
        case let .invalidUTF8(file, line, column, byteOffset, bytes):
            let hex = bytes.map { b -> String in
                let digits = String(b, radix: 16, uppercase: true)
                return "0x" + (digits.count < 2 ? "0" + digits : digits)
            }
            return "\(file):\(line):\(column) (byte \(byteOffset)): invalid UTF-8 sequence \(hex.joined(separator: " "))"
        case let .empty(file):
            return "\(file): corpus is empty"
        case let .normalizationFailed(file, reason):
            return "\(file): NFC normalization failed: \(reason)"
        case let .tooSmall(file, tokens, minimum, batch, seq):
            return "\(file): corpus too small: \(tokens) tokens, need at least \(minimum) for --batch \(batch) --seq \(seq) (one training and one validation minibatch)"
        case let .invalidSplit(file, trainFrac, valFrac):
            return "\(file): --train-frac \(trainFrac) --val-frac \(valFrac) cannot give one training and one validation minibatch (both must be in [0, 1], train > 0, and val > 0 unless train + val >= 1)"
        case let .nulByte(file, line, column, byteOffset):
            return "\(file):\(line):\(column) (byte \(byteOffset)): NUL byte; this looks like a binary file, not UTF-8 text"
        case let .binary(file, byteOffset, percent, sampled):
            return "\(file) (byte \(byteOffset)): not a text file: \(percent)% of the first \(sampled) bytes are control bytes or invalid UTF-8"
        case let .changed(file, offset):
            return "\(file): the file changed while it was being read (near byte \(offset)); load it again once it is complete"
        case let .invalidOption(message):
            return message
        }
    }
}

// MARK: - Corpus

/// A decoded training text: its vocabulary and one id per token.
public struct Corpus: Sendable {
    /// The file's base name without extension (for run names), e.g. "tang-poems".
    public let name: String
    /// Built from this corpus: its distinct tokens in code-point order.
    public let vocabulary: Vocabulary
    let store: TokenStore
    /// Occurrences of each id in the token array (V entries); filled by `CorpusLoader`, empty otherwise.
    public internal(set) var counts: [Int] = []
    /// What loading found and did (replacements, pruned characters); see `CorpusLoader`.
    public internal(set) var stats = CorpusStats()

    /// Number of tokens.
    public var count: Int { store.count }

    /// Bytes used per stored id: 2 while the vocabulary has at most 65,536 tokens, else 4.
    public var bytesPerToken: Int { store.wide == nil ? 2 : 4 }

    /// The id of token `i` (0 ≤ i < count).
    @inline(__always)
    public func token(at i: Int) -> Int32 {
        precondition(i >= 0 && i < store.count, "token index \(i) out of range 0..<\(store.count)")
        if let w = store.wide { return Int32(bitPattern: w[i]) }
        return Int32(store.narrow![i])
    }

    /// Writes ids `start..<start+count` to `dst[0..<count]`.
    /// - Parameters:
    ///   - start: first token index.
    ///   - count: number of tokens; `start + count` must not exceed `self.count`.
    ///   - dst: output, written (=).
    public func copyTokens(from start: Int, count: Int, into dst: UnsafeMutablePointer<Int32>) {
        precondition(start >= 0 && count >= 0 && start + count <= store.count, "token range out of bounds")
        if let w = store.wide {
            for k in 0..<count { dst[k] = Int32(bitPattern: w[start + k]) }
        } else if let n = store.narrow {
            for k in 0..<count { dst[k] = Int32(n[start + k]) }
        }
    }

    /// Loads and decodes a UTF-8 text file.
    /// - Parameters:
    ///   - path: the file; it is named as given in errors.
    ///   - unit: one token per Unicode scalar or per extended grapheme cluster.
    ///   - normalize: `.nfc` to compose the text before tokenizing; `.none` learns it as written.
    /// - Throws: `TextError` (`.cannotRead`, `.invalidUTF8`, `.empty`, `.normalizationFailed`).
    public static func load(path: String, unit: TokenUnit = .scalar, normalize: Normalization = .none) throws -> Corpus {
        try FileBytes.withContents(of: path) { (bytes) throws(TextError) -> Corpus in
            try Corpus(decoding: bytes, file: path, unit: unit, normalize: normalize)
        }
    }

    /// Decodes a corpus held in memory.
    /// - Parameters:
    ///   - bytes: the UTF-8 text, optionally starting with a BOM.
    ///   - name: the file name used in errors; `self.name` is its base name without extension.
    ///   - unit: one token per Unicode scalar or per extended grapheme cluster.
    ///   - normalize: `.nfc` to compose the text before tokenizing.
    /// - Throws: `TextError` (`.invalidUTF8`, `.empty`, `.normalizationFailed`).
    public init(bytes: [UInt8], name: String, unit: TokenUnit = .scalar, normalize: Normalization = .none) throws {
        self = try bytes.withUnsafeBufferPointer { (buf) throws(TextError) -> Corpus in
            try Corpus(decoding: buf, file: name, unit: unit, normalize: normalize)
        }
    }

    init(decoding input: UnsafeBufferPointer<UInt8>, file: String, unit: TokenUnit,
         normalize: Normalization) throws(TextError) {
        var sink = InterningSink()
        defer { sink.release() }
        do {
            try UTF8Decoder.tokenize(input, unit: unit, normalize: normalize, into: &sink)
        } catch {
            switch error {
            case let .invalidUTF8(offset):
                let at = TextLocation(offset: offset, in: input)
                throw .invalidUTF8(file: file, line: at.line, column: at.column, byteOffset: offset,
                                   bytes: UTF8Decoder.offendingBytes(input, at: offset))
            case let .normalization(message):
                throw .normalizationFailed(file: file, reason: message)
            }
        }
        if sink.count == 0 { throw .empty(file: file) }
        let (vocabulary, store) = sink.finish(unit: unit)
        self.name = Corpus.baseName(file)
        self.vocabulary = vocabulary
        self.store = store
    }

    /// A corpus over an already built id buffer (the loader and the token cache).
    init(name: String, vocabulary: Vocabulary, store: TokenStore) {
        self.name = name
        self.vocabulary = vocabulary
        self.store = store
    }

    /// "data/tang-poems.txt" → "tang-poems"; a leading dot ("/x/.hidden") is not an extension.
    static func baseName(_ path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        let last = trimmed.split(separator: "/", omittingEmptySubsequences: false).last ?? trimmed
        if let dot = last.lastIndex(of: "."), dot != last.startIndex { return String(last[..<dot]) }
        return String(last)
    }
}

// MARK: - Token storage

/// Owns the id buffer (malloc'd, UInt16 or UInt32), or a read-only mapping of a token cache file
/// that holds it. Immutable once built, hence Sendable.
final class TokenStore: @unchecked Sendable {
    let narrow: UnsafeMutablePointer<UInt16>?   // (count) when V ≤ 65,536
    let wide: UnsafeMutablePointer<UInt32>?     // (count) otherwise
    let count: Int
    /// When set, the ids live inside this mmap'd region (never written), which deinit unmaps.
    let mapping: (base: UnsafeMutableRawPointer, length: Int)?

    init(narrow: UnsafeMutablePointer<UInt16>?, wide: UnsafeMutablePointer<UInt32>?, count: Int,
         mapping: (base: UnsafeMutableRawPointer, length: Int)? = nil) {
        self.narrow = narrow
        self.wide = wide
        self.count = count
        self.mapping = mapping
    }

    deinit {
        if let mapping {
            munmap(mapping.base, mapping.length)
        } else {
            free(narrow)
            free(wide)
        }
    }
}

/// Builds the corpus: interns tokens to provisional ids and appends them to a growable id buffer.
struct InterningSink: TokenSink {
    var bmp: UnsafeMutablePointer<Int32>       // (65536) provisional id of each BMP scalar, −1 = unseen
    var astral: [UInt32: Int32] = [:]
    var short: [UInt64: Int32] = [:]           // multi-scalar tokens of ≤ 7 bytes (`TokenTable.packed`)
    var long: [[UInt8]: Int32] = [:]
    var tokens: [[UInt8]] = []                 // provisional id → UTF-8
    var narrow: UnsafeMutablePointer<UInt16>?  // (capacity) ids while there are ≤ 65,536 tokens
    var wide: UnsafeMutablePointer<UInt32>?    // (capacity) ids after widening
    var count = 0
    var capacity = 0

    init() {
        bmp = .allocate(capacity: TokenTable.bmpSize)
        bmp.initialize(repeating: -1, count: TokenTable.bmpSize)
    }

    /// Frees everything still owned (after `finish`, only the scratch table).
    mutating func release() {
        bmp.deallocate()
        free(narrow); narrow = nil
        free(wide); wide = nil
    }

    mutating func willScan(byteCount: Int) {
        let needed = count + byteCount
        guard needed > capacity else { return }
        // One call for the whole file when not normalizing; geometric growth across NFC chunks.
        let newCapacity = capacity == 0 ? max(needed, 1) : max(needed, capacity * 2)
        if let w = wide {
            wide = reallocate(w, capacity: newCapacity)
        } else {
            narrow = reallocate(narrow, capacity: newCapacity)
        }
        capacity = newCapacity
    }

    @inline(__always)
    mutating func scalar(_ value: UInt32, bytes: UnsafePointer<UInt8>, length: Int) {
        var id: Int32
        if value < UInt32(TokenTable.bmpSize) {
            id = bmp[Int(value)]
            if id < 0 {
                id = newToken(bytes, length: length)
                bmp[Int(value)] = id
            }
        } else if let known = astral[value] {
            id = known
        } else {
            id = newToken(bytes, length: length)
            astral[value] = id
        }
        append(id)
    }

    mutating func cluster(bytes: UnsafePointer<UInt8>, length: Int) {
        var id: Int32
        if length <= 7 {
            let key = TokenTable.packed(bytes, length: length)
            if let known = short[key] { id = known } else {
                id = newToken(bytes, length: length)
                short[key] = id
            }
        } else {
            let key = Array(UnsafeBufferPointer(start: bytes, count: length))
            if let known = long[key] { id = known } else {
                id = newToken(bytes, length: length)
                long[key] = id
            }
        }
        append(id)
    }

    @inline(__always)
    mutating func append(_ id: Int32) {
        if let w = wide { w[count] = UInt32(bitPattern: id) } else { narrow.unsafelyUnwrapped[count] = UInt16(truncatingIfNeeded: id) }
        count += 1
    }

    mutating func newToken(_ bytes: UnsafePointer<UInt8>, length: Int) -> Int32 {
        let id = Int32(tokens.count)
        tokens.append(Array(UnsafeBufferPointer(start: bytes, count: length)))
        if id > Int32(UInt16.max) && wide == nil { widen() }
        return id
    }

    /// UInt16 → UInt32 ids, once, when the 65,537th distinct token appears.
    mutating func widen() {
        let w: UnsafeMutablePointer<UInt32> = reallocate(nil, capacity: max(capacity, 1))
        if let n = narrow {
            for k in 0..<count { w[k] = UInt32(n[k]) }
        }
        free(narrow)
        narrow = nil
        wide = w
    }

    /// Sorts the vocabulary in code-point order, remaps the ids in place, and hands over the buffer.
    mutating func finish(unit: TokenUnit) -> (Vocabulary, TokenStore) {
        // Byte-wise order of UTF-8 == lexicographic order of the scalar sequences.
        let order = tokens.indices.sorted { tokens[$0].lexicographicallyPrecedes(tokens[$1]) }
        var table = TokenTable()
        var texts: [String] = []
        texts.reserveCapacity(order.count)
        var remap = [Int32](repeating: 0, count: order.count)   // provisional id → final id
        for (final, provisional) in order.enumerated() {
            remap[provisional] = Int32(final)
            texts.append(String(decoding: tokens[provisional], as: UTF8.self))
            table.insertIfAbsent(tokens[provisional], id: Int32(final))
        }
        let identity = order.elementsEqual(order.indices)
        if !identity {
            remap.withUnsafeBufferPointer { r in
                if let w = wide {
                    for k in 0..<count { w[k] = UInt32(bitPattern: r[Int(w[k])]) }
                } else if let n = narrow {
                    for k in 0..<count { n[k] = UInt16(truncatingIfNeeded: r[Int(n[k])]) }
                }
            }
        }
        // Shrink to fit and transfer ownership.
        let store: TokenStore
        if let w = wide {
            store = TokenStore(narrow: nil, wide: reallocate(w, capacity: max(count, 1)), count: count)
        } else {
            store = TokenStore(narrow: reallocate(narrow, capacity: max(count, 1)), wide: nil, count: count)
        }
        narrow = nil
        wide = nil
        return (Vocabulary(unit: unit, tokens: texts, table: table), store)
    }
}

/// `realloc` for a trivial element type. Traps (via precondition) only if the allocation itself fails.
func reallocate<T>(_ p: UnsafeMutablePointer<T>?, capacity: Int) -> UnsafeMutablePointer<T> {
    let raw = realloc(p, capacity * MemoryLayout<T>.stride)
    precondition(raw != nil, "out of memory allocating \(capacity * MemoryLayout<T>.stride) bytes for token ids")
    return raw!.bindMemory(to: T.self, capacity: capacity)
}

// MARK: - File access

/// Read-only access to a file's bytes: mmap for regular files, a read loop for anything else.
enum FileBytes {
    static func withContents<R>(of path: String,
                                _ body: (UnsafeBufferPointer<UInt8>) throws(TextError) -> R) throws(TextError) -> R {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw .cannotRead(file: path, reason: lastError()) }
        defer { close(fd) }
        var info = stat()
        if fstat(fd, &info) != 0 { throw .cannotRead(file: path, reason: lastError()) }
        let type = info.st_mode & S_IFMT
        if type == S_IFDIR { throw .cannotRead(file: path, reason: String(cString: strerror(EISDIR))) }
        if type == S_IFREG {
            let size = Int(info.st_size)
            if size == 0 { return try body(UnsafeBufferPointer(start: nil, count: 0)) }
            let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
            if mapped == nil || mapped == UnsafeMutableRawPointer(bitPattern: -1) {
                throw .cannotRead(file: path, reason: lastError())
            }
            defer { munmap(mapped, size) }
            _ = madvise(mapped, size, MADV_SEQUENTIAL)
            let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(mapped!).assumingMemoryBound(to: UInt8.self),
                                            count: size)
            return try body(bytes)
        }
        // Pipe, character device, …: read until EOF.
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .cannotRead(file: path, reason: lastError())
            }
            if n == 0 { break }
            data.append(contentsOf: chunk[0..<n])
        }
        return try data.withUnsafeBufferPointer { (bytes) throws(TextError) -> R in try body(bytes) }
    }

    private static func lastError() -> String { String(cString: strerror(errno)) }
}
