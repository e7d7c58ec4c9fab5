// Text/Corpus.swift — a training text as a flat array of token ids, plus the text errors.
//
// Contract
// - Files are read by `CorpusLoader` (mmap, one pass, see there); `Corpus(bytes:)` decodes text held
//   in memory. No Swift String of the text is ever built.
// - While scanning, each new token gets a provisional id in order of first appearance (`TokenTable`,
//   shared with `Vocabulary`). Ids are stored as UInt16 and widened in place to UInt32 the moment a
//   65,537th distinct token appears (`TokenStoreBuilder`). At the end the vocabulary is sorted in
//   code-point order and the ids are remapped in place with one table lookup per token.
// - Every loop over the ids is written once, generic over the id width, and run at the store's width
//   by `TokenStore.run` (an `IDLoop`), so it is specialised for UInt16 and UInt32.
// - Memory: ~2 bytes per token (4 when V > 65,536) plus the mapped file while loading. The id buffer
//   is reserved at one slot per input byte (an upper bound) and shrunk to fit at the end.
// - A leading BOM is skipped. Empty text after it, unreadable files and invalid UTF-8 are errors;
//   invalid UTF-8 is reported as file:line:column (byte offset), see `TextError`.
// - `MappedFile` is the one place that maps files (corpus files, the token cache); a corpus file
//   truncated while mapped is reported as changed, not a SIGBUS crash (`MappingFaults`).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Errors

/// Errors from reading, decoding and splitting a corpus. Each description is one line.
package enum TextError: Error, CustomStringConvertible, Equatable {
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
    /// The file starts with a UTF-16 or UTF-32 byte-order mark (`encoding`, e.g. "UTF-16LE").
    case wideEncoding(file: String, encoding: String)
    /// The file's size or modification time changed while it was being read (near `offset`).
    case changed(file: String, offset: Int)
    /// A loading option is out of range.
    case invalidOption(String)

    package var description: String {
        switch self {
        case let .cannotRead(file, reason):
            return "cannot read \(displayPath(file)): \(reason)"
        case let .invalidUTF8(file, line, column, byteOffset, bytes):
            let hex = bytes.map { b -> String in
                let digits = String(b, radix: 16, uppercase: true)
                return "0x" + (digits.count < 2 ? "0" + digits : digits)
            }
            return "\(displayPath(file)):\(line):\(column) (byte \(byteOffset)): invalid UTF-8 sequence \(hex.joined(separator: " "))"
        case let .empty(file):
            return "\(displayPath(file)): corpus is empty"
        case let .normalizationFailed(file, reason):
            return "\(displayPath(file)): NFC normalization failed: \(reason)"
        case let .tooSmall(file, tokens, minimum, batch, seq):
            return "\(displayPath(file)): corpus too small: \(tokens) tokens, need at least \(minimum) for \(Setting.batch) \(batch) \(Setting.seq) \(seq) (one training and one validation minibatch)"
        case let .invalidSplit(file, trainFrac, valFrac):
            return "\(displayPath(file)): \(Setting.trainFrac) \(trainFrac) \(Setting.valFrac) \(valFrac) cannot give one training and one validation minibatch (both must be in [0, 1], train > 0, and val > 0 unless train + val >= 1)"
        case let .nulByte(file, line, column, byteOffset):
            return "\(displayPath(file)):\(line):\(column) (byte \(byteOffset)): NUL byte; this looks like a binary file, not UTF-8 text"
        case let .binary(file, byteOffset, percent, sampled):
            return "\(displayPath(file)) (byte \(byteOffset)): not a text file: \(percent)% of the first \(sampled) bytes are control bytes or invalid UTF-8"
        case let .wideEncoding(file, encoding):
            return "\(displayPath(file)): the file is \(encoding) (it starts with that byte-order mark), not UTF-8; convert it first: iconv -f \(encoding) -t UTF-8 \(shellQuoted(file)) > corpus-utf8.txt"
        case let .changed(file, offset):
            return "\(displayPath(file)): the file changed while it was being read (near byte \(offset)); load it again once it is complete"
        case let .invalidOption(message):
            return message
        }
    }
}

extension TextError {
    /// The error for a decoding `failure` in `input`, the whole file's bytes (BOM included), named `file`.
    init(_ failure: DecodeFailure, in input: UnsafeBufferPointer<UInt8>, file: String) {
        switch failure {
        case let .invalidUTF8(offset):
            let at = TextLocation(offset: offset, in: input)
            self = .invalidUTF8(file: file, line: at.line, column: at.column, byteOffset: offset,
                                bytes: UTF8Decoder.offendingBytes(input, at: offset))
        case let .normalization(message):
            self = .normalizationFailed(file: file, reason: message)
        }
    }

