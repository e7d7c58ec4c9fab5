// Text/UTF8Decoder.swift — raw UTF-8 bytes → token stream, in one pass. The only file that uses libutf8proc.
//
// Contract
// - Scalars are decoded with `utf8proc_iterate`, which rejects stray continuation bytes, overlong forms
//   (C0 AF), UTF-8-encoded surrogates (ED A0 80), code points above U+10FFFF and sequences cut short by
//   the end of the input. ASCII bytes, and two- and three-byte forms whose continuation bytes are
//   simply 80...BF, take fast paths that never call into C (scalar mode).
// - `.grapheme` groups scalars into extended grapheme clusters (UAX #29) with
//   `utf8proc_grapheme_break_stateful`. Shortcuts that give the same answer without the C call: two
//   ASCII bytes other than CR LF always break, and so does any pair whose right side has break class
//   Other while the left is not Prepend (looked up in a BMP table of utf8proc's classes; see `isBreak`).
//   "\r\n" is one cluster (GB3).
// - `.nfc` composes with `utf8proc_map(COMPOSE | STABLE)` (what `utf8proc_NFC` does, minus NULLTERM).
//   Text is cut only right after a LF or between two ASCII bytes other than CR LF: those are starters
//   that compose with nothing and stop canonical reordering, and both points are grapheme breaks, so
//   normalizing piece by piece equals normalizing the whole text, and each piece starts a new cluster.
//   Runs of scalars that NFC provably leaves alone (`isNFCStable`: ASCII, Latin, CJK, kana, Hangul
//   syllables, …) skip utf8proc; the rest goes through it in pieces of about 1 KiB, each ending at
//   the first cut point after that. Memory stays O(piece), not O(corpus) (a text with no LF and no
//   two adjacent ASCII bytes is the worst case: one piece).
// - A leading BOM (EF BB BF) is skipped: it is not a token. Error offsets still count its 3 bytes.
// - Errors are the 0-based byte offset of the first invalid sequence in the whole input; `TextLocation`
//   turns it into a 1-based line (lines end at LF) and a 1-based column counted in Unicode scalars.
// Nothing is cached here: all state (ids, tables) lives in the caller's `TokenSink`.

import Cutf8proc

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Sink

/// Receives the tokens `UTF8Decoder` finds, in order. The pointers are only valid during the call.
protocol TokenSink {
    /// Called before up to `byteCount` input bytes are scanned; they yield at most `byteCount` tokens.
    mutating func willScan(byteCount: Int)
    /// A token that is exactly one Unicode scalar `value`, whose UTF-8 is `bytes[0..<length]` (1...4 bytes).
    mutating func scalar(_ value: UInt32, bytes: UnsafePointer<UInt8>, length: Int)
    /// A token of two or more scalars (grapheme mode only), UTF-8 `bytes[0..<length]`.
    mutating func cluster(bytes: UnsafePointer<UInt8>, length: Int)
}

/// Why `UTF8Decoder.tokenize` stopped. Mapped to `TextError` by the caller, who knows the file name.
enum DecodeFailure: Error, Equatable {
    /// The first invalid sequence starts at this 0-based offset into the whole input (BOM included).
    case invalidUTF8(offset: Int)
    /// utf8proc could not normalize (out of memory); the message is `utf8proc_errmsg`'s.
    case normalization(message: String)
}

// MARK: - Decoder

enum UTF8Decoder {
    /// Target size of one NFC chunk in input bytes when the quick check is off.
    static let nfcChunkBytes = 1 << 20

    /// 3 if `input` starts with the UTF-8 byte order mark EF BB BF, else 0.
    static func bomLength(_ input: UnsafeBufferPointer<UInt8>) -> Int {
        input.count >= 3 && input[0] == 0xEF && input[1] == 0xBB && input[2] == 0xBF ? 3 : 0
    }

