// Text/FixedVocabulary.swift — a text encoded against a vocabulary it did not build: for `eval`,
// `train --init-from` and `train --resume --allow-new-corpus`; plus the corpus content hash and
// per-token counts that checkpoints record.
//
// Contract
// - `Vocabulary.encodeFile` (and `encode(bytes:)`, the same for a text in memory) decodes the file
//   exactly as the corpus loader does (same `UTF8Decoder` pipeline: BOM skipped, NFC first if
//   asked, scalar or grapheme unit) and maps every token to its id in this vocabulary. A token not
//   in the vocabulary maps to the unknown token when the vocabulary has one (`--min-count`/
//   `--max-vocab`), else is skipped (left out of `ids`, so its neighbours become adjacent); either
//   way it is counted in `unknownCount`, and the distinct ones are listed in order of first
//   appearance in `unknown` (at most 64).
// - `CorpusHash` is a fast, non-cryptographic 64-bit hash of a file's bytes: four interleaved lanes
//   over 8-byte little-endian words, each `h = (h ^ w) · 0x100000001b3; h ^= h >> 29` (FNV-1a's
//   prime plus an xor-shift so high input bits reach low output bits), the tail bytes FNV-1a, then
//   the lanes and the length folded together. It only has to tell "same file" from "changed file".
// - `Corpus.tokenCounts` is how often each id occurs (vocabulary order).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A text as ids of a fixed vocabulary.
package struct EncodedText: Sendable {
    /// Ids of the tokens found in the vocabulary, in text order.
    package var ids: [Int32]
    /// Tokens skipped because the vocabulary does not have them (every occurrence counts).
    package var unknownCount: Int
    /// The distinct unknown tokens, in order of first appearance (at most 64 are kept).
    package var unknown: [String]
    /// Size of the file in bytes.
    package var bytes: Int
    /// `CorpusHash` of the file's bytes (16 hex digits), computed while decoding; equal to
    /// `CorpusHash.file(path)` for the bytes read.
    package var contentHash: String
}

extension Vocabulary {
    /// Reads and tokenizes the UTF-8 file at `path` with this vocabulary's unit, hashing its bytes in
    /// the same pass (`EncodedText.contentHash`).
    /// - Parameters:
    ///   - path: the file; named as given in errors.
    ///   - normalize: normalization applied before tokenizing (use the checkpoint's).
    /// - Throws: `TextError` (`.cannotRead`, `.invalidUTF8`, `.normalizationFailed`). An empty file
    ///   is not an error here: it gives no ids.
    package func encodeFile(path: String, normalize: Normalization) throws -> EncodedText {
        try FileBytes.withContents(of: path) { (input, regular) throws(TextError) -> EncodedText in
            try encode(bytes: input, name: path, normalize: normalize, dropsPages: regular)
        }
    }

    /// Tokenizes UTF-8 `bytes` held in memory exactly as `encodeFile` tokenizes a file holding them
    /// (same pipeline, same ids, counts and hash).
    /// - Parameters:
    ///   - bytes: the text's UTF-8.
    ///   - name: what errors call the text.
    ///   - normalize: normalization applied before tokenizing (use the checkpoint's).
    /// - Throws: `TextError` (`.invalidUTF8`, `.normalizationFailed`).
    package func encode(bytes: UnsafeBufferPointer<UInt8>, name: String, normalize: Normalization) throws(TextError) -> EncodedText {
        try encode(bytes: bytes, name: name, normalize: normalize, dropsPages: false)
    }

