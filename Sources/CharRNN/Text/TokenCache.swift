// Text/TokenCache.swift — the first pass (vocabulary + token array) saved to disk and mmap'd back.
//
// File layout (little-endian):
//   0  magic "CRNNTOK1"                      8 bytes
//   8  u64 header length J (JSON bytes)
//  16  u64 token count N
//  24  u64 bytes per token (2 or 4)
//  32  u64 checksum of the JSON header       (`checksum64`)
//  40  u64 checksum of the token bytes
//  48  JSON header (`Header`: key, vocabulary, unknown id, counts, stats, content hash), then zero
//      padding to a multiple of 64, then N ids of 2 or 4 bytes; the file ends exactly there.
// The key is the format version, every input's path, size, mtime (ns), ctime (ns) and inode plus the
// `LoadOptions`; a cache whose key differs is stale (version 1 had no content hash, version 2 no ctime). Any mismatch
// (magic, lengths, checksums, JSON, key) means "rebuild": `read` returns why, and the caller decodes
// the corpus and writes the cache again. Writes go through `AtomicFile` (temp file, fsync, rename,
// fsync of the folder), so a crash never leaves a half-written cache.
// A hit maps the file read-only and the corpus' ids point straight into the mapping (no copy). The
// corpus file itself is not read on a hit: its `contentHash` is the one recorded when the cache was
// built. Why that is sound without reading: mtime alone is not (a same-size rewrite followed by
// `touch -r old` or `utimensat` restores it, and the old tokens were loaded). The ctime is the
// cheapest sound check: the kernel sets it to "now" on every write, truncate, rename and utimensat,
// and no system call sets it to a chosen value, so an in-place rewrite always changes it (short of
// changing the system clock or editing the block device). Hashing the file on every hit would be
// sound too but reads the whole corpus, which the cache exists to avoid. The cost of ctime: a chmod,
// chown or new hard link also changes it, and the cache is then rebuilt once, unnecessarily.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