    /// Tokenizes all of `input` (BOM skipped, then NFC if asked) into `sink`.
    /// - Parameters:
    ///   - skipsBOM: skip a leading BOM (the default); false when `input` is a piece of a larger text.
    ///   - quickCheck: NFC only: pass runs of `isNFCStable` scalars straight to the scanner (the default);
    ///     false sends everything through utf8proc (tests compare the two).
    ///   - chunkBytes: NFC only: target size of a chunk handed to utf8proc.
    /// - Throws: `DecodeFailure.invalidUTF8` with the offset of the first invalid sequence; tokens before
    ///   it may already have been delivered.
    static func tokenize<S: TokenSink>(_ input: UnsafeBufferPointer<UInt8>, unit: TokenUnit,
                                       normalize: Normalization, skipsBOM: Bool = true, into sink: inout S,
                                       quickCheck: Bool = true,
                                       chunkBytes: Int = nfcChunkBytes) throws(DecodeFailure) {
        let start = skipsBOM ? bomLength(input) : 0
        guard let base = input.baseAddress, input.count > start else { return }
        let n = input.count
        switch normalize {
        case .none:
            try scanDirect(base, from: start, to: n, unit: unit, into: &sink)
        case .nfc where !quickCheck:
            var chunk = start
            while chunk < n {
                let end = nextCut(base, from: chunk + chunkBytes, lowerBound: chunk, end: n, preferBefore: true)
                try scanNFC(base, from: chunk, to: end, unit: unit, into: &sink)
                chunk = end
            }
        case .nfc:
            var pos = start
            while pos < n {
                // 1. Text that NFC leaves unchanged goes straight to the scanner, up to a cut point.
                let unstable = firstUnstable(base, from: pos, end: n)
                if unstable == n {
                    try scanDirect(base, from: pos, to: n, unit: unit, into: &sink)
                    break
                }
                let cut = lastCut(base, after: pos, atOrBefore: unstable)
                if cut > pos { try scanDirect(base, from: pos, to: cut, unit: unit, into: &sink) }
                // 2. From there, normalize through the unstable scalar and on for at least
                //    min(nfcMinimumBytes, chunkBytes) bytes (amortizes utf8proc_map's per-call cost), to a cut point.
                let target = max(unstable + 1, min(cut + nfcMinimumBytes, cut + chunkBytes))
                let end = nextCut(base, from: min(target, n), lowerBound: unstable, end: n, preferBefore: false)
                try scanNFCBounded(base, from: cut, to: end, unit: unit, into: &sink)
                pos = end
            }
        }
    }

    /// Scans `base[from..<to]` without normalizing.
    static func scanDirect<S: TokenSink>(_ base: UnsafePointer<UInt8>, from: Int, to: Int, unit: TokenUnit,
                                         into sink: inout S) throws(DecodeFailure) {
        sink.willScan(byteCount: to - from)
        if let bad = scan(base + from, count: to - from, unit: unit, into: &sink) {
            throw .invalidUTF8(offset: from + bad)
        }
    }

    /// Scans `p[0..<n]` into `sink`. Returns nil, or the offset (relative to `p`) of the first invalid sequence.
    static func scan<S: TokenSink>(_ p: UnsafePointer<UInt8>, count n: Int, unit: TokenUnit,
                                   into sink: inout S) -> Int? {
        switch unit {
        case .scalar: return scanScalars(p, count: n, into: &sink)
        case .grapheme:
            return graphemeBreakClass.withUnsafeBufferPointer { classes in
                scanGraphemes(p, count: n, classes: classes.baseAddress!, into: &sink)
            }
        }
    }

    // MARK: Scalars

    static func scanScalars<S: TokenSink>(_ p: UnsafePointer<UInt8>, count n: Int, into sink: inout S) -> Int? {
        var i = 0
        while i < n {
            let b = p[i]
            if b < 0x80 {                                   // ASCII fast path
                sink.scalar(UInt32(b), bytes: p + i, length: 1)
                i += 1
                continue
            }
            // Inline paths for the two- and three-byte forms whose continuation ranges are plain
            // 80...BF (C2...DF, E1...EC, EE...EF): CJK text is almost all of these. E0, ED (overlong
            // and surrogate ranges) and four-byte forms go through utf8proc.
            if b >= 0xE1 && b <= 0xEF && b != 0xED && i + 2 < n {
                let b1 = p[i + 1], b2 = p[i + 2]
                if b1 & 0xC0 == 0x80 && b2 & 0xC0 == 0x80 {
                    let cp = UInt32(b & 0x0F) << 12 | UInt32(b1 & 0x3F) << 6 | UInt32(b2 & 0x3F)
                    sink.scalar(cp, bytes: p + i, length: 3)
                    i += 3
                    continue
                }
            } else if b >= 0xC2 && b <= 0xDF && i + 1 < n {
                let b1 = p[i + 1]
                if b1 & 0xC0 == 0x80 {
                    sink.scalar(UInt32(b & 0x1F) << 6 | UInt32(b1 & 0x3F), bytes: p + i, length: 2)
                    i += 2
                    continue
                }
            }
            var cp: Int32 = -1
            let len = utf8proc_iterate(p + i, n - i, &cp)
            if len <= 0 { return i }
            sink.scalar(UInt32(bitPattern: cp), bytes: p + i, length: len)
            i += len
        }
        return nil
    }

