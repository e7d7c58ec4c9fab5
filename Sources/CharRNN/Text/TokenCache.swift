// Text/TokenCache.swift — the first pass (vocabulary + token array) saved to disk and mmap'd back.
//
// File layout (little-endian):
//   0  magic "CRNNTOK1"                      8 bytes
//   8  u64 header length J (JSON bytes)
//  16  u64 token count N
//  24  u64 bytes per token (2 or 4)
//  32  u64 checksum of the JSON header       (`checksum64`)
//  40  u64 checksum of the token bytes
//  48  JSON header (`Header`: key, vocabulary, unknown id, counts, stats), then zero padding to a
//      multiple of 64, then N ids of 2 or 4 bytes; the file ends exactly there.
// The key is every input's path, size, mtime (ns) and inode plus the `LoadOptions`; a cache whose key
// differs is stale. Any mismatch (magic, lengths, checksums, JSON, key) means "rebuild": `read`
// returns why, and the caller decodes the corpus and writes the cache again. Writes go to a temp file
// in the same folder and are renamed into place, so a crash never leaves a half-written cache.
// A hit maps the file read-only and the corpus' ids point straight into the mapping (no copy).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

public enum TokenCache {
    static let magic: [UInt8] = Array("CRNNTOK1".utf8)
    static let fixedHeader = 48

    /// What makes a cache valid for a load.
    public struct Key: Codable, Equatable, Sendable {
        public var version = 1
        public var files: [InputFile]
        public var options: LoadOptions
        public init(files: [InputFile], options: LoadOptions) { self.files = files; self.options = options }
    }

    struct Header: Codable {
        var key: Key
        var name: String
        var unit: TokenUnit
        var tokens: [String]
        var unknownID: Int?
        var counts: [Int]
        var stats: CorpusStats
    }

    /// Cache file for these inputs and options in `directory`: the corpus name plus a hash of the
    /// absolute paths and options (not sizes or times, so a stale cache is overwritten in place).
    public static func path(for files: [InputFile], options: LoadOptions, name: String, directory: String) -> String {
        let cwd = FileManager.default.currentDirectoryPath
        var id = files.map { $0.path.hasPrefix("/") ? $0.path : cwd + "/" + $0.path }.joined(separator: "\n")
        id += "\n\(options.unit.rawValue) \(options.normalize.rawValue) \(options.lossy) \(options.minCount) \(options.maxVocab ?? 0)"
        let h = Array(id.utf8).withUnsafeBufferPointer { checksum64(UnsafeRawBufferPointer($0)) }
        let hex = String(h, radix: 16)
        return (directory as NSString).appendingPathComponent("\(name)-\(String(repeating: "0", count: 16 - hex.count))\(hex).tokens")
    }

    // MARK: Write

    /// Writes `corpus` atomically (temp file + rename) under `path`.
    public static func write(_ corpus: Corpus, key: Key, to path: String) throws {
        let header = Header(key: key, name: corpus.name, unit: corpus.vocabulary.unit, tokens: corpus.vocabulary.tokens,
                            unknownID: corpus.vocabulary.unknownID, counts: corpus.counts, stats: corpus.stats)
        let json = try JSONEncoder().encode(header)
        let store = corpus.store
        let bpt = store.wide == nil ? 2 : 4
        let dataPtr = UnsafeRawPointer(store.wide.map { UnsafeRawPointer($0) } ?? UnsafeRawPointer(store.narrow!))
        let dataBytes = UnsafeRawBufferPointer(start: dataPtr, count: store.count * bpt)
        let dataStart = (fixedHeader + json.count + 63) & ~63
        var head = [UInt8](repeating: 0, count: dataStart)
        head.replaceSubrange(0..<8, with: magic)
        func put(_ v: UInt64, at o: Int) { for k in 0..<8 { head[o + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) } }
        let jsonSum = json.withUnsafeBytes { checksum64($0) }
        put(UInt64(json.count), at: 8); put(UInt64(store.count), at: 16); put(UInt64(bpt), at: 24)
        put(jsonSum, at: 32); put(checksum64(dataBytes), at: 40)
        head.replaceSubrange(fixedHeader..<(fixedHeader + json.count), with: json)

        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        let tmp = path + ".tmp.\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw CacheError(path: tmp, message: String(cString: strerror(errno))) }
        var ok = false
        defer { close(fd); if !ok { unlink(tmp) } }
        try head.withUnsafeBytes { try writeAll(fd, $0, path: tmp) }
        try writeAll(fd, dataBytes, path: tmp)
        if rename(tmp, path) != 0 { throw CacheError(path: path, message: String(cString: strerror(errno))) }
        ok = true
    }

