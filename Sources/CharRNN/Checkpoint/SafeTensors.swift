// Checkpoint/SafeTensors.swift — read, validate and write the safetensors format.
//
// Contract (spec: ../shared/STYLE.md "The safetensors format, exactly", after huggingface/safetensors):
//   file = u64 little-endian N | N bytes of UTF-8 JSON header | data section
//   data_offsets [begin, end) are relative to the start of the data section.
// - `SafeTensorsFile(bytes:path:)` applies the reference reader's nine validation rules, in order:
//   1 HeaderTooSmall, 2 HeaderTooLarge, 3 InvalidHeaderLength, 4 InvalidHeader (UTF-8),
//   5 InvalidHeaderDeserialization (+ DuplicateKey), then, per tensor in offset order as the
//   reference does, 6 InvalidOffset, 7 ValidationOverflow / MisalignedSlice, 8 TensorInvalidInfo,
//   and finally 9 MetadataIncompleteBuffer. The schema's 2^48−1 limit on sizes is enforced in rule 6
//   (offsets → InvalidOffset) and rule 7 (shape dims → ValidationOverflow), so the reference's
//   hostile input `shape [2, 18446744073709551614]` still reports ValidationOverflow.
// - Every offset is checked against the buffer before use and all size arithmetic is checked, so
//   hostile files are rejected with an error, never a crash or a huge allocation.
// - `SafeTensorsWriter` sorts tensors by descending dtype alignment (the reference's dtype order),
//   then by name (UTF-8 byte order), assigns contiguous offsets from 0, writes `__metadata__` first
//   (keys in UTF-8 byte order, omitted when empty), pads the header with spaces to a multiple of 8,
//   and writes atomically through `AtomicFile`.
// - Byte order: the data section is little-endian. This code copies element bytes verbatim with
//   memcpy, which is correct only on a little-endian host (x86-64, arm64); a big-endian build is
//   refused at compile time below.

#if _endian(big)
#error("CharRNN checkpoints copy little-endian tensor bytes verbatim; big-endian hosts are not supported")
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - DType

/// Element types of the safetensors format (names exactly as in the header).
package enum DType: String, Sendable, CaseIterable {
    case BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, C64
    case F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ
    case F4, F6_E2M3, F6_E3M2

    /// Size of one element in bits (4 for F4, 6 for the F6 types, 64 for C64 = two F32).
    package var bits: Int {
        switch self {
        case .F4: return 4
        case .F6_E2M3, .F6_E3M2: return 6
        case .BOOL, .U8, .I8, .F8_E5M2, .F8_E4M3, .F8_E8M0, .F8_E4M3FNUZ, .F8_E5M2FNUZ: return 8
        case .I16, .U16, .F16, .BF16: return 16
        case .I32, .U32, .F32: return 32
        case .F64, .I64, .U64, .C64: return 64
        }
    }

    /// Position in the reference `Dtype` enum, which is declared in increasing alignment order; the
    /// writer sorts by this (descending) so its tensor order matches the reference byte for byte.
    var alignmentRank: Int {
        switch self {
        case .BOOL: return 0
        case .F4: return 1
        case .F6_E2M3: return 2
        case .F6_E3M2: return 3
        case .U8: return 4
        case .I8: return 5
        case .F8_E5M2: return 6
        case .F8_E4M3: return 7
        case .F8_E8M0: return 8
        case .F8_E4M3FNUZ: return 9
        case .F8_E5M2FNUZ: return 10
        case .I16: return 11
        case .U16: return 12
        case .F16: return 13
        case .BF16: return 14
        case .I32: return 15
        case .U32: return 16
        case .F32: return 17
        case .C64: return 18
        case .F64: return 19
        case .I64: return 20
        case .U64: return 21
        }
    }
}

// MARK: - Errors