    /// `dropsPages`: release each decoded page of a read-only file mapping (never of memory we own).
    private func encode(bytes input: UnsafeBufferPointer<UInt8>, name: String, normalize: Normalization,
                        dropsPages: Bool) throws(TextError) -> EncodedText {
        var options = LoadOptions()
        options.unit = unit
        options.normalize = normalize
        var sink = LookupSink(vocabulary: self)
        sink.maxListed = 64
        var hasher = CorpusHash.Hasher()
        _ = try CorpusLoader.decodeBytes(input, file: name, options: options, checksText: false,
                                         dropsPages: dropsPages, sink: &sink, hasher: &hasher)
        return EncodedText(ids: sink.ids, unknownCount: sink.unknownCount, unknown: sink.unknown, bytes: input.count,
                           contentHash: CorpusHash.format(hasher.finish(input)))
    }
}

extension Corpus {
    /// A corpus made of ids of an existing vocabulary (e.g. a checkpoint's).
    /// - Parameters:
    ///   - ids: token ids, each in 0..<vocabulary.count; must not be empty.
    ///   - vocabulary: the vocabulary the ids index.
    ///   - name: the file name; `self.name` is its base name without extension.
    package init(ids: [Int32], vocabulary: Vocabulary, name: String) {
        precondition(!ids.isEmpty, "a corpus needs at least one token")
        var builder = TokenStoreBuilder()
        builder.reserve(ids.count)
        if vocabulary.count > 65_536 { builder.widen() }
        for id in ids { builder.append(id) }
        self.init(name: Corpus.baseName(name), vocabulary: vocabulary, store: builder.finish())
    }

    /// How often each id occurs, in vocabulary order.
    package func tokenCounts() -> [Int] { store.counts(V: vocabulary.count) }
}

/// A 64-bit content hash of a file (see the file header); 16 lowercase hex digits.
package enum CorpusHash {
    static let prime: UInt64 = 0x0000_0100_0000_01B3
    static let basis: UInt64 = 0xCBF2_9CE4_8422_2325

    /// Hash of `bytes`.
    package static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var hasher = Hasher()
        return hasher.finish(bytes)
    }

    /// The hash of one buffer computed piece by piece while it is being read: `absorb` takes the
    /// whole 32-byte blocks below an offset, `finish` the rest. Always pass the same (whole) buffer.
    struct Hasher {
        private var h0 = basis, h1 = basis ^ 1, h2 = basis ^ 2, h3 = basis ^ 3
        /// Bytes absorbed so far (a multiple of 32).
        private(set) var done = 0

        /// Absorbs the whole 32-byte blocks of `bytes[done..<end]`.
        mutating func absorb(_ bytes: UnsafeBufferPointer<UInt8>, through end: Int) {
            let stop = min(end, bytes.count) & ~31
            guard stop > done, let base = bytes.baseAddress else { return }
            let raw = UnsafeRawPointer(base)
            @inline(__always) func lane(_ h: inout UInt64, _ w: UInt64) { h = (h ^ w) &* prime; h ^= h >> 29 }
            var i = done
            while i + 32 <= stop {
                lane(&h0, UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
                lane(&h1, UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)))
                lane(&h2, UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self)))
                lane(&h3, UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self)))
                i += 32
            }
            done = stop
        }

        /// Absorbs the rest of `bytes` (the tail bytes FNV-1a into the first lane) and folds the lanes.
        mutating func finish(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
            absorb(bytes, through: bytes.count)
            let n = bytes.count
            for i in done..<n { h0 = (h0 ^ UInt64(bytes[i])) &* prime }
            var h = basis
            for x in [h0, h1, h2, h3, UInt64(n)] { h = (h ^ x) &* prime; h ^= h >> 29 }
            return h
        }
    }

    /// Hash of `bytes` as 16 hex digits.
    package static func hex(_ bytes: [UInt8]) -> String {
        bytes.withUnsafeBufferPointer { format(hash($0)) }
    }

    /// Hash of the file at `path` as 16 hex digits.
    /// - Throws: `TextError.cannotRead`.
    package static func file(_ path: String) throws -> String {
        try FileBytes.withContents(of: path) { (bytes, _) throws(TextError) -> String in format(hash(bytes)) }
    }

    static func format(_ h: UInt64) -> String {
        let s = String(h, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