    // MARK: Grapheme clusters

    /// utf8proc's grapheme break class (`utf8proc_boundclass_t`) of every BMP scalar, built on first use.
    static let graphemeBreakClass: [UInt8] = (0..<0x1_0000).map {
        UInt8(truncatingIfNeeded: utf8proc_get_property(Int32($0)).pointee.boundclass)
    }
    static let classOther = UInt8(UTF8PROC_BOUNDCLASS_OTHER.rawValue)
    static let classPrepend = UInt8(UTF8PROC_BOUNDCLASS_PREPEND.rawValue)

    /// Is there a grapheme cluster break between `c1` and `c2`? Shortcut: before a scalar of class
    /// Other, UAX #29 breaks unless the left side is Prepend (GB9b); every other rule needs a
    /// right side of another class (LF, Extend, ZWJ, SpacingMark, Hangul, RI, Extended_Pictographic).
    /// utf8proc's carried state only ever replaces c1's class by ExtPict, E_ZWG or Other, never by
    /// Prepend, so the shortcut agrees with it. Everything else asks utf8proc.
    @inline(__always)
    static func isBreak(_ c1: Int32, _ c2: Int32, state: inout Int32, classes: UnsafePointer<UInt8>) -> Bool {
        if c1 < 0x1_0000 && c2 < 0x1_0000 && classes[Int(c2)] == classOther && classes[Int(c1)] != classPrepend {
            return true
        }
        return utf8proc_grapheme_break_stateful(c1, c2, &state)
    }

    static func scanGraphemes<S: TokenSink>(_ p: UnsafePointer<UInt8>, count n: Int, classes: UnsafePointer<UInt8>,
                                            into sink: inout S) -> Int? {
        var i = 0
        var lookahead: Int32 = -1      // first scalar of the next cluster, already decoded, or −1
        var lookaheadLength = 0
        while i < n {
            let start = i
            var first: Int32 = -1
            if lookahead >= 0 {
                first = lookahead
                i += lookaheadLength
                lookahead = -1
            } else {
                let b = p[i]
                if b < 0x80 {
                    // ASCII followed by ASCII (other than CR LF) or by the end: a one-byte cluster.
                    if i + 1 == n || (p[i + 1] < 0x80 && !(b == 0x0D && p[i + 1] == 0x0A)) {
                        sink.scalar(UInt32(b), bytes: p + i, length: 1)
                        i += 1
                        continue
                    }
                    first = Int32(b)
                    i += 1
                } else {
                    let len = utf8proc_iterate(p + i, n - i, &first)
                    if len <= 0 { return i }
                    i += len
                }
            }
            // Extend the cluster while there is no break. The state starts at 0 (safe after a break,
            // per utf8proc's documentation) and carries the GB11/GB12/GB13 context.
            var state: Int32 = 0
            var previous = first
            var scalars = 1
            while i < n {
                var next: Int32 = -1
                var len = 1
                let c = p[i]
                if c < 0x80 {
                    next = Int32(c)
                } else {
                    len = utf8proc_iterate(p + i, n - i, &next)
                    if len <= 0 { return i }
                }
                if isBreak(previous, next, state: &state, classes: classes) {
                    lookahead = next
                    lookaheadLength = len
                    break
                }
                previous = next
                scalars += 1
                i += len
            }
            if scalars == 1 {
                sink.scalar(UInt32(bitPattern: first), bytes: p + start, length: i - start)
            } else {
                sink.cluster(bytes: p + start, length: i - start)
            }
        }
        return nil
    }

    // MARK: NFC

    /// Least number of bytes handed to one utf8proc_map call on the quick-check path.
    static let nfcMinimumBytes = 1024