/// A checkpoint-format error: one line naming the file, the problem, and the reference error name, e.g.
/// `checkpoints/run/best.safetensors: not a safetensors checkpoint: its first 8 bytes give a header length of 18446744073709551615, over the 100000000-byte limit (HeaderTooLarge)`.
package struct SafeTensorsError: Error, CustomStringConvertible, Equatable {
    /// What went wrong. Payload strings are tensor names unless stated otherwise.
    package enum Kind: Equatable, Sendable {
        /// Rule 1: the file is shorter than the 8-byte length prefix.
        case headerTooSmall
        /// Rule 2: the declared header length (payload) exceeds 100 000 000 bytes.
        case headerTooLarge(UInt64)
        /// Rule 3: 8 + N overflows or runs past the end of the file.
        case invalidHeaderLength
        /// Rule 4: the header is not valid UTF-8.
        case invalidHeader
        /// Rule 5: the header is not the expected JSON shape; payload describes where and why.
        case invalidHeaderDeserialization(String)
        /// Rule 6: the tensor's data_offsets do not continue exactly where the previous tensor ended,
        /// end < begin, or an offset exceeds 2^48−1.
        case invalidOffset(String)
        /// Rule 7: the tensor's element or bit count overflows, or a dimension exceeds 2^48−1.
        case validationOverflow(String)
        /// Rule 7: the tensor does not occupy a whole number of bytes (sub-byte dtypes).
        case misalignedSlice(String)
        /// Rule 8: end − begin differs from the byte size implied by dtype and shape.
        case tensorInvalidInfo(String)
        /// Rule 9: the data section is not exactly covered by the tensors (hole, truncation, trailing bytes).
        case metadataIncompleteBuffer
        /// Rule 5: a key appears twice (payload: the key — a tensor name, metadata key or entry field).
        case duplicateKey(String)
        /// Lookup: no tensor with this name.
        case notFound(String)
        /// Lookup: the tensor exists but has this (actual) dtype, not the one requested.
        case wrongDType(String, DType)
        /// Lookup: the tensor exists with the first shape, but `expected` was requested.
        case wrongShape(String, [Int], expected: [Int])
    }

    /// The file (path or caller-supplied label) the error is about.
    package let file: String
    /// The problem.
    package let kind: Kind

    /// - Parameters:
    ///   - file: the path or label to name in the message.
    ///   - kind: the problem.
    package init(file: String, kind: Kind) {
        self.file = file
        self.kind = kind
    }

    /// `<file>: <problem> (<ReferenceErrorName>)`, always a single line (control characters in
    /// names are shown escaped).
    package var description: String {
        "\(Self.oneLine(file)): \(message)"
    }

    private var message: String {
        switch kind {
        case .headerTooSmall:
            return "not a safetensors checkpoint: shorter than the 8-byte header length prefix (HeaderTooSmall)"
        case .headerTooLarge(let n):
            return "not a safetensors checkpoint: its first 8 bytes give a header length of \(n), over the \(SafeTensorsFile.maxHeaderLength)-byte limit (HeaderTooLarge)"
        case .invalidHeaderLength:
            return "not a safetensors checkpoint: the header length in its first 8 bytes runs past the end of the file (InvalidHeaderLength)"
        case .invalidHeader:
            return "header is not valid UTF-8 (InvalidHeader)"
        case .invalidHeaderDeserialization(let detail):
            return "header is not a valid safetensors JSON header: \(Self.oneLine(detail)) (InvalidHeaderDeserialization)"
        case .invalidOffset(let name):
            return "tensor \(Self.quoted(name)) has data_offsets that do not continue the previous tensor's (InvalidOffset)"
        case .validationOverflow(let name):
            return "tensor \(Self.quoted(name)) has a shape whose size overflows or exceeds 2^48-1 (ValidationOverflow)"
        case .misalignedSlice(let name):
            return "tensor \(Self.quoted(name)) does not fill a whole number of bytes (MisalignedSlice)"
        case .tensorInvalidInfo(let name):
            return "tensor \(Self.quoted(name)) has data_offsets that do not match its dtype and shape (TensorInvalidInfo)"
        case .metadataIncompleteBuffer:
            return "data section length does not match the tensors: truncated file, hole or trailing bytes (MetadataIncompleteBuffer)"
        case .duplicateKey(let key):
            return "duplicate key \(Self.quoted(key)) in header (DuplicateKey)"
        case .notFound(let name):
            return "no tensor named \(Self.quoted(name)) (TensorNotFound)"
        case .wrongDType(let name, let dtype):
            return "tensor \(Self.quoted(name)) has dtype \(dtype.rawValue), not the requested one (WrongDType)"
        case .wrongShape(let name, let shape, let expected):
            return "tensor \(Self.quoted(name)) has shape \(shape), expected \(expected) (WrongShape)"
        }
    }

    /// JSON-style quoting keeps hostile names (newlines, quotes) on one line.
    static func quoted(_ s: String) -> String {
        var out: [UInt8] = []
        JSONWriter.appendString(s, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    private static func oneLine(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 < 0x20 }) else { return s }
        let q = quoted(s)
        return String(q.dropFirst().dropLast())
    }
}