    /// `.cannotRead` with the system's reason for `code`.
    static func cannotRead(_ file: String, code: Int32) -> TextError {
        // a name that is not valid UTF-8 reaches charrnn with U+FFFD in place of its bad bytes
        let hint = code == ENOENT && file.unicodeScalars.contains("\u{FFFD}")
            ? " (if the name has bytes that are not UTF-8, charrnn sees U+FFFD in their place and cannot open the file: rename it)" : ""
        return .cannotRead(file: file, reason: String(cString: strerror(code)) + hint)
    }
}

// MARK: - Corpus

/// A decoded training text: its vocabulary and one id per token.
package struct Corpus: Sendable {
    /// The file's base name without extension (for run names), e.g. "tang-poems".
    package let name: String
    /// Built from this corpus: its distinct tokens in code-point order.
    package let vocabulary: Vocabulary
    let store: TokenStore
    /// Occurrences of each id in the token array (V entries); filled by `CorpusLoader`, empty otherwise.
    package internal(set) var counts: [Int] = []
    /// What loading found and did (replacements, pruned characters); see `CorpusLoader`.
    package internal(set) var stats = CorpusStats()
    /// `CorpusHash` of the input file's bytes (16 hex digits), computed while decoding (or kept in the
    /// token cache), equal to `CorpusHash.file(path)`. Set by `CorpusLoader` when the corpus is exactly
    /// one regular file; nil for several files, a directory, a pipe, and corpora built in memory.
    package internal(set) var contentHash: String? = nil

    /// Number of tokens.
    package var count: Int { store.count }

    /// Bytes used per stored id: 2 while the vocabulary has at most 65,536 tokens, else 4.
    package var bytesPerToken: Int { store.bytesPerToken }

    /// The id of token `i` (0 ≤ i < count).
    @inline(__always)
    package func token(at i: Int) -> Int32 {
        precondition(i >= 0 && i < store.count, "token index \(i) out of range 0..<\(store.count)")
        return store.run(IDAt(index: i))
    }

    /// Writes ids `start..<start+count` to `dst[0..<count]`.
    /// - Parameters:
    ///   - start: first token index.
    ///   - count: number of tokens; `start + count` must not exceed `self.count`.
    ///   - dst: output, written (=).
    package func copyTokens(from start: Int, count: Int, into dst: UnsafeMutablePointer<Int32>) {
        precondition(start >= 0 && count >= 0 && start + count <= store.count, "token range out of bounds")
        store.run(CopyIDs(start: start, count: count, dst: dst))
    }

    /// Decodes a corpus held in memory (no NUL or binary checks: those are for files, `CorpusLoader`).
    /// - Parameters:
    ///   - bytes: the UTF-8 text, optionally starting with a BOM.
    ///   - name: the file name used in errors; `self.name` is its base name without extension.
    ///   - unit: one token per Unicode scalar or per extended grapheme cluster.
    ///   - normalize: `.nfc` to compose the text before tokenizing.
    /// - Throws: `TextError` (`.invalidUTF8`, `.empty`, `.normalizationFailed`).
    package init(bytes: [UInt8], name: String, unit: TokenUnit = .scalar, normalize: Normalization = .none) throws {
        var options = LoadOptions()
        options.unit = unit
        options.normalize = normalize
        self = try bytes.withUnsafeBufferPointer { (input) throws(TextError) -> Corpus in
            var sink = InterningSink()
            defer { sink.release() }
            var hasher = CorpusHash.Hasher()
            _ = try CorpusLoader.decodeBytes(input, file: name, options: options, checksText: false,
                                             sink: &sink, hasher: &hasher)
            if sink.count == 0 { throw .empty(file: name) }
            let (vocabulary, store) = sink.finish(unit: unit)
            return Corpus(name: Corpus.baseName(name), vocabulary: vocabulary, store: store)
        }
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

/// A stored id's type: UInt16 while V ≤ 65,536, else UInt32.
protocol TokenID: FixedWidthInteger & UnsignedInteger {}
extension UInt16: TokenID {}
extension UInt32: TokenID {}

/// A loop over a store's ids, written once for both widths; `TokenStore.run` calls it at the store's
/// width, so each width gets its own specialised copy.
protocol IDLoop {
    associatedtype Result
    func run<ID: TokenID>(_ ids: UnsafeMutableBufferPointer<ID>) -> Result
}

/// Owns the id buffer (malloc'd), or the read-only mapping of a token cache file that holds it.
/// The ids are written only while the corpus is being built: `TokenStoreBuilder` fills them, and
/// `CorpusLoader.prune` remaps them in place before the loader returns the corpus (never on a
/// mapping: a cached corpus is already pruned). From then on they are read-only, hence Sendable.
final class TokenStore: @unchecked Sendable {
    let base: UnsafeMutableRawPointer?   // (count) ids of `bytesPerToken` bytes each
    let count: Int
    /// 2 (UInt16 ids) or 4 (UInt32).
    let bytesPerToken: Int
    /// When set, the ids live inside this mapping (never written), and the store keeps it alive.
    let mapping: MappedFile?

    /// Takes ownership of `base`, malloc'd (freed in deinit), or inside `mapping`.
    init(base: UnsafeMutableRawPointer?, count: Int, bytesPerToken: Int, mapping: MappedFile? = nil) {
        precondition(bytesPerToken == 2 || bytesPerToken == 4, "ids are 2 or 4 bytes")
        self.base = base
        self.count = count
        self.bytesPerToken = bytesPerToken
        self.mapping = mapping
    }

    deinit {
        if mapping == nil { free(base) }
    }

    /// Runs `loop` over the ids at their stored width.
    @inline(__always)
    func run<L: IDLoop>(_ loop: L) -> L.Result {
        bytesPerToken == 2 ? loop.run(ids(UInt16.self)) : loop.run(ids(UInt32.self))
    }

    @inline(__always)
    func ids<ID: TokenID>(_: ID.Type) -> UnsafeMutableBufferPointer<ID> {
        UnsafeMutableBufferPointer(start: base?.assumingMemoryBound(to: ID.self), count: count)
    }

    /// The ids as raw bytes (`count · bytesPerToken`), e.g. for the token cache.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count * bytesPerToken) }

    /// Replaces every id by `table[id]`, in place. Only while the corpus is being built.
    func remap(_ table: [Int32]) {
        precondition(mapping == nil, "a mapped token store is read-only")
        table.withUnsafeBufferPointer { r in run(RemapIDs(table: r)) }
    }

    /// Occurrences of each id in 0..<V.
    func counts(V: Int) -> [Int] { run(CountIDs(V: V)) }
}

/// The id at one index.
struct IDAt: IDLoop {
    let index: Int
    @inline(__always)
    func run<ID: TokenID>(_ ids: UnsafeMutableBufferPointer<ID>) -> Int32 { Int32(truncatingIfNeeded: ids[index]) }
}

/// Copies a range of ids out as Int32.
struct CopyIDs: IDLoop {
    let start: Int, count: Int
    let dst: UnsafeMutablePointer<Int32>   // (count) written (=)
    func run<ID: TokenID>(_ ids: UnsafeMutableBufferPointer<ID>) {
        for k in 0..<count { dst[k] = Int32(truncatingIfNeeded: ids[start + k]) }
    }
}

/// ids[i] = table[ids[i]].
struct RemapIDs: IDLoop {
    let table: UnsafeBufferPointer<Int32>
    func run<ID: TokenID>(_ ids: UnsafeMutableBufferPointer<ID>) {
        for i in 0..<ids.count { ids[i] = ID(truncatingIfNeeded: table[Int(ids[i])]) }
    }
}

/// How often each id occurs.
struct CountIDs: IDLoop {
    let V: Int
    func run<ID: TokenID>(_ ids: UnsafeMutableBufferPointer<ID>) -> [Int] {
        var counts = [Int](repeating: 0, count: V)
        counts.withUnsafeMutableBufferPointer { c in
            for i in 0..<ids.count { c[Int(ids[i])] += 1 }
        }
        return counts
    }
}

/// The one way a `TokenStore` is built from ids: a growable malloc'd buffer of UInt16 ids, widened
/// once to UInt32 when an id above 65,535 is to be stored, shrunk to fit by `finish`.
struct TokenStoreBuilder {
    private(set) var base: UnsafeMutableRawPointer? = nil   // (capacity) ids
    private(set) var count = 0
    private(set) var capacity = 0
    private(set) var isWide = false

    /// Makes room for `extra` more ids: one call for a whole file, geometric growth across calls.
    mutating func reserve(_ extra: Int) {
        let needed = count + extra
        guard needed > capacity else { return }
        let newCapacity = capacity == 0 ? max(needed, 1) : max(needed, capacity * 2)
        base = reallocate(base, bytes: newCapacity * (isWide ? 4 : 2))
        capacity = newCapacity
    }

    /// UInt16 → UInt32 ids, once (the caller knows an id above 65,535 is coming).
    mutating func widen() {
        guard !isWide else { return }
        let w = reallocate(nil, bytes: max(capacity, 1) * 4).assumingMemoryBound(to: UInt32.self)
        if let n = base?.assumingMemoryBound(to: UInt16.self) {
            for k in 0..<count { w[k] = UInt32(n[k]) }
        }
        free(base)
        base = UnsafeMutableRawPointer(w)
        isWide = true
    }

    /// Appends `id`; `reserve` must have made room, and `widen` been called before an id > 65,535.
    @inline(__always)
    mutating func append(_ id: Int32) {
        let p = base.unsafelyUnwrapped
        if isWide {
            p.assumingMemoryBound(to: UInt32.self)[count] = UInt32(bitPattern: id)
        } else {
            p.assumingMemoryBound(to: UInt16.self)[count] = UInt16(truncatingIfNeeded: id)
        }
        count += 1
    }

    /// Shrinks the buffer to fit and hands it to a store; the builder is empty afterwards.
    mutating func finish() -> TokenStore {
        let bpt = isWide ? 4 : 2
        let store = TokenStore(base: reallocate(base, bytes: max(count, 1) * bpt), count: count, bytesPerToken: bpt)
        base = nil
        count = 0
        capacity = 0
        return store
    }

    /// Frees the buffer if `finish` did not take it.
    mutating func release() {
        free(base)
        base = nil
    }
}

/// `realloc` of `bytes` bytes. Traps (via precondition) only if the allocation itself fails.
func reallocate(_ p: UnsafeMutableRawPointer?, bytes: Int) -> UnsafeMutableRawPointer {
    let raw = realloc(p, bytes)
    precondition(raw != nil, "out of memory allocating \(bytes) bytes for token ids")
    return raw!
}

/// Builds the corpus: interns tokens to provisional ids (order of first appearance) in a
/// `TokenTable` and appends them to a `TokenStoreBuilder`.
struct InterningSink: TokenSink {
    var table = TokenTable()                   // token → provisional id
    var tokens: [[UInt8]] = []                 // provisional id → UTF-8
    var ids = TokenStoreBuilder()

    var count: Int { ids.count }

    /// Frees the id buffer unless `finish` handed it over.
    mutating func release() { ids.release() }

    mutating func willScan(byteCount: Int) { ids.reserve(byteCount) }

    @inline(__always)
    mutating func scalar(_ value: UInt32, bytes: UnsafePointer<UInt8>, length: Int) {
        var id = table.scalarID(value)
        if id < 0 {
            id = newToken(bytes, length: length)
            table.setScalarID(value, id)
        }
        ids.append(id)
    }

    mutating func cluster(bytes: UnsafePointer<UInt8>, length: Int) {
        var id = table.clusterID(bytes, length: length)
        if id < 0 {
            id = newToken(bytes, length: length)
            table.setClusterID(bytes, length: length, id)
        }
        ids.append(id)
    }

    mutating func newToken(_ bytes: UnsafePointer<UInt8>, length: Int) -> Int32 {
        let id = Int32(tokens.count)
        tokens.append(Array(UnsafeBufferPointer(start: bytes, count: length)))
        if id > Int32(UInt16.max) { ids.widen() }
        return id
    }

    /// Sorts the vocabulary in code-point order, remaps the ids and the table in place, and hands
    /// over the buffer.
    mutating func finish(unit: TokenUnit) -> (Vocabulary, TokenStore) {
        // Byte-wise order of UTF-8 == lexicographic order of the scalar sequences.
        let order = tokens.indices.sorted { tokens[$0].lexicographicallyPrecedes(tokens[$1]) }
        var texts: [String] = []
        texts.reserveCapacity(order.count)
        var remap = [Int32](repeating: 0, count: order.count)   // provisional id → final id
        for (final, provisional) in order.enumerated() {
            remap[provisional] = Int32(final)
            texts.append(String(decoding: tokens[provisional], as: UTF8.self))
        }
        let store = ids.finish()
        if !order.elementsEqual(order.indices) {
            store.remap(remap)
            table.remap(remap)
        }
        return (Vocabulary(unit: unit, tokens: texts, table: table), store)
    }
}

// MARK: - File access

/// A file mapped read-only (private mapping), unmapped by `unmap()` or at deinit. An empty file maps
/// nothing (`bytes` is empty with a nil base). Keep the object alive while using `bytes`.
final class MappedFile: @unchecked Sendable {
    private(set) var bytes: UnsafeBufferPointer<UInt8>
    /// The `MappingFaults` slot of a guarded mapping.
    private var guardSlot: Int? = nil

    /// Maps the first `size` bytes of the open file `fd`; `path` names it in errors.
    /// - Parameters:
    ///   - sequential: tell the kernel the bytes will be read once, in order.
    ///   - guarded: a read past the file's end (the file was truncated while mapped) reads zeros and
    ///     sets `faultOffset` instead of killing the process with SIGBUS (`MappingFaults`).
    /// - Throws: `FileIOError` (operation "map").
    init(fd: Int32, size: Int, path: String, sequential: Bool = false, guarded: Bool = false) throws(FileIOError) {
        guard size > 0 else { bytes = UnsafeBufferPointer(start: nil, count: 0); return }
        let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let base = mapped, base != UnsafeMutableRawPointer(bitPattern: -1) else { throw FileIOError(path: path, operation: "map", code: errno) }
        if sequential { _ = madvise(base, size, MADV_SEQUENTIAL) }
        bytes = UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: size)
        if guarded { guardSlot = MappingFaults.register(base, count: size) }
    }

    /// The offset of the first read that found the file shorter than its mapping (guarded mappings
    /// only), or nil: when set, the bytes from there on read as zeros and are not the file's.
    var faultOffset: Int? { guardSlot.flatMap(MappingFaults.faultOffset) }

    /// Unmaps now (idempotent); `bytes` is empty afterwards.
    func unmap() {
        if let k = guardSlot { MappingFaults.unregister(k); guardSlot = nil }
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
        bytes = UnsafeBufferPointer(start: nil, count: 0)
    }

    deinit { unmap() }
}

/// Read-only access to a whole file's bytes: a mapping for regular files, a read loop for anything
/// else (pipes, character devices).
enum FileBytes {
    /// Calls `body` with the bytes of the file at `path` and whether it is a regular file.
    static func withContents<R>(of path: String,
                                _ body: (UnsafeBufferPointer<UInt8>, _ regular: Bool) throws(TextError) -> R) throws(TextError) -> R {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw .cannotRead(path, code: errno) }
        defer { close(fd) }
        return try withContents(fd: fd, path: path, body)
    }

    /// `withContents(of:)` on a descriptor already open (a FIFO or pipe must not be opened twice: the
    /// writer may be gone by the second open, which then waits forever).
    static func withContents<R>(fd: Int32, path: String,
                                _ body: (UnsafeBufferPointer<UInt8>, _ regular: Bool) throws(TextError) -> R) throws(TextError) -> R {
        var info = stat()
        if fstat(fd, &info) != 0 { throw .cannotRead(path, code: errno) }
        let type = info.st_mode & S_IFMT
        if type == S_IFDIR { throw .cannotRead(path, code: EISDIR) }
        if type == S_IFREG {
            let file: MappedFile
            do { file = try MappedFile(fd: fd, size: Int(info.st_size), path: path, sequential: true, guarded: true) } catch {
                throw .cannotRead(path, code: error.code)
            }
            defer { file.unmap() }
            // a file truncated while it is read: its missing bytes read as zeros; say it changed
            let result: R
            do { result = try body(file.bytes, true) } catch {
                if let at = file.faultOffset { throw .changed(file: path, offset: at) }
                throw error
            }
            if let at = file.faultOffset { throw .changed(file: path, offset: at) }
            return result
        }
        // A pipe, FIFO or device is read once, into memory: its first 64 KiB are checked for binary
        // data as soon as they are in (/dev/zero and /dev/urandom stop there), and at most
        // `Bounds.maxStreamBytes` are taken.
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var checked = false
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .cannotRead(path, code: errno)
            }
            if n == 0 { break }
            data.append(contentsOf: chunk[0..<n])
            if !checked && data.count >= 1 << 16 {
                checked = true
                try data.withUnsafeBufferPointer { (b) throws(TextError) in try CorpusLoader.rejectBinary(b, file: path) }
            }
            if data.count > Bounds.maxStreamBytes {
                throw .cannotRead(file: path, reason: "is not a regular file (a pipe or device) and holds more than \(Bounds.maxStreamBytes >> 20) MiB, the most read into memory; save it to a file first")
            }
        }
        if !checked { try data.withUnsafeBufferPointer { (b) throws(TextError) in try CorpusLoader.rejectBinary(b, file: path) } }
        return try data.withUnsafeBufferPointer { (bytes) throws(TextError) -> R in try body(bytes, false) }
    }
}