    /// True for scalars that NFC never changes and that never interact with a neighbour: starters
    /// (ccc 0), NFC_QC = Yes, and not the second element of any canonical composition. A run of such
    /// scalars is its own NFC. Ranges checked code point by code point (Unicode 14 data) with Python's
    /// unicodedata; the test suite compares the shortcut against utf8proc on all of them.
    @inline(__always)
    static func isNFCStable(_ cp: UInt32) -> Bool {
        if cp < 0x300 { return true }                         // ASCII, Latin-1, Latin Extended
        switch cp {
        case 0x0388...0x0482, 0x048A...0x052F,                // Greek (after U+0387), Cyrillic
             0x2002...0x206F, 0x2070...0x20CF,                // punctuation (quotes, dashes), super/subscripts, currency
             0x212C...0x22FF,                                 // letterlike (after Å), arrows, math
             0x3000...0x3029, 0x3030...0x3098, 0x309B...0x30FF, // CJK punctuation, kana (not U+3099/309A)
             0x3400...0x4DBF, 0x4E00...0x9FFF,                // CJK ideographs, Extension A
             0xAC00...0xD7A3,                                 // Hangul syllables
             0xFE00...0xFE0F, 0xFE30...0xFE4F, 0xFF00...0xFFEF, // variation selectors, CJK compatibility forms, fullwidth
             0x1F000...0x1FAFF,                               // emoji
             0x20000...0x2A6DF:                               // CJK Extension B
            return true
        default:
            return false
        }
    }

    /// Offset of the first scalar at or after `from` that is not `isNFCStable` (or not valid UTF-8), else `end`.
    static func firstUnstable(_ p: UnsafePointer<UInt8>, from: Int, end: Int) -> Int {
        var i = from
        while i < end {
            if p[i] < 0x80 { i += 1; continue }
            var cp: Int32 = -1
            let len = utf8proc_iterate(p + i, end - i, &cp)
            if len <= 0 || !isNFCStable(UInt32(bitPattern: cp)) { return i }
            i += len
        }
        return end
    }

    /// Can text be cut between `p[j-1]` and `p[j]` for NFC and grapheme clusters alike? Yes right after
    /// a LF, and between two ASCII bytes other than CR LF.
    @inline(__always)
    static func isCut(_ p: UnsafePointer<UInt8>, _ j: Int) -> Bool {
        let a = p[j - 1]
        if a == 0x0A { return true }
        let b = p[j]
        return a < 0x80 && b < 0x80 && !(a == 0x0D && b == 0x0A)
    }

    /// The largest cut point j with `after < j ≤ atOrBefore`, or `after` if there is none.
    static func lastCut(_ p: UnsafePointer<UInt8>, after: Int, atOrBefore: Int) -> Int {
        var j = atOrBefore
        while j > after {
            if isCut(p, j) { return j }
            j -= 1
        }
        return after
    }

    /// A cut point near `from`, for a chunk that starts at `lowerBound`: with `preferBefore`, the last
    /// one in (lowerBound, from] if any; otherwise (or failing that) the first one at or after `from`;
    /// `end` if there is none.
    static func nextCut(_ p: UnsafePointer<UInt8>, from: Int, lowerBound: Int, end: Int, preferBefore: Bool) -> Int {
        if from >= end { return end }
        if preferBefore {
            let j = lastCut(p, after: lowerBound, atOrBefore: from)
            if j > lowerBound { return j }
        }
        var j = max(from, lowerBound + 1)
        while j < end {
            if isCut(p, j) { return j }
            j += 1
        }
        return end
    }

    /// `scanNFC` on `base[from..<to]` in pieces that hold at most `Bounds.maxCombiningRun`
    /// consecutive non-starters (canonical combining class ≠ 0). utf8proc's canonical reordering is
    /// quadratic in such a run (100,000 marks took 32 s); a longer run, which no text in any script has
    /// (UAX #15's stream-safe format allows 30), is normalized a piece at a time, so the work per piece
    /// is bounded and marks are not reordered or composed across a piece boundary.
    static func scanNFCBounded<S: TokenSink>(_ base: UnsafePointer<UInt8>, from: Int, to: Int, unit: TokenUnit,
                                             into sink: inout S) throws(DecodeFailure) {
        var a = from
        while a < to {
            var b = a, run = 0
            while b < to {
                if base[b] < 0x80 { run = 0; b += 1; continue }
                var cp: Int32 = -1
                let len = utf8proc_iterate(base + b, to - b, &cp)
                if len <= 0 { b = to; break }                   // invalid UTF-8: scanNFC reports it
                if utf8proc_get_property(cp).pointee.combining_class != 0 {
                    run += 1
                    if run > Bounds.maxCombiningRun { break }
                } else {
                    run = 0
                }
                b += len
            }
            try scanNFC(base, from: a, to: b, unit: unit, into: &sink)
            a = b
        }
    }