package enum TokenCache {
    static let magic: [UInt8] = Array("CRNNTOK1".utf8)
    static let fixedHeader = 48

    /// What makes a cache valid for a load.
    package struct Key: Codable, Equatable, Sendable {
        /// The cache format; 2 added the content hash, 3 the inputs' ctime.
        package var version = 3
        package var files: [InputFile]
        package var options: LoadOptions
        package init(files: [InputFile], options: LoadOptions) { self.files = files; self.options = options }
    }

    struct Header: Codable {
        var key: Key
        var name: String
        var unit: TokenUnit
        var tokens: [String]
        var unknownID: Int?
        var counts: [Int]
        var stats: CorpusStats
        var contentHash: String?
    }

    /// Cache file for these inputs and options in `directory`: the corpus name plus a hash of the
    /// absolute paths and options (not sizes or times, so a stale cache is overwritten in place).
    package static func path(for files: [InputFile], options: LoadOptions, name: String, directory: String) -> String {
        let cwd = FileManager.default.currentDirectoryPath
        var id = files.map { $0.path.hasPrefix("/") ? $0.path : cwd + "/" + $0.path }.joined(separator: "\n")
        id += "\n\(options.unit.rawValue) \(options.normalize.rawValue) \(options.lossy) \(options.minCount) \(options.maxVocab ?? 0)"
        let h = Array(id.utf8).withUnsafeBufferPointer { checksum64(UnsafeRawBufferPointer($0)) }
        let hex = String(h, radix: 16)
        return (directory as NSString).appendingPathComponent("\(name)-\(String(repeating: "0", count: 16 - hex.count))\(hex).tokens")
    }

    // MARK: Write

    /// Writes `corpus` atomically (`AtomicFile`) under `path`, creating its folder if needed.
    /// - Throws: `FileIOError`, or the folder's creation error.
    package static func write(_ corpus: Corpus, key: Key, to path: String) throws {
        let header = Header(key: key, name: corpus.name, unit: corpus.vocabulary.unit, tokens: corpus.vocabulary.tokens,
                            unknownID: corpus.vocabulary.unknownID, counts: corpus.counts, stats: corpus.stats,
                            contentHash: corpus.contentHash)
        let json = try JSONEncoder().encode(header)
        let store = corpus.store
        let dataBytes = store.bytes
        let dataStart = (fixedHeader + json.count + 63) & ~63
        var head = [UInt8](repeating: 0, count: dataStart)
        head.replaceSubrange(0..<8, with: magic)
        func put(_ v: UInt64, at o: Int) { for k in 0..<8 { head[o + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) } }
        let jsonSum = json.withUnsafeBytes { checksum64($0) }
        put(UInt64(json.count), at: 8); put(UInt64(store.count), at: 16); put(UInt64(store.bytesPerToken), at: 24)
        put(jsonSum, at: 32); put(checksum64(dataBytes), at: 40)
        head.replaceSubrange(fixedHeader..<(fixedHeader + json.count), with: json)

        let dir = parentPath(path)
        if !dir.isEmpty { try makeFolders(dir) }
        try withExtendedLifetime(store) {
            try head.withUnsafeBytes { try AtomicFile.write(parts: [$0, dataBytes], to: path) }
        }
    }

    // MARK: Read

    package enum Lookup {
        case hit(Corpus)
        /// No file, or it must be rebuilt; `reason` is nil when there was simply no file.
        case miss(reason: String?)
    }

    /// Maps the cache at `path` and validates it against `key`.
    package static func read(path: String, key: Key) -> Lookup {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return .miss(reason: errno == ENOENT ? nil : String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .miss(reason: String(cString: strerror(errno))) }
        let size = Int(st.st_size)
        guard size >= fixedHeader else { return .miss(reason: "shorter than its header") }
        let file: MappedFile
        do { file = try MappedFile(fd: fd, size: size, path: path) } catch {
            return .miss(reason: String(cString: strerror(error.code)))
        }
        let raw = UnsafeRawBufferPointer(file.bytes)
        guard Array(raw[0..<8]) == magic else { return .miss(reason: "bad magic") }
        func u64(_ o: Int) -> UInt64 { var v: UInt64 = 0; for k in 0..<8 { v |= UInt64(raw[o + k]) << (8 * UInt64(k)) }; return v }
        let (jsonLen, n, bpt) = (Int(u64(8)), Int(u64(16)), Int(u64(24)))
        guard bpt == 2 || bpt == 4, jsonLen >= 0, jsonLen <= size, n >= 0, n <= size else { return .miss(reason: "bad lengths") }
        let dataStart = (fixedHeader + jsonLen + 63) & ~63
        guard dataStart + n * bpt == size else { return .miss(reason: "length \(size) does not match its header") }
        let json = UnsafeRawBufferPointer(rebasing: raw[fixedHeader..<(fixedHeader + jsonLen)])
        guard checksum64(json) == u64(32) else { return .miss(reason: "header checksum mismatch") }
        guard let header = try? JSONDecoder().decode(Header.self, from: Data(json)) else { return .miss(reason: "unreadable header") }
        guard header.key.version == key.version else {
            return .miss(reason: "written in cache format \(header.key.version), this version uses \(key.version)")
        }
        guard header.key == key else { return .miss(reason: "stale (the input files or options changed)") }
        guard header.counts.count == header.tokens.count, !header.tokens.isEmpty,
              (bpt == 2) == (header.tokens.count <= 65_536) else { return .miss(reason: "inconsistent header") }
        let data = UnsafeRawBufferPointer(rebasing: raw[dataStart..<size])
        guard checksum64(data) == u64(40) else { return .miss(reason: "token checksum mismatch") }
        let store = TokenStore(base: UnsafeMutableRawPointer(mutating: raw.baseAddress! + dataStart), count: n,
                               bytesPerToken: bpt, mapping: file)
        var corpus = Corpus(name: header.name,
                            vocabulary: Vocabulary(unit: header.unit, tokens: header.tokens, unknownID: header.unknownID),
                            store: store)
        corpus.counts = header.counts
        corpus.stats = header.stats
        corpus.contentHash = header.contentHash
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

// MARK: - Loading through the cache

/// How a corpus was obtained.
package enum CacheOutcome: Sendable, Equatable {
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
    /// - Returns: the corpus, its input files and what happened with the cache. The corpus'
    ///   `contentHash` is set when `paths` is one regular file (not a directory, whose files'
    ///   hashes are not what `CorpusHash.file(path)` would give for the path), from the decoding
    ///   pass or, on a cache hit, from the cache.
    package static func load(paths: [String], options: LoadOptions, cacheDirectory: String?,
                            minimumCacheBytes: Int = 1 << 20,
                            progress: (Int, Int) -> Void = { _, _ in }) throws -> (Corpus, [InputFile], CacheOutcome) {
        let files = try inputs(paths)
        let name = Corpus.baseName(paths[0])
        let total = files.reduce(0) { $0 + $1.size }
        let regular = files.allSatisfy { f in
            var st = stat()
            return stat(f.path, &st) == 0 && st.st_mode & S_IFMT == S_IFREG
        }
        let oneFile = paths.count == 1 && files.count == 1 && files[0].path == paths[0]
        func named(_ corpus: Corpus) -> Corpus {
            var corpus = corpus
            if !oneFile { corpus.contentHash = nil }
            return corpus
        }
        guard let dir = cacheDirectory, regular, total >= minimumCacheBytes else {
            return (named(try load(files, name: name, options: options, progress: progress)), files, .off)
        }
        let key = TokenCache.Key(files: files, options: options)
        let path = TokenCache.path(for: files, options: options, name: name, directory: dir)
        var reason: String? = nil
        switch TokenCache.read(path: path, key: key) {
        case .hit(let corpus): return (named(corpus), files, .hit(path: path))
        case .miss(let r): reason = r
        }
        let corpus = try load(files, name: name, options: options, progress: progress)
        do {
            try TokenCache.write(corpus, key: key, to: path)
        } catch {
            return (named(corpus), files, .writeFailed(path: path, message: (error as? FileIOError).map { "\($0)" } ?? describe(error)))
        }
        return (named(corpus), files, .built(path: path, reason: reason))
    }
}