    static func writeAll(_ fd: Int32, _ buf: UnsafeRawBufferPointer, path: String) throws {
        var off = 0
        while off < buf.count {
            let n = Glibc.write(fd, buf.baseAddress! + off, min(buf.count - off, 1 << 26))
            if n < 0 { if errno == EINTR { continue }; throw CacheError(path: path, message: String(cString: strerror(errno))) }
            off += n
        }
    }

    // MARK: Read

    public enum Lookup {
        case hit(Corpus)
        /// No file, or it must be rebuilt; `reason` is nil when there was simply no file.
        case miss(reason: String?)
    }

    /// Maps the cache at `path` and validates it against `key`.
    public static func read(path: String, key: Key) -> Lookup {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return .miss(reason: errno == ENOENT ? nil : String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .miss(reason: String(cString: strerror(errno))) }
        let size = Int(st.st_size)
        guard size >= fixedHeader else { return .miss(reason: "shorter than its header") }
        let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let base = mapped, base != UnsafeMutableRawPointer(bitPattern: -1) else { return .miss(reason: String(cString: strerror(errno))) }
        var keep = false
        defer { if !keep { munmap(base, size) } }
        let raw = UnsafeRawBufferPointer(start: base, count: size)
        guard Array(raw[0..<8]) == magic else { return .miss(reason: "bad magic") }
        func u64(_ o: Int) -> UInt64 { var v: UInt64 = 0; for k in 0..<8 { v |= UInt64(raw[o + k]) << (8 * UInt64(k)) }; return v }
        let (jsonLen, n, bpt) = (Int(u64(8)), Int(u64(16)), Int(u64(24)))
        guard bpt == 2 || bpt == 4, jsonLen >= 0, jsonLen <= size, n >= 0, n <= size else { return .miss(reason: "bad lengths") }
        let dataStart = (fixedHeader + jsonLen + 63) & ~63
        guard dataStart + n * bpt == size else { return .miss(reason: "length \(size) does not match its header") }
        let json = UnsafeRawBufferPointer(rebasing: raw[fixedHeader..<(fixedHeader + jsonLen)])
        guard checksum64(json) == u64(32) else { return .miss(reason: "header checksum mismatch") }
        guard let header = try? JSONDecoder().decode(Header.self, from: Data(json)) else { return .miss(reason: "unreadable header") }
        guard header.key == key else { return .miss(reason: "stale (the input files or options changed)") }
        guard header.counts.count == header.tokens.count, !header.tokens.isEmpty,
              (bpt == 2) == (header.tokens.count <= 65_536) else { return .miss(reason: "inconsistent header") }
        let data = UnsafeRawBufferPointer(rebasing: raw[dataStart..<size])
        guard checksum64(data) == u64(40) else { return .miss(reason: "token checksum mismatch") }
        let ids = UnsafeMutableRawPointer(mutating: base + dataStart)
        let store = TokenStore(narrow: bpt == 2 ? ids.assumingMemoryBound(to: UInt16.self) : nil,
                               wide: bpt == 4 ? ids.assumingMemoryBound(to: UInt32.self) : nil,
                               count: n, mapping: (base, size))
        keep = true
        var corpus = Corpus(name: header.name,
                            vocabulary: Vocabulary(unit: header.unit, tokens: header.tokens, unknownID: header.unknownID),
                            store: store)
        corpus.counts = header.counts
        corpus.stats = header.stats
        return .hit(corpus)
    }

