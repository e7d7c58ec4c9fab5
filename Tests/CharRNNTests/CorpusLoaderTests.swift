// CorpusLoaderTests.swift — the corpus loader: several inputs, vocabulary control (unknown token),
// the token cache (hit, stale, corrupt, old format), bad input (NUL, binary, lossy, changing file),
// chunked decoding and the content hash computed in the decoding pass, memory prediction.
// Every corpus is written to a fresh temp folder here.

import Foundation
import XCTest
@testable import CharRNN

private func write(_ dir: String, _ name: String, _ bytes: [UInt8]) -> String {
    let p = dir + "/" + name
    FileManager.default.createFile(atPath: p, contents: Data(bytes))
    return p
}

private func write(_ dir: String, _ name: String, _ text: String) -> String { write(dir, name, Array(text.utf8)) }

private func text(of c: Corpus) -> String {
    (0..<c.count).map { c.vocabulary.tokens[Int(c.token(at: $0))] }.joined()
}

private func options(minCount: Int = 1, maxVocab: Int? = nil, lossy: Bool = false, unit: TokenUnit = .scalar) -> LoadOptions {
    var o = LoadOptions()
    o.minCount = minCount; o.maxVocab = maxVocab; o.lossy = lossy; o.unit = unit
    return o
}

final class CorpusLoaderTests: XCTestCase {
    // MARK: Several inputs

    func testFilesAndDirectoryJoinInOrderWithNewlines() throws {
        let d = tempDir("multi")
        try FileManager.default.createDirectory(atPath: d + "/dir", withIntermediateDirectories: true)
        let a = write(d, "a.txt", "first")
        _ = write(d + "/dir", "b2.txt", "B2")
        _ = write(d + "/dir", "b10.txt", "B10")
        _ = write(d + "/dir", "notes.md", "skipped")
        let c = write(d, "c.txt", "last\n")
        let files = try CorpusLoader.inputs([a, d + "/dir", c])
        XCTAssertEqual(files.map { ($0.path as NSString).lastPathComponent }, ["a.txt", "b10.txt", "b2.txt", "c.txt"])
        let corpus = try CorpusLoader.load(files, name: "x", options: options())
        XCTAssertEqual(text(of: corpus), "first\nB10\nB2\nlast\n")
        XCTAssertEqual(corpus.counts.reduce(0, +), corpus.count)
    }

    func testErrorsNameTheFileAndItsOwnOffset() throws {
        let d = tempDir("multi-err")
        let a = write(d, "a.txt", "all good here\n")
        let b = write(d, "b.txt", [0x61, 0x62, 0xC3, 0x28, 0x63])
        XCTAssertThrowsError(try CorpusLoader.load(CorpusLoader.inputs([a, b]), name: "x", options: options())) { e in
            XCTAssertEqual(e as? TextError, .invalidUTF8(file: b, line: 1, column: 3, byteOffset: 2, bytes: [0xC3]))
            XCTAssertTrue("\(e)".hasPrefix(b + ":1:3 (byte 2)"), "\(e)")
        }
        XCTAssertThrowsError(try CorpusLoader.inputs([a, d + "/missing.txt"])) { e in
            XCTAssertTrue("\(e)".contains("missing.txt"), "\(e)")
        }
        try FileManager.default.createDirectory(atPath: d + "/empty", withIntermediateDirectories: true)
        XCTAssertThrowsError(try CorpusLoader.inputs([d + "/empty"])) { e in
            XCTAssertTrue("\(e)".contains("no .txt files"), "\(e)")
        }
    }

    // MARK: Vocabulary control