    /// NFC-normalizes `base[from..<to]` with utf8proc and scans the result.
    static func scanNFC<S: TokenSink>(_ base: UnsafePointer<UInt8>, from: Int, to: Int, unit: TokenUnit,
                                      into sink: inout S) throws(DecodeFailure) {
        var out: UnsafeMutablePointer<UInt8>? = nil
        let options = utf8proc_option_t(rawValue: UTF8PROC_STABLE.rawValue | UTF8PROC_COMPOSE.rawValue)
        let written = utf8proc_map(base + from, to - from, &out, options)
        defer { free(out) }
        if written < 0 {
            if written == UTF8PROC_ERROR_INVALIDUTF8, let bad = firstInvalid(base + from, count: to - from) {
                throw .invalidUTF8(offset: from + bad)
            }
            throw .normalization(message: String(cString: utf8proc_errmsg(written)))
        }
        guard let normalized = out, written > 0 else { return }
        sink.willScan(byteCount: written)
        if scan(UnsafePointer(normalized), count: written, unit: unit, into: &sink) != nil {
            // utf8proc only writes valid UTF-8; reaching this would be a utf8proc bug.
            throw .normalization(message: "utf8proc produced invalid UTF-8")
        }
    }

    // MARK: Validation and error reporting

    /// Decodes one scalar at `p` (at most `count` bytes) into `value`; returns its UTF-8 length, or
    /// a value ≤ 0 if the bytes there are not valid UTF-8.
    @inline(__always)
    static func scalarLength(_ p: UnsafePointer<UInt8>, count: Int, value: inout Int32) -> Int {
        utf8proc_iterate(p, count, &value)
    }

    /// Offset of the first invalid sequence in `p[0..<n]`, or nil if it is all valid UTF-8.
    static func firstInvalid(_ p: UnsafePointer<UInt8>, count n: Int) -> Int? {
        var i = 0
        while i < n {
            if p[i] < 0x80 { i += 1; continue }
            var cp: Int32 = -1
            let len = utf8proc_iterate(p + i, n - i, &cp)
            if len <= 0 { return i }
            i += len
        }
        return nil
    }

    /// The bytes to quote for an invalid sequence at `offset`: the lead byte, then the bytes its
    /// pattern claims (2, 3 or 4 in all) as long as they are continuation bytes, plus the first byte
    /// that is not (the one that broke the sequence), stopping at the end of the input.
    static func offendingBytes(_ input: UnsafeBufferPointer<UInt8>, at offset: Int) -> [UInt8] {
        guard offset < input.count else { return [] }
        let lead = input[offset]
        let claimed: Int
        switch lead {
        case 0xC0...0xDF: claimed = 2
        case 0xE0...0xEF: claimed = 3
        case 0xF0...0xF4: claimed = 4
        default: claimed = 1                                  // stray continuation byte or F5...FF
        }
        var bytes: [UInt8] = [lead]
        var j = offset + 1
        // only the continuation bytes that belong to the sequence: the byte that cut it short is
        // valid on its own (the "(" of C3 28) and is not part of what is reported
        while j < input.count && bytes.count < claimed && input[j] & 0xC0 == 0x80 {
            bytes.append(input[j])
            j += 1
        }
        return bytes
    }
}

// MARK: - Location

/// A 1-based line and column (in Unicode scalars) of a byte offset in a UTF-8 text.
struct TextLocation: Equatable {
    let line: Int
    let column: Int

    /// Location of `offset` in `input`, whose bytes before `offset` must be valid UTF-8. Lines end at
    /// LF (a CR LF line ends at its LF). The BOM is not text, so it does not count as a column.
    init(offset: Int, in input: UnsafeBufferPointer<UInt8>) {
        let textStart = UTF8Decoder.bomLength(input)
        var line = 1
        var lineStart = textStart
        var i = textStart
        while i < offset {
            if input[i] == 0x0A { line += 1; lineStart = i + 1 }
            i += 1
        }
        var column = 1
        i = lineStart
        while i < offset {
            if input[i] & 0xC0 != 0x80 { column += 1 }       // count scalar lead bytes
            i += 1
        }
        self.line = line
        self.column = column
    }
}
