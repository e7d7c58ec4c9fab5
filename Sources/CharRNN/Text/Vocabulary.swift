// Text/Vocabulary.swift — token text ↔ id, and the tokenization options.
//
// Contract
// - A vocabulary is a list of distinct tokens; a token's id is its index. Built from a corpus, it is
//   sorted in code-point order: tokens compare as sequences of Unicode scalars, which for valid UTF-8
//   is exactly the byte-wise order of their UTF-8, so the order is deterministic.
// - Tokens are identified by their exact UTF-8 bytes, never by Swift `String` equality, which treats
//   canonically equivalent strings ("é" U+00E9 and "e" + U+0301) as equal. Both may be tokens.
// - `encode` runs the same `UTF8Decoder` pipeline as the corpus loader (BOM skipped, NFC first if
//   asked), so a string tokenizes exactly as the same bytes in a corpus file would.
// - Lookup (`TokenTable`): a flat table for single BMP scalars, a dictionary for astral scalars, and
//   dictionaries for multi-scalar clusters (packed into a UInt64 when their UTF-8 has ≤ 7 bytes).

// MARK: - Options

/// What one token is.
public enum TokenUnit: String, Sendable, CaseIterable {
    /// One token per Unicode scalar: a Chinese character is one token, "\r\n" is two.
    case scalar
    /// One token per extended grapheme cluster (UAX #29): a ZWJ emoji sequence, a base letter with its
    /// combining marks, and "\r\n" are each one token.
    case grapheme
}

/// Unicode normalization applied before tokenizing.
public enum Normalization: String, Sendable, CaseIterable {
    /// The text is learned exactly as written.
    case none
    /// Canonical composition (NFC), e.g. "e" + U+0301 becomes "é" U+00E9.
    case nfc
}

// MARK: - Token table

/// Maps a token's UTF-8 to an id (−1 when absent): the one token → id table, used by `Vocabulary`
/// for lookups and by the corpus builder (`InterningSink`) for interning.
struct TokenTable: Sendable {
    static let bmpSize = 0x1_0000

    var bmp: [Int32]                  // (65536) id of the single-scalar token U+0000...U+FFFF, or −1
    var astral: [UInt32: Int32] = [:] // single-scalar tokens above U+FFFF
    var short: [UInt64: Int32] = [:]  // multi-scalar tokens of ≤ 7 UTF-8 bytes, keyed by `packed`
    var long: [[UInt8]: Int32] = [:]  // longer multi-scalar tokens

    init() { bmp = Array(repeating: -1, count: Self.bmpSize) }

    /// Up to 7 bytes in the low 56 bits (little-endian), the length in the top byte.
    @inline(__always)
    static func packed(_ p: UnsafePointer<UInt8>, length: Int) -> UInt64 {
        var key = UInt64(length) << 56
        for k in 0..<length { key |= UInt64(p[k]) << (8 * UInt64(k)) }
        return key
    }

    /// Id of the single-scalar token `value`, or −1.
    @inline(__always)
    func scalarID(_ value: UInt32) -> Int32 {
        if value < UInt32(Self.bmpSize) { return bmp.withUnsafeBufferPointer { $0[Int(value)] } }
        return astral[value] ?? -1
    }

    /// Id of a token of two or more scalars, or −1.
    @inline(__always)
    func clusterID(_ p: UnsafePointer<UInt8>, length: Int) -> Int32 {
        if length <= 7 { return short[Self.packed(p, length: length)] ?? -1 }
        return long[Array(UnsafeBufferPointer(start: p, count: length))] ?? -1
    }

    /// Sets the id of the single-scalar token `value`.
    mutating func setScalarID(_ value: UInt32, _ id: Int32) {
        if value < UInt32(Self.bmpSize) { bmp[Int(value)] = id } else { astral[value] = id }
    }

    /// Sets the id of the token of two or more scalars with UTF-8 `p[0..<length]`.
    mutating func setClusterID(_ p: UnsafePointer<UInt8>, length: Int, _ id: Int32) {
        if length <= 7 {
            short[Self.packed(p, length: length)] = id
        } else {
            long[Array(UnsafeBufferPointer(start: p, count: length))] = id
        }
    }

    /// Records `id` for the token with UTF-8 `bytes` unless the token is already present.
    mutating func insertIfAbsent(_ bytes: [UInt8], id: Int32) {
        bytes.withUnsafeBufferPointer { buf in
            guard let p = buf.baseAddress, !buf.isEmpty else { return }
            var value: Int32 = -1
            if UTF8Decoder.scalarLength(p, count: buf.count, value: &value) == buf.count {   // a single scalar
                let v = UInt32(bitPattern: value)
                if scalarID(v) < 0 { setScalarID(v, id) }
            } else if clusterID(p, length: buf.count) < 0 {
                setClusterID(p, length: buf.count, id)
            }
        }
    }

    /// Replaces every id by `table[id]`.
    mutating func remap(_ table: [Int32]) {
        for i in bmp.indices where bmp[i] >= 0 { bmp[i] = table[Int(bmp[i])] }
        astral = astral.mapValues { table[Int($0)] }
        short = short.mapValues { table[Int($0)] }
        long = long.mapValues { table[Int($0)] }
    }
}

// MARK: - Vocabulary

/// The ordered set of tokens a model knows. A token's id is its index in `tokens`.
public struct Vocabulary: Sendable, Equatable {
    /// What one token is; `encode` tokenizes by this unit.
    public let unit: TokenUnit
    /// Id → token text. Built from a corpus, sorted in code-point order.
    public let tokens: [String]
    let table: TokenTable
    /// The id that stands for every character left out by `--min-count`/`--max-vocab` (its token text
    /// is "", id 0), or nil when the vocabulary has no unknown token. Learned, never sampled or printed.
    public internal(set) var unknownID: Int? = nil