    func testMinCountMapsRareCharactersToUnknownAndReportsCoverage() throws {
        let d = tempDir("mincount")
        // a×6, b×3, c×2, 字×1, 词×1  (13 tokens)
        let p = write(d, "t.txt", "aaaaaabbbcc字词")
        let corpus = try CorpusLoader.load(CorpusLoader.inputs([p]), name: "t", options: options(minCount: 2))
        XCTAssertEqual(corpus.vocabulary.tokens, ["", "a", "b", "c"])
        XCTAssertEqual(corpus.vocabulary.unknownID, 0)
        XCTAssertEqual(corpus.counts, [2, 6, 3, 2])
        XCTAssertEqual(corpus.stats.coveredTokens, 11)
        XCTAssertEqual(corpus.coveragePercent, 100 * 11 / 13, accuracy: 1e-9)
        XCTAssertEqual(corpus.stats.droppedDistinct, 2)
        XCTAssertEqual(corpus.stats.topDropped.map(\.token), ["字", "词"])
        XCTAssertEqual((0..<corpus.count).map { corpus.token(at: $0) }, [1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 0, 0])
        // encode maps unknown characters to the unknown id and still reports them
        let (ids, unknown) = corpus.vocabulary.encode("a字z", normalize: .none)
        XCTAssertEqual(ids, [1, 0, 0])
        XCTAssertEqual(unknown, ["字", "z"])
    }

    func testMaxVocabKeepsTheMostFrequentAndCountsTheUnknownToken() throws {
        let d = tempDir("maxvocab")
        let p = write(d, "t.txt", "aaaaaabbbcc字词")
        let corpus = try CorpusLoader.load(CorpusLoader.inputs([p]), name: "t", options: options(maxVocab: 3))
        XCTAssertEqual(corpus.vocabulary.tokens, ["", "a", "b"])
        XCTAssertEqual(corpus.counts, [4, 6, 3])
        XCTAssertEqual(corpus.stats.topDropped.map(\.token), ["c", "字", "词"])
        XCTAssertEqual(corpus.stats.topDropped.map(\.count), [2, 1, 1])
        XCTAssertTrue(corpus.vocabulary.isSortedInCodePointOrder)
        // nothing to drop → no unknown token
        let all = try CorpusLoader.load(CorpusLoader.inputs([p]), name: "t", options: options(maxVocab: 100))
        XCTAssertNil(all.vocabulary.unknownID)
        XCTAssertEqual(all.coveragePercent, 100)
    }

    func testUnknownTokenIsNeverSampledEvenWhenLikeliest() throws {
        let vocab = Vocabulary(unit: .scalar, tokens: ["", "a", "b"], unknownID: 0)
        let cfg = ModelConfig(cell: .lstm, layers: 1, hidden: 4, vocabSize: 3)
        let model = CharRNNModel(config: cfg, maxT: 1, maxB: 1)
        // decoder bias makes the unknown token 20 nats likelier than the others
        model.params.ptr[model.layout[StateDict.decoderBias]!.offset] = 20
        for temp: Float in [0, 0.5, 1, 2] {
            for topK in [0, 1, 2] {
                let s = Sampler(model: model, vocabulary: vocab, options: SamplingOptions(temperature: temp, topK: topK), seed: 9)
                s.start()
                for _ in 0..<300 { XCTAssertNotEqual(s.next(), 0, "temp \(temp) top-k \(topK)") }
            }
        }
    }

    func testUnknownIDRoundTripsThroughCheckpointMetadata() throws {
        let d = tempDir("unkckpt")
        let p = write(d, "t.txt", String(repeating: "abcab字\n", count: 200) + "词")
        let corpus = try CorpusLoader.load(CorpusLoader.inputs([p]), name: "t", options: options(minCount: 2))
        XCTAssertEqual(corpus.vocabulary.unknownID, 0)
        var t = TrainConfig()
        t.seq = 8; t.batch = 4; t.maxIters = 1; t.minCount = 2
        let cfg = ModelConfig(cell: .gru, layers: 1, hidden: 8, vocabSize: corpus.vocabulary.count)
        let tr = try Trainer(corpus: corpus, corpusInfo: CorpusInfo(name: "t", path: p, bytes: 0, tokens: corpus.count),
                             model: cfg, train: t, runDir: d + "/run")
        _ = try tr.run { _ in }
        let loaded = try Checkpoint.load(path: tr.latestPath)
        XCTAssertEqual(loaded.meta.vocabulary, corpus.vocabulary)
        XCTAssertEqual(loaded.meta.vocabulary.unknownID, 0)
        XCTAssertEqual(loaded.meta.train.loadOptions, options(minCount: 2))
    }

    // MARK: Token cache