    /// A 64-bit checksum (four independent multiply–rotate lanes over 8-byte words, then the tail).
    /// Not cryptographic: it catches torn writes and bit rot, fast enough for a 1 GB token array.
    static func checksum64(_ buf: UnsafeRawBufferPointer) -> UInt64 {
        let p1: UInt64 = 0x9E37_79B1_85EB_CA87, p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
        var a: UInt64 = 0x1234, b: UInt64 = 0x5678, c: UInt64 = 0x9ABC, d: UInt64 = 0xDEF0
        @inline(__always) func mix(_ h: UInt64, _ w: UInt64) -> UInt64 {
            let x = h &+ w &* p2
            return ((x << 31) | (x >> 33)) &* p1
        }
        let n = buf.count
        var i = 0
        if let base = buf.baseAddress {
            while i + 32 <= n {
                a = mix(a, base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                b = mix(b, base.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self))
                c = mix(c, base.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self))
                d = mix(d, base.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self))
                i += 32
            }
        }
        var h = mix(mix(mix(mix(UInt64(n), a), b), c), d)
        while i < n { h = mix(h, UInt64(buf[i])); i += 1 }
        h ^= h >> 29; h = h &* p1; h ^= h >> 32
        return h
    }
}

public struct CacheError: Error, CustomStringConvertible {
    public let path: String
    public let message: String
    public var description: String { "token cache \(path): \(message)" }
}

// MARK: - Loading through the cache

/// How a corpus was obtained.
public enum CacheOutcome: Sendable, Equatable {
    /// Not cached (disabled, not regular files, or below the size threshold).
    case off
    /// Read from this cache file.
    case hit(path: String)
    /// Decoded and written to this cache file; `reason` says why an existing one was not used.
    case built(path: String, reason: String?)
    /// Decoded; writing the cache failed (the run goes on).
    case writeFailed(path: String, message: String)
}

extension CorpusLoader {
    /// Expands `paths`, then reads the corpus from the token cache in `cacheDirectory` when it is
    /// valid, else decodes it (and writes the cache when the inputs total at least `minimumCacheBytes`).
    /// - Parameters:
    ///   - cacheDirectory: nil disables the cache.
    ///   - progress: (bytes done, total bytes) while decoding.
    /// - Returns: the corpus, its input files and what happened with the cache.
    public static func load(paths: [String], options: LoadOptions, cacheDirectory: String?,
                            minimumCacheBytes: Int = 1 << 20,
                            progress: (Int, Int) -> Void = { _, _ in }) throws -> (Corpus, [InputFile], CacheOutcome) {
        let files = try inputs(paths)
        let name = Corpus.baseName(paths[0])
        let total = files.reduce(0) { $0 + $1.size }
        let regular = files.allSatisfy { f in
            var st = stat()
            return stat(f.path, &st) == 0 && st.st_mode & S_IFMT == S_IFREG
        }
        guard let dir = cacheDirectory, regular, total >= minimumCacheBytes else {
            return (try load(files, name: name, options: options, progress: progress), files, .off)
        }
        let key = TokenCache.Key(files: files, options: options)
        let path = TokenCache.path(for: files, options: options, name: name, directory: dir)
        var reason: String? = nil
        switch TokenCache.read(path: path, key: key) {
        case .hit(let corpus): return (corpus, files, .hit(path: path))
        case .miss(let r): reason = r
        }
        let corpus = try load(files, name: name, options: options, progress: progress)
        do {
            try TokenCache.write(corpus, key: key, to: path)
        } catch {
            return (corpus, files, .writeFailed(path: path, message: "\(error)"))
        }
        return (corpus, files, .built(path: path, reason: reason))
    }
}