// MARK: - TensorInfo

/// A validated tensor entry. `begin`/`end` are byte offsets relative to the data section, end exclusive.
package struct TensorInfo: Sendable, Equatable {
    /// Element type.
    package let dtype: DType
    /// Dimensions, row-major; `[]` is a scalar.
    package let shape: [Int]
    /// First byte, relative to the data section.
    package let begin: Int
    /// One past the last byte, relative to the data section.
    package let end: Int

    /// Memberwise; no validation (that happens when a file is parsed).
    package init(dtype: DType, shape: [Int], begin: Int, end: Int) {
        self.dtype = dtype
        self.shape = shape
        self.begin = begin
        self.end = end
    }

    /// Number of elements (product of `shape`; 1 for rank 0). Cannot overflow after validation.
    package var count: Int { shape.reduce(1, *) }

    /// Size of the tensor's data in bytes.
    package var byteCount: Int { end - begin }
}

// MARK: - Reader

/// A validated, parsed safetensors file held in memory.
package struct SafeTensorsFile: Sendable {
    /// The path (or label) given at load time; used in error messages.
    package let path: String
    /// The `"__metadata__"` map (empty when absent or `null`).
    package let metadata: [String: String]
    /// Every tensor entry, by name.
    package let tensors: [String: TensorInfo]
    /// N, the header length in bytes (including any padding).
    package let headerLength: Int

    /// Largest header length N the reader accepts and the writer produces (the reference's MAX_HEADER_SIZE).
    package static let maxHeaderLength = 100_000_000

    /// Largest dimension or offset the schema allows (2^48 − 1).
    package static let maxSize: UInt64 = (1 << 48) - 1

    /// The whole file; the data section starts at `dataStart`.
    private let storage: [UInt8]
    private let dataStart: Int

    /// Reads the whole file at `path` and validates it.
    /// - Throws: `FileIOError` (naming the path and strerror) if the file cannot be read,
    ///   `SafeTensorsError` if its contents are not a valid safetensors file.
    package static func read(path: String) throws -> SafeTensorsFile {
        let bytes = try AtomicFile.read(from: path)
        return try SafeTensorsFile(bytes: bytes, path: path)
    }

    /// Validates `bytes` as a complete safetensors file. All validation happens here; the accessors
    /// only check names, dtypes and shapes.
    /// - Parameters:
    ///   - bytes: the entire file contents (kept, not copied).
    ///   - path: the file name to put in error messages.
    package init(bytes: [UInt8], path: String) throws {
        func fail(_ kind: SafeTensorsError.Kind) -> SafeTensorsError {
            SafeTensorsError(file: path, kind: kind)
        }
        // Rule 1.
        guard bytes.count >= 8 else { throw fail(.headerTooSmall) }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        // Rule 2.
        guard n <= UInt64(Self.maxHeaderLength) else { throw fail(.headerTooLarge(n)) }
        // Rule 3 (n ≤ 1e8, so Int(n) is exact; the addition is checked anyway).
        let (stop, overflow) = Int(n).addingReportingOverflow(8)
        guard !overflow, stop <= bytes.count else { throw fail(.invalidHeaderLength) }

        let parsed: ParsedHeader = try bytes.withUnsafeBufferPointer { all in
            let headerBytes = UnsafeBufferPointer(rebasing: all[8..<stop])
            // Rule 4.
            guard String(validating: headerBytes, as: UTF8.self) != nil else { throw fail(.invalidHeader) }
            // Rule 5.
            do throws(HeaderParseFailure) {
                return try JSONHeaderParser.parse(headerBytes)
            } catch {
                throw fail(error.kind)
            }
        }

        // Rules 6–8, per tensor in offset order (ties broken by name so errors are deterministic).
        let ordered = parsed.entries.sorted { a, b in
            if a.begin != b.begin { return a.begin < b.begin }
            if a.end != b.end { return a.end < b.end }
            return a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }
        var tensors: [String: TensorInfo] = [:]
        tensors.reserveCapacity(ordered.count)
        var start: UInt64 = 0
        for e in ordered {
            // Rule 6.
            guard e.begin == start, e.end >= e.begin, e.end <= Self.maxSize else {
                throw fail(.invalidOffset(e.name))
            }
            start = e.end
            // Rule 7.
            var elements: UInt64 = 1
            for dim in e.shape {
                guard dim <= Self.maxSize else { throw fail(.validationOverflow(e.name)) }
                let (p, o) = elements.multipliedReportingOverflow(by: dim)
                guard !o else { throw fail(.validationOverflow(e.name)) }
                elements = p
            }
            let (bits, o) = elements.multipliedReportingOverflow(by: UInt64(e.dtype.bits))
            guard !o else { throw fail(.validationOverflow(e.name)) }
            guard bits % 8 == 0 else { throw fail(.misalignedSlice(e.name)) }
            // Rule 8.
            guard e.end - e.begin == bits / 8 else { throw fail(.tensorInvalidInfo(e.name)) }
            // All values are ≤ 2^48−1 here (dims checked above; offsets in rule 6), so Int is exact.
            tensors[e.name] = TensorInfo(dtype: e.dtype, shape: e.shape.map { Int($0) },
                                         begin: Int(e.begin), end: Int(e.end))
        }
        // Rule 9: start ≤ 2^48−1 and stop ≤ bytes.count, so neither side overflows.
        guard UInt64(stop) + start == UInt64(bytes.count) else { throw fail(.metadataIncompleteBuffer) }

        self.path = path
        self.metadata = parsed.metadata
        self.tensors = tensors
        self.headerLength = Int(n)
        self.storage = bytes
        self.dataStart = stop
    }

    /// Tensor names, sorted by UTF-8 bytes.
    package var names: [String] {
        tensors.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    // MARK: Accessors

    private func lookup(_ name: String, dtype: DType, shape: [Int]?) throws -> TensorInfo {
        guard let info = tensors[name] else { throw SafeTensorsError(file: path, kind: .notFound(name)) }
        guard info.dtype == dtype else { throw SafeTensorsError(file: path, kind: .wrongDType(name, info.dtype)) }
        if let shape, shape != info.shape {
            throw SafeTensorsError(file: path, kind: .wrongShape(name, info.shape, expected: shape))
        }
        return info
    }

    /// memcpy of a validated range; the data may be unaligned in `storage` (third-party headers
    /// need not be padded), which memcpy handles.
    private func copyBytes(_ info: TensorInfo, to dst: UnsafeMutableRawPointer) {
        guard info.byteCount > 0 else { return }
        storage.withUnsafeBytes { raw in
            // begin/end were validated against the data section length in rules 6–9.
            _ = memcpy(dst, raw.baseAddress! + dataStart + info.begin, info.byteCount)
        }
    }

    private func array<T>(_ info: TensorInfo, of _: T.Type) -> [T] {
        [T](unsafeUninitializedCapacity: info.count) { buffer, initialized in
            if let base = buffer.baseAddress { copyBytes(info, to: UnsafeMutableRawPointer(base)) }
            initialized = info.count
        }
    }

    /// Copies an F32 tensor out of the file, bit-exact (NaN payloads included).
    /// - Parameters:
    ///   - name: the tensor name.
    ///   - shape: if given, the tensor's shape must equal it exactly.
    /// - Throws: `SafeTensorsError` `.notFound`, `.wrongDType` (payload: the actual dtype) or `.wrongShape`.
    package func floats(_ name: String, shape: [Int]? = nil) throws -> [Float] {
        array(try lookup(name, dtype: .F32, shape: shape), of: Float.self)
    }

    /// Copies an F32 tensor into caller memory (overwrites `count` floats at `dst`).
    /// - Parameters:
    ///   - name: the tensor name.
    ///   - shape: the required shape; `dst` must have room for its element count.
    ///   - dst: destination, written (=), not accumulated.
    /// - Throws: `SafeTensorsError` `.notFound`, `.wrongDType` or `.wrongShape`.
    package func copyFloats(_ name: String, shape: [Int], into dst: UnsafeMutablePointer<Float>) throws {
        copyBytes(try lookup(name, dtype: .F32, shape: shape), to: UnsafeMutableRawPointer(dst))
    }

    /// Copies an I64 tensor (e.g. counters). Same checks as `floats`.
    package func int64s(_ name: String, shape: [Int]? = nil) throws -> [Int64] {
        array(try lookup(name, dtype: .I64, shape: shape), of: Int64.self)
    }

    /// Copies a U64 tensor (e.g. RNG state). Same checks as `floats`.
    package func uint64s(_ name: String, shape: [Int]? = nil) throws -> [UInt64] {
        array(try lookup(name, dtype: .U64, shape: shape), of: UInt64.self)
    }

    /// The raw little-endian bytes of any tensor, whatever its dtype.
    /// - Throws: `SafeTensorsError.notFound`.
    package func rawBytes(_ name: String) throws -> [UInt8] {
        guard let info = tensors[name] else { throw SafeTensorsError(file: path, kind: .notFound(name)) }
        let start = dataStart + info.begin
        return Array(storage[start..<(start + info.byteCount)])
    }
}

// MARK: - Writer

/// Builds a safetensors file. Tensor data is **copied** at `add` time (never referenced), so callers
/// may reuse or free their buffers immediately; a model's checkpoint therefore costs one extra copy
/// of its tensors in memory while the writer is alive.
package struct SafeTensorsWriter: Sendable {
    private struct Entry: Sendable {
        let name: String
        let dtype: DType
        let shape: [Int]
        let data: [UInt8]
    }

    private var entries: [Entry] = []
    private var names: Set<String> = []

    /// String→string pairs written as `"__metadata__"` (omitted when empty). Values are arbitrary
    /// strings (JSON-encode structured data into them); they round-trip exactly.
    package var metadata: [String: String] = [:]

    /// An empty writer: no tensors, no metadata.
    package init() {}

    /// Adds a tensor of raw little-endian element bytes.
    /// - Parameters:
    ///   - name: unique, not `"__metadata__"`.
    ///   - dtype: element type.
    ///   - shape: dims ≥ 0; `∏shape × dtype.bits` must equal `bytes.count × 8`.
    ///   - bytes: copied.
    package mutating func add(_ name: String, dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer) {
        precondition(!name.utf8.elementsEqual("__metadata__".utf8), "tensor name \"__metadata__\" is reserved")
        precondition(names.insert(name).inserted, "duplicate tensor name \(SafeTensorsError.quoted(name))")
        var bits = dtype.bits
        for dim in shape {
            precondition(dim >= 0, "negative dimension in shape \(shape)")
            let (p, o) = bits.multipliedReportingOverflow(by: dim)
            precondition(!o, "shape \(shape) overflows")
            bits = p
        }
        precondition(bits % 8 == 0 && bits / 8 == bytes.count,
                     "tensor \(SafeTensorsError.quoted(name)): shape \(shape) of \(dtype.rawValue) needs \(bits) bits, got \(bytes.count) bytes")
        entries.append(Entry(name: name, dtype: dtype, shape: shape, data: [UInt8](bytes)))
    }

    /// Adds an F32 tensor, copying `floats` (count must equal `∏shape`).
    package mutating func add(_ name: String, shape: [Int], floats: UnsafeBufferPointer<Float>) {
        add(name, dtype: .F32, shape: shape, bytes: UnsafeRawBufferPointer(floats))
    }

    /// Adds an F32 tensor, copying `floats` (count must equal `∏shape`).
    package mutating func add(_ name: String, shape: [Int], floats: [Float]) {
        floats.withUnsafeBufferPointer { add(name, shape: shape, floats: $0) }
    }

    /// Adds an I64 tensor (e.g. step counters), copying the values.
    package mutating func add(_ name: String, shape: [Int], int64s: [Int64]) {
        int64s.withUnsafeBytes { add(name, dtype: .I64, shape: shape, bytes: $0) }
    }

    /// Adds a U64 tensor (e.g. RNG state), copying the values.
    package mutating func add(_ name: String, shape: [Int], uint64s: [UInt64]) {
        uint64s.withUnsafeBytes { add(name, dtype: .U64, shape: shape, bytes: $0) }
    }

    /// Entries in file order: descending dtype alignment, then name by UTF-8 bytes.
    private var ordered: [Entry] {
        entries.sorted { a, b in
            if a.dtype.alignmentRank != b.dtype.alignmentRank { return a.dtype.alignmentRank > b.dtype.alignmentRank }
            return a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }
    }

    /// The padded header (JSON + spaces to a multiple of 8) and the entries in file order.
    private func prepare() -> (header: [UInt8], ordered: [Entry], dataLength: Int) {
        let ordered = self.ordered
        var offset = 0
        var lines: [JSONHeaderWriter.Entry] = []
        lines.reserveCapacity(ordered.count)
        for e in ordered {
            lines.append(.init(name: e.name, dtype: e.dtype, shape: e.shape, begin: offset, end: offset + e.data.count))
            offset += e.data.count
        }
        var header = JSONHeaderWriter.header(metadata: metadata, entries: lines)
        header.append(contentsOf: repeatElement(0x20, count: (8 - header.count % 8) % 8))
        return (header, ordered, offset)
    }

    private static func assemble(header: [UInt8], ordered: [Entry], dataLength: Int) -> [UInt8] {
        let total = 8 + header.count + dataLength
        return [UInt8](unsafeUninitializedCapacity: total) { out, initialized in
            guard let base = out.baseAddress else { initialized = 0; return }
            let n = UInt64(header.count)
            for i in 0..<8 { base[i] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(i))) }
            var at = 8
            header.withUnsafeBufferPointer { h in
                if let hb = h.baseAddress { _ = memcpy(base + at, hb, h.count) }
            }
            at += header.count
            for e in ordered {
                e.data.withUnsafeBufferPointer { d in
                    if let db = d.baseAddress { _ = memcpy(base + at, db, d.count) }
                }
                at += e.data.count
            }
            initialized = total
        }
    }

    /// The exact file bytes: u64 LE header length, compact JSON header with `"__metadata__"` first
    /// (keys sorted by UTF-8 bytes) then tensors in offset order, space-padded to a multiple of 8,
    /// then the data. A header over 100 000 000 bytes is a programmer error here (precondition);
    /// `write(to:)` reports it as `SafeTensorsError.headerTooLarge` instead.
    package func serialize() -> [UInt8] {
        let p = prepare()
        precondition(p.header.count <= SafeTensorsFile.maxHeaderLength,
                     "safetensors header of \(p.header.count) bytes exceeds the \(SafeTensorsFile.maxHeaderLength)-byte limit")
        return Self.assemble(header: p.header, ordered: p.ordered, dataLength: p.dataLength)
    }

    /// Serializes and writes atomically (temp file in the same folder, fsync, rename over `path`,
    /// fsync of the folder), so `path` never holds a torn file.
    /// - Throws: `SafeTensorsError.headerTooLarge` if the header would exceed 100 000 000 bytes;
    ///   `FileIOError` (path + strerror) if writing fails, in which case `path` is untouched.
    package func write(to path: String) throws { try write(to: [path]) }

    /// The same bytes, serialised once, written atomically to each path in order.
    package func write(to paths: [String]) throws {
        let p = prepare()
        guard p.header.count <= SafeTensorsFile.maxHeaderLength else {
            throw SafeTensorsError(file: paths.first ?? "", kind: .headerTooLarge(UInt64(p.header.count)))
        }
        let bytes = Self.assemble(header: p.header, ordered: p.ordered, dataLength: p.dataLength)
        for path in paths { try AtomicFile.write(bytes, to: path) }
    }
}