    func testCacheHitStaleAndCorruptRebuild() throws {
        let d = tempDir("cache")
        let p = write(d, "t.txt", String(repeating: "床前明月光，疑是地上霜。\n", count: 50))
        let cacheDir = d + "/cache"
        let (c1, _, o1) = try CorpusLoader.load(paths: [p], options: options(), cacheDirectory: cacheDir, minimumCacheBytes: 0)
        guard case .built(let path, nil) = o1 else { return XCTFail("expected a fresh build, got \(o1)") }
        let (c2, _, o2) = try CorpusLoader.load(paths: [p], options: options(), cacheDirectory: cacheDir, minimumCacheBytes: 0)
        XCTAssertEqual(o2, .hit(path: path))
        XCTAssertEqual(c2.vocabulary, c1.vocabulary)
        XCTAssertEqual(c2.counts, c1.counts)
        XCTAssertEqual(text(of: c2), text(of: c1))
        XCTAssertNotNil(c2.store.mapping, "a hit maps the cache file")

        // other options: another cache file
        let (_, _, o3) = try CorpusLoader.load(paths: [p], options: options(minCount: 40), cacheDirectory: cacheDir, minimumCacheBytes: 0)
        guard case .built(let other, _) = o3 else { return XCTFail("\(o3)") }
        XCTAssertNotEqual(other, path)

        // corrupt one token byte → checksum mismatch → rebuilt, then a hit again
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count - 3] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let (c4, _, o4) = try CorpusLoader.load(paths: [p], options: options(), cacheDirectory: cacheDir, minimumCacheBytes: 0)
        XCTAssertEqual(o4, .built(path: path, reason: "token checksum mismatch"))
        XCTAssertEqual(text(of: c4), text(of: c1))
        // truncated
        try Data(bytes.prefix(60)).write(to: URL(fileURLWithPath: path))
        let (_, _, o5) = try CorpusLoader.load(paths: [p], options: options(), cacheDirectory: cacheDir, minimumCacheBytes: 0)
        guard case .built(_, let r5?) = o5 else { return XCTFail("\(o5)") }
        XCTAssertTrue(r5.contains("length") || r5.contains("header"), r5)