    /// Number of tokens (V).
    public var count: Int { tokens.count }

    /// A vocabulary with the given tokens in the given order (used when reloading from a checkpoint).
    /// - Parameters:
    ///   - unit: how `encode` splits text.
    ///   - tokens: id → token text. Should be distinct; if two have the same UTF-8, the first wins in lookups.
    package init(unit: TokenUnit, tokens: [String]) {
        var table = TokenTable()
        for (i, token) in tokens.enumerated() { table.insertIfAbsent(Array(token.utf8), id: Int32(i)) }
        self.init(unit: unit, tokens: tokens, table: table)
    }

    /// A vocabulary with an unknown token (`tokens[unknownID]` should be "").
    package init(unit: TokenUnit, tokens: [String], unknownID: Int?) {
        self.init(unit: unit, tokens: tokens)
        precondition(unknownID.map { $0 >= 0 && $0 < tokens.count } ?? true, "unknown id out of range")
        self.unknownID = unknownID
    }

    init(unit: TokenUnit, tokens: [String], table: TokenTable) {
        self.unit = unit
        self.tokens = tokens
        self.table = table
    }

    /// True when `tokens` are distinct and strictly increasing in code-point order, as a vocabulary
    /// built from a corpus always is.
    package var isSortedInCodePointOrder: Bool {
        zip(tokens, tokens.dropFirst()).allSatisfy { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// The id of `token`, compared by its exact UTF-8 (no normalization), or nil if it is not a token.
    public func id(of token: String) -> Int? {
        var value: Int32 = -1
        let bytes = Array(token.utf8)
        let id: Int32 = bytes.withUnsafeBufferPointer { buf in
            guard let p = buf.baseAddress, !buf.isEmpty else { return -1 }
            if UTF8Decoder.scalarLength(p, count: buf.count, value: &value) == buf.count {
                return table.scalarID(UInt32(bitPattern: value))
            }
            return table.clusterID(p, length: buf.count)
        }
        return id >= 0 ? Int(id) : nil
    }

    /// Tokenizes `text` exactly as the corpus loader does: same unit, a leading BOM skipped, and NFC
    /// applied first when `normalize` is `.nfc`.
    /// - Parameters:
    ///   - text: the text to encode.
    ///   - normalize: normalization to apply before tokenizing.
    /// - Returns: `ids`, the ids of the tokens found in the vocabulary, in order (tokens not in it are
    ///   left out, or mapped to `unknownID` when the vocabulary has one), and `unknown`, the distinct
    ///   tokens not in the vocabulary in order of first appearance.
    public func encode(_ text: String, normalize: Normalization) -> (ids: [Int32], unknown: [String]) {
        var text = text
        return text.withUTF8 { utf8 in
            var sink = LookupSink(vocabulary: self)
            // A Swift String is valid UTF-8, so this can only fail if utf8proc runs out of memory
            // while normalizing; the tokens encoded until then are returned.
            try? UTF8Decoder.tokenize(utf8, unit: unit, normalize: normalize, into: &sink)
            return (sink.ids, sink.unknown)
        }
    }

    /// Equal when the units match and the tokens have identical UTF-8 in the same order.
    public static func == (a: Vocabulary, b: Vocabulary) -> Bool {
        a.unit == b.unit && a.unknownID == b.unknownID && a.tokens.count == b.tokens.count
            && zip(a.tokens, b.tokens).allSatisfy { $0.utf8.elementsEqual($1.utf8) }
    }
}

// MARK: - Lookup sink

/// Encodes against a fixed vocabulary, counting and collecting unknown tokens (used for prime text,
/// `eval` files, `--init-from` and `--allow-new-corpus` corpora).
struct LookupSink: TokenSink {
    let table: TokenTable
    var ids: [Int32] = []
    var unknown: [String] = []        // distinct unknown tokens in order of first appearance
    var unknownCount = 0              // every unknown occurrence
    var maxListed = Int.max           // stop listing (not counting) after this many distinct ones
    var seen: Set<[UInt8]> = []
    let unknownID: Int32              // appended for tokens not in the table when ≥ 0

    /// Looks tokens up in `vocabulary`, mapping the unknown ones to its unknown token if it has one.
    init(vocabulary: Vocabulary) {
        table = vocabulary.table
        unknownID = vocabulary.unknownID.map { Int32($0) } ?? -1
    }

    mutating func willScan(byteCount: Int) { ids.reserveCapacity(ids.count + byteCount) }

    @inline(__always)
    mutating func scalar(_ value: UInt32, bytes: UnsafePointer<UInt8>, length: Int) {
        let id = table.scalarID(value)
        if id >= 0 { ids.append(id) } else { noteUnknown(bytes, length: length) }
    }

    mutating func cluster(bytes: UnsafePointer<UInt8>, length: Int) {
        let id = table.clusterID(bytes, length: length)
        if id >= 0 { ids.append(id) } else { noteUnknown(bytes, length: length) }
    }

    mutating func noteUnknown(_ p: UnsafePointer<UInt8>, length: Int) {
        if unknownID >= 0 { ids.append(unknownID) }
        unknownCount += 1
        guard unknown.count < maxListed else { return }
        let bytes = Array(UnsafeBufferPointer(start: p, count: length))
        if seen.insert(bytes).inserted { unknown.append(String(decoding: bytes, as: UTF8.self)) }
    }
}