        // the corpus changes (size and mtime) → stale → rebuilt with the new text
        Thread.sleep(forTimeInterval: 0.01)
        _ = write(d, "t.txt", "春眠不覺曉\n")
        let (c6, _, o6) = try CorpusLoader.load(paths: [p], options: options(), cacheDirectory: cacheDir, minimumCacheBytes: 0)
        XCTAssertEqual(o6, .built(path: path, reason: "stale (the input files or options changed)"))
        XCTAssertEqual(text(of: c6), "春眠不覺曉\n")
        let (_, _, o7) = try CorpusLoader.load(paths: [p], options: options(), cacheDirectory: cacheDir, minimumCacheBytes: 0)
        XCTAssertEqual(o7, .hit(path: path))
    }

    // MARK: Bad input

    func testNULByteIsAnErrorWithFileAndOffset() throws {
        let d = tempDir("nul")
        let p = write(d, "n.txt", Array("line one\nab".utf8) + [0] + Array("cd\n".utf8))
        XCTAssertThrowsError(try CorpusLoader.load(CorpusLoader.inputs([p]), name: "n", options: options(lossy: true))) { e in
            XCTAssertEqual(e as? TextError, .nulByte(file: p, line: 2, column: 3, byteOffset: 11))
            XCTAssertTrue("\(e)".contains("NUL"), "\(e)")
        }
    }

    func testMostlyBinaryFileIsRejected() throws {
        let d = tempDir("bin")
        var rng = Xoshiro256(seed: 3)
        var bytes = Array("#!header\n".utf8)
        for _ in 0..<4000 { bytes.append(UInt8(truncatingIfNeeded: rng.next() % 255 + 1)) }   // no NUL
        let p = write(d, "b.txt", bytes)
        XCTAssertThrowsError(try CorpusLoader.load(CorpusLoader.inputs([p]), name: "b", options: options(lossy: true))) { e in
            guard case let .binary(file, offset, percent, _)? = e as? TextError else { return XCTFail("\(e)") }
            XCTAssertEqual(file, p)
            XCTAssertGreaterThanOrEqual(offset, 9)
            XCTAssertGreaterThan(percent, 30)
        }
    }

    func testLossyReplacesEachInvalidSequenceAndCounts() throws {
        let d = tempDir("lossy")
        // "a" C3 28 "b" E2 82 "c" FF "d" ED A0 80 "e"  → a � ( b � c � d � � � e  (ED A0 80: 3 invalid bytes)
        let raw: [UInt8] = [0x61, 0xC3, 0x28, 0x62, 0xE2, 0x82, 0x63, 0xFF, 0x64, 0xED, 0xA0, 0x80, 0x65]
        let p = write(d, "l.txt", raw)
        XCTAssertThrowsError(try CorpusLoader.load(CorpusLoader.inputs([p]), name: "l", options: options()))
        let c = try CorpusLoader.load(CorpusLoader.inputs([p]), name: "l", options: options(lossy: true))
        XCTAssertEqual(c.stats.replacements, String(decoding: raw, as: UTF8.self).filter { $0 == "\u{FFFD}" }.count)
        XCTAssertEqual(text(of: c), String(decoding: raw, as: UTF8.self), "same replacements as Swift's decoder (maximal subparts)")
    }

    func testChunkedDecodingMatchesOneShotAcrossChunkBoundaries() throws {
        // A file larger than one chunk, with multi-byte characters straddling every boundary.
        let d = tempDir("chunks")
        let line = "床前明月光，疑是地上霜。abc\n"
        let n = CorpusLoader.chunkBytes / line.utf8.count + 1000
        let big = String(repeating: line, count: n)
        let p = write(d, "big.txt", big)
        let c = try CorpusLoader.load(CorpusLoader.inputs([p]), name: "big", options: options())
        let ref = try Corpus(bytes: Array(big.utf8), name: "big")
        XCTAssertEqual(c.count, ref.count)
        XCTAssertEqual(c.vocabulary, ref.vocabulary)
        XCTAssertTrue((0..<c.count).allSatisfy { c.token(at: $0) == ref.token(at: $0) })
    }

    func testFileChangingDuringLoadIsAnError() throws {
        let d = tempDir("changing")
        let line = "春眠不覺曉，處處聞啼鳥。\n"
        let p = write(d, "c.txt", String(repeating: line, count: CorpusLoader.chunkBytes / line.utf8.count * 3))
        let files = try CorpusLoader.inputs([p])
        XCTAssertThrowsError(try CorpusLoader.load(files, name: "c", options: options(), progress: { done, _ in
            if done == CorpusLoader.chunkBytes || (done > 0 && done < CorpusLoader.chunkBytes * 2) {
                // another process appends while we read
                if let h = FileHandle(forWritingAtPath: p) { h.seekToEndOfFile(); h.write(Data("more\n".utf8)); try? h.close() }
            }
        })) { e in
            guard case let .changed(file, _)? = e as? TextError else { return XCTFail("\(e)") }
            XCTAssertEqual(file, p)
        }
    }

    // MARK: Chunks and the content hash

    /// Lines whose only cut points (for NFC and graphemes) are right after a LF, each LF followed
    /// by a U+FEFF or a CJK character; with combining marks, CR LF, an astral scalar and U+212B
    /// (which NFC turns into U+00C5), so NFC and grapheme clusters both change the tokens.
    private func cutText(lines: Int) -> [UInt8] {
        let line = "床前明月光e\u{301}\n\u{FEFF}🦊\u{212B}\r\n"
        return [0xEF, 0xBB, 0xBF] + Array(String(repeating: line, count: lines).utf8) + Array("末".utf8)
    }

    func testInPassHashEqualsCorpusHashFileAcrossChunksWithAndWithoutNFC() throws {
        let d = tempDir("hash")
        let bytes = cutText(lines: 300)
        XCTAssertNotEqual(bytes.count % 32, 0, "a tail shorter than one hash block")
        let p = write(d, "h.txt", bytes)
        let expected = try CorpusHash.file(p)
        XCTAssertEqual(expected, CorpusHash.hex(bytes))
        // Lines are 31 bytes after the BOM: chunks of 1014 bytes (≡ 22 mod 31) alternately end before
        // a U+FEFF and before a 床, chunks of 997 bytes always before a 床.
        for chunk in [997, 1014] {
            for unit in TokenUnit.allCases {
                for normalize in Normalization.allCases {
                    let mode = "\(unit) \(normalize), chunks of \(chunk)"
                    var o = options(unit: unit)
                    o.normalize = normalize
                    var reports = 0
                    let c = try CorpusLoader.load(CorpusLoader.inputs([p]), name: "h", options: o, chunkBytes: chunk,
                                                  progress: { _, _ in reports += 1 })
                    XCTAssertGreaterThan(reports, 5, "\(mode): the file spans several chunks")
                    XCTAssertEqual(c.contentHash, expected, mode)
                    // Decoding in chunks gives what decoding in one piece gives (U+FEFF after a cut kept).
                    let whole = try Corpus(bytes: bytes, name: "h", unit: unit, normalize: normalize)
                    XCTAssertEqual(c.count, whole.count, mode)
                    XCTAssertEqual(c.vocabulary, whole.vocabulary, mode)
                    XCTAssertTrue((0..<c.count).allSatisfy { c.token(at: $0) == whole.token(at: $0) }, mode)
                    // encodeFile hashes in its decoding pass too.
                    XCTAssertEqual(try whole.vocabulary.encodeFile(path: p, normalize: normalize).contentHash, expected, mode)
                }
            }
        }
    }

    func testCacheHitTakesTheContentHashFromTheCacheAndOldFormatIsRebuilt() throws {
        let d = tempDir("hashcache")
        let p = write(d, "t.txt", String(repeating: "床前明月光，疑是地上霜。\n", count: 50))
        let hash = try CorpusHash.file(p)
        let cacheDir = d + "/cache"
        let (c1, _, o1) = try CorpusLoader.load(paths: [p], options: options(), cacheDirectory: cacheDir, minimumCacheBytes: 0)
        guard case .built(let path, nil) = o1 else { return XCTFail("expected a fresh build, got \(o1)") }
        XCTAssertEqual(c1.contentHash, hash)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: cacheDir), [(path as NSString).lastPathComponent],
                       "the atomic write leaves no temp file")
        let (c2, _, o2) = try CorpusLoader.load(paths: [p], options: options(), cacheDirectory: cacheDir, minimumCacheBytes: 0)
        XCTAssertEqual(o2, .hit(path: path))
        XCTAssertEqual(c2.contentHash, hash)

        // A cache in format 1 (no hash) is rebuilt, not trusted.
        var old = TokenCache.Key(files: try CorpusLoader.inputs([p]), options: options())
        old.version = 1
        var unhashed = c1
        unhashed.contentHash = nil
        try TokenCache.write(unhashed, key: old, to: path)
        let (c3, _, o3) = try CorpusLoader.load(paths: [p], options: options(), cacheDirectory: cacheDir, minimumCacheBytes: 0)
        XCTAssertEqual(o3, .built(path: path, reason: "written in cache format 1, this version uses 3"))
        XCTAssertEqual(c3.contentHash, hash)

        // A directory (here holding only t.txt) has no content hash, decoded or from its cache.
        let (viaDir, _, o4) = try CorpusLoader.load(paths: [d], options: options(), cacheDirectory: cacheDir, minimumCacheBytes: 0)
        guard case .built(let dirCache, _) = o4 else { return XCTFail("\(o4)") }
        XCTAssertNil(viaDir.contentHash)
        let (viaDirHit, _, o5) = try CorpusLoader.load(paths: [d], options: options(), cacheDirectory: cacheDir, minimumCacheBytes: 0)
        XCTAssertEqual(o5, .hit(path: dirCache))
        XCTAssertNil(viaDirHit.contentHash)
        XCTAssertNil(try CorpusLoader.load(paths: [d], options: options(), cacheDirectory: nil).0.contentHash)
        // Nor do several files.
        let q = write(d, "u.txt", "春眠不覺曉\n")
        XCTAssertNil(try CorpusLoader.load(paths: [p, q], options: options(), cacheDirectory: nil).0.contentHash)
        XCTAssertNil(try CorpusLoader.load(CorpusLoader.inputs([p, q]), name: "pq", options: options()).contentHash)
    }

    func testInvalidUTF8AtAChunkBoundaryIsReportedAsInOnePiece() throws {
        // F0 90 80 80 is one scalar; the stray 80 after it (byte 14) is the first invalid byte,
        // wherever a chunk ends.
        let d = tempDir("edge")
        let bytes = [UInt8](repeating: 0x61, count: 10) + [0xF0, 0x90, 0x80, 0x80, 0x80] + Array("bcdef".utf8)
        let p = write(d, "e.txt", bytes)
        let expected = TextError.invalidUTF8(file: p, line: 1, column: 12, byteOffset: 14, bytes: [0x80])
        XCTAssertThrowsError(try Corpus(bytes: bytes, name: p)) { XCTAssertEqual($0 as? TextError, expected) }
        for chunk in 1...20 {
            XCTAssertThrowsError(try CorpusLoader.load(CorpusLoader.inputs([p]), name: "e", options: options(),
                                                       chunkBytes: chunk, progress: { _, _ in })) { e in
                XCTAssertEqual(e as? TextError, expected, "chunks of \(chunk) bytes")
            }
        }
    }

    func testLossyNFCKeepsAZeroWidthNoBreakSpaceAfterAReplacement() throws {
        let d = tempDir("feff")
        let p = write(d, "z.txt", Array("ab".utf8) + [0xFF] + Array("\u{FEFF}c".utf8))
        var o = options(lossy: true)
        o.normalize = .nfc
        let c = try CorpusLoader.load(CorpusLoader.inputs([p]), name: "z", options: o)
        XCTAssertEqual(text(of: c), "ab\u{FFFD}\u{FEFF}c", "only the file's first BOM is skipped")
        XCTAssertEqual(c.stats.replacements, 1)
    }

    // MARK: Memory prediction

    func testOutOfMemoryIsPredictedWithASuggestion() throws {
        let cfg = ModelConfig(cell: .lstm, layers: 2, hidden: 512, embed: 256, vocabSize: 20_000)
        let e = MemoryEstimate(tokenCount: 1_000_000, bytesPerToken: 2, config: cfg, train: TrainConfig())
        XCTAssertEqual(e.tokens, 2_000_000)
        XCTAssertEqual(e.model, cfg.parameterCount * 4 * 3)          // rmsprop: params, grads, square_avg
        XCTAssertGreaterThan(e.workspace, 2500 * 20_000 * 4)         // at least the logits
        XCTAssertThrowsError(try OutOfMemoryPrediction.check("the model", needed: e.total, available: e.total - 1,
                                                             suggestion: "try --max-vocab 5000")) { err in
            XCTAssertTrue("\(err)".contains("--max-vocab 5000"), "\(err)")
            XCTAssertTrue("\(err)".contains("MB"), "\(err)")
        }
        XCTAssertNoThrow(try OutOfMemoryPrediction.check("the model", needed: 10, available: 100, suggestion: ""))
        // a rank's block of 25 of the 50 streams: the same model, half the activations
        let half = MemoryEstimate(tokenCount: 1_000_000, bytesPerToken: 2, config: cfg, train: TrainConfig(), streams: 25)
        XCTAssertEqual(half.model, e.model)
        XCTAssertEqual(half.workspace, NetworkSpec(cfg).activationBytes(rows: 50 * 25))
        XCTAssertLessThan(half.workspace, e.workspace * 6 / 10)
        // bf16 training adds the packed copies (two bf16 copies of every multiplied matrix) and its scratch
        var bf = TrainConfig(); bf.stepPrecision = .bf16
        let b = MemoryEstimate(tokenCount: 1_000_000, bytesPerToken: 2, config: cfg, train: bf)
        let spec = NetworkSpec(cfg)
        let matrices = spec.parameters.filter { $0.shape.count == 2 && $0.macsPerToken > 0 }.reduce(0) { $0 + $1.count }
        XCTAssertEqual(b.model, e.model)
        XCTAssertEqual(b.workspace - e.workspace, spec.bf16TrainingBytes(rows: 2500))
        XCTAssertGreaterThanOrEqual(b.workspace - e.workspace, 4 * matrices + 2 * 2500 * 20_000)
    }
}
