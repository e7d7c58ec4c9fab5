// HostileRoundTwoTests.swift — the second hostile round (issue 12) at the library level: the run-folder
// lock and the refusal to replace a run, the token cache against an in-place rewrite with its mtime
// restored, interruptible validation, the bounds table, worker threads that cannot start, and
// forged checkpoint metadata and weights. The same classes through the binary are in
// Tests/charrnnTests/HostileRoundTwoCLITests.swift.

import Foundation
import XCTest
@testable import CharRNN

final class HostileRoundTwoTests: RunFolderTestCase {
    override class var folderPrefix: String { "round2" }

    let model = ModelConfig(cell: .lstm, layers: 1, hidden: 8, vocabSize: 1)

    func fresh(_ name: String?, overwrite: Bool = false, maxIters: Int = 2) throws -> TrainingRun {
        let r = TrainingRun.Request(mode: .fresh(model: model, softmax: .full), corpus: [corpusPath], train: trainConfig(maxIters: maxIters),
                                    outDir: out, name: name, tokenCache: .off, overwrite: overwrite)
        return try TrainingRun(r)
    }

    func message(_ body: () throws -> Any, file: StaticString = #filePath, line: UInt = #line) -> String {
        do { _ = try body(); XCTFail("no error", file: file, line: line); return "" } catch {
            let d = "\(error)"
            XCTAssertFalse(d.contains("\n"), d, file: file, line: line)
            return d
        }
    }

    // MARK: - Run folders

    func testTheLockFileHoldsTheWritersPid() throws {
        let run = dir + "/r"
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        let lock = try RunLock(runDir: run)
        XCTAssertEqual(try String(contentsOfFile: run + "/.lock", encoding: .utf8), "\(getpid())\n")
        withExtendedLifetime(lock) {}
        // another process refused with this pid, and the lock dropped at exit: HostileRoundTwoCLITests
    }

    func testAnExistingRunIsReplacedOnlyWithOverwriteAndNeverTheInitFromSource() throws {
        do { _ = try fresh("keep").trainer.run { _ in } }
        let before = try Data(contentsOf: URL(fileURLWithPath: out + "/keep/best.safetensors"))
        let m = message { try self.fresh("keep") }
        XCTAssertTrue(m.contains("runs/keep: already holds a run") && m.contains("--overwrite"), m)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/keep/best.safetensors")), before, "the refused run touched the old one")
        do {
            let again = try fresh("keep", overwrite: true, maxIters: 1)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/keep/best.safetensors"), "--overwrite keeps the old best")
            _ = try again.trainer.run { _ in }
        }
        let ft = TrainingRun.Request(mode: .initFrom(checkpoint: out + "/keep", dropout: nil), corpus: [corpusPath],
                                     train: trainConfig(maxIters: 1), outDir: out, name: "keep", tokenCache: .off, overwrite: true)
        XCTAssertTrue(message { try TrainingRun(ft) }.contains("cannot replace its own source"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/keep/best.safetensors"))
    }

    func testARunNameIsOneFolderName() throws {
        for bad in ["", ".", "..", "../x", "a/b", "/tmp/x", "a\nb", "tab\there"] {
            XCTAssertTrue(message { try self.fresh(bad) }.contains("a run name must be one folder name"), bad)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a refused name created the output folder")
        XCTAssertNoThrow(try RunFolder.checkName("my run.2"))
    }

    func testAResumeOfARunElsewhereKeepsItsTokenCacheBesideIt() throws {
        let r = TrainingRun.Request(mode: .fresh(model: model, softmax: .full), corpus: [corpusPath], train: trainConfig(maxIters: 2),
                                    outDir: out, name: "c", tokenCache: .beside)
        do { _ = try TrainingRun(r).trainer.run { _ in } }
        let cwd = FileManager.default.currentDirectoryPath
        FileManager.default.changeCurrentDirectoryPath(dir)
        defer { FileManager.default.changeCurrentDirectoryPath(cwd) }
        // the request's outDir is the default "checkpoints": the cache must still go under runs/
        let resume = TrainingRun.Request(mode: .resume(checkpoint: "runs/c", maxIters: 4, epochs: nil, allowNewCorpus: false),
                                         corpus: [], tokenCache: .beside)
        var details: [String] = []
        do { _ = try TrainingRun(resume) { if case let .detail(s) = $0 { details.append(s) } }.trainer.run { _ in } }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/checkpoints"), details.joined(separator: "\n"))
    }

    // MARK: - Token cache

    func testAnInPlaceRewriteWithItsMtimeRestoredIsNotServedFromTheCache() throws {
        let cache = dir + "/cache"
        let old = String(repeating: "abcdefgh\n", count: 2000), new = String(repeating: "ABCDEFGH\n", count: 2000)
        let path = dir + "/c.txt"
        try old.write(toFile: path, atomically: false, encoding: .utf8)
        let (a, _, _) = try CorpusLoader.load(paths: [path], options: LoadOptions(), cacheDirectory: cache, minimumCacheBytes: 0)
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        // same size, same inode, the mtime put back as `touch -r` would
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.write(contentsOf: Data(new.utf8)); try h.close()
        var times = [st.st_atim, st.st_mtim]
        XCTAssertEqual(utimensat(AT_FDCWD, path, &times, 0), 0)
        let (b, _, outcome) = try CorpusLoader.load(paths: [path], options: LoadOptions(), cacheDirectory: cache, minimumCacheBytes: 0)
        guard case .built = outcome else { return XCTFail("the stale cache was used: \(outcome)") }
        XCTAssertNotEqual(a.vocabulary.tokens, b.vocabulary.tokens)
        XCTAssertEqual(b.contentHash, try CorpusHash.file(path))
    }

    // MARK: - Interrupts

    func testAStopRequestCutsAValidationShortAndSavesOnceWithoutAnother() throws {
        var t = trainConfig(maxIters: 4); t.evalEvery = 1; t.seq = 4; t.batch = 2; t.trainFrac = 0.5; t.valFrac = 0.5
        let c = try Corpus(bytes: Array(syntheticCorpusText().utf8), name: "c.txt")
        let tr = try Trainer(corpus: c, corpusInfo: CorpusInfo(name: "c", path: "c.txt", bytes: 0, tokens: c.count),
                             model: ModelConfig(hidden: 4, vocabSize: c.vocabulary.count), train: t, runDir: dir + "/v")
        XCTAssertGreaterThan(tr.batches.nval, 100)
        var polls = 0
        // false for the first iteration's check and two validation minibatches, then a stop request
        tr.shouldStop = { polls += 1; return polls > 3 }
        var validations = 0
        let s = try tr.run { if case .validation = $0 { validations += 1 } }
        XCTAssertTrue(s.interrupted)
        XCTAssertEqual(s.iterations, 1)
        XCTAssertEqual(validations, 0, "the cut validation was reported")
        XCTAssertLessThan(polls, 10, "the validation ran on after the stop request")
        XCTAssertNil(s.lastValLoss)
        XCTAssertEqual(try Checkpoint.load(path: tr.latestPath).meta.progress.iteration, 1)
    }

    // MARK: - Bounds

    func testIterationCountsBeyondTheBoundAreConfigErrorsNotTraps() throws {
        var t = TrainConfig(); t.epochs = 1e9
        XCTAssertThrowsError(try Trainer.total(t, ntrain: 10_000_000)) { XCTAssertTrue("\($0)".contains("more than \(Bounds.maxIterations) iterations"), "\($0)") }
        XCTAssertEqual(try Trainer.total(t, ntrain: 2), 2_000_000_000)
        t.maxIters = Int.max
        XCTAssertEqual(t.problem, "--max-iters must be between 1 and \(Bounds.maxIterations) (got \(Int.max))")
        t.maxIters = nil
        for (e, got) in [(Double.infinity, "inf"), (1e16, "1e+16"), (-1, "-1")] {
            t.epochs = e
            XCTAssertEqual(t.problem, "--epochs must be positive and at most 1000000000 (got \(got))")
        }
        t = TrainConfig(); t.lr = Float(1e39)
        XCTAssertEqual(t.problem, "--lr must be between 1e-10 and 100 (got inf)")
        t = TrainConfig(); t.seq = 4_611_686_018_427_387_904; t.batch = 4
        XCTAssertEqual(t.problem, "--seq must be between 1 and \(Bounds.maxSeq) (got 4611686018427387904)")
        t = TrainConfig(); t.threads = 100_000
        XCTAssertNotNil(t.problem)
    }

    func testSyntheticCharactersSkipTheSurrogates() {
        let chars = (0..<Bounds.maxSyntheticVocab).lazy.map(Bounds.syntheticCharacter)
        XCTAssertEqual(chars[35327], "\u{D7FF}")
        XCTAssertEqual(chars[35328], "\u{10000}")
        XCTAssertEqual(chars[Bounds.maxSyntheticVocab - 1], "\u{10FFFF}")
        XCTAssertEqual(Set((35000..<36000).map(Bounds.syntheticCharacter)).count, 1000)
    }

    func testAWorkerThreadThatCannotStartIsReportedNotWaitedFor() throws {
        // a stack no machine can map makes pthread_create fail as a full process table would
        let pool = WorkerPool(stackBytes: 1 << 56)
        XCTAssertThrowsError(try pool.setWidth(3)) { e in
            guard case .cannotStart(requested: 3, started: 1, code: _)? = e as? WorkerPoolError else { return XCTFail("\(e)") }
            XCTAssertTrue("\(e)".contains("cannot start worker thread 2 of 3"), "\(e)")
        }
        XCTAssertEqual(pool.width, 1, "the pool counts a thread that never ran")
        var ran = 0
        withUnsafeMutablePointer(to: &ran) { p in
            pool.run(parts: 1, context: UnsafeRawPointer(p)) { ctx, _ in UnsafeMutablePointer(mutating: ctx.assumingMemoryBound(to: Int.self)).pointee += 1 }
        }
        XCTAssertEqual(ran, 1)
        XCTAssertThrowsError(try pool.setWidth(Bounds.threadLimit + 1))
    }

    // MARK: - Forged checkpoints

    /// A valid tiny checkpoint's file, with raw metadata strings replaced and an optional tensor edit.
    func forged(_ meta: [String: String] = [:], tensor: ((String, inout [Float]) -> Void)? = nil) throws -> String {
        let c = try Corpus(bytes: Array(String(repeating: "abc ab\nba!\n", count: 30).utf8), name: "c.txt")
        var t = TrainConfig(); t.seq = 4; t.batch = 2; t.maxIters = 1
        let tr = try Trainer(corpus: c, corpusInfo: CorpusInfo(name: "c", path: "c.txt", bytes: 0, tokens: c.count),
                             model: ModelConfig(hidden: 3, vocabSize: c.vocabulary.count), train: t, runDir: dir + "/f\(UInt32.random(in: 0...UInt32.max))")
        _ = try tr.run { _ in }
        let file = try SafeTensorsFile.read(path: tr.latestPath)
        var w = SafeTensorsWriter()
        for name in file.names {
            let info = file.tensors[name]!
            if let tensor, info.dtype == .F32 {
                var v = try file.floats(name)
                tensor(name, &v)
                w.add(name, shape: info.shape, floats: v)
            } else {
                try file.rawBytes(name).withUnsafeBytes { w.add(name, dtype: info.dtype, shape: info.shape, bytes: $0) }
            }
        }
        w.metadata = file.metadata.merging(meta) { $1 }
        try w.write(to: [tr.latestPath])
        return tr.latestPath
    }

    func refusal(_ path: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        message({ () -> Any in
            let c = try Checkpoint.load(path: path)
            try Checkpoint.restore(c, model: CharRNNModel(config: c.meta.model, maxT: 1, maxB: 1))
            return c
        }, file: file, line: line)
    }

    func testNonFiniteWeightsAreRefused() throws {
        for bad in [Float.nan, .infinity, -.infinity] {
            let m = refusal(try forged(tensor: { name, v in if name == "decoder.weight" { v[3] = bad } }))
            XCTAssertTrue(m.contains("tensor decoder.weight holds a non-finite value (\(bad) at index 3)"), m)
        }
        let moments = try forged(tensor: { name, v in if name.hasPrefix("optimizer.") { v[0] = .nan } })
        let m = message { try ResumePoint(try Checkpoint.load(path: moments), maxIters: nil, epochs: nil) }
        XCTAssertTrue(m.contains("non-finite"), m)
    }

    func testForgedMetadataIsRefusedWithTheReason() throws {
        let vocab = try Checkpoint.load(path: try forged()).meta.vocabulary.tokens
        func vocabJSON(_ t: [String]) -> String { String(decoding: try! JSONEncoder().encode(t), as: UTF8.self) }
        var dup = vocab; dup[1] = dup[2]
        var empty = vocab; empty[1] = ""
        var multi = vocab; multi[1] = "ab"
        var unsorted = vocab; unsorted.swapAt(1, 2)
        let cases: [([String: String], String)] = [
            (["vocab": vocabJSON(dup)], "appears twice"),
            (["vocab": vocabJSON(empty)], "entry 1 is empty"),
            (["vocab": vocabJSON(multi)], "is 2 Unicode scalars"),
            (["vocab": vocabJSON(unsorted)], "out of code-point order"),
            (["format_version": "0"], "\"format_version\" is 0; versions start at 1"),
            (["format_version": "-1"], "\"format_version\" is -1"),
            (["cursor": "-1"], "\"cursor\" is -1"),
            (["train_batches": "0"], "\"train_batches\" is 0"),
            (["elapsed_sec": "1e19"], "\"elapsed_sec\" is 1e+19"),
            (["elapsed_sec": "-1e308"], "\"elapsed_sec\" is -1e+308"),
            (["best_val_loss": "lots"], "\"best_val_loss\" is not a number"),
        ]
        for (meta, expected) in cases {
            let m = refusal(try forged(meta))
            XCTAssertTrue(m.contains(expected), "\(meta): \(m)")
        }
        let model = try Checkpoint.load(path: try forged()).file.metadata["model"]!
        let m = refusal(try forged(["model": model.replacingOccurrences(of: "\"hidden\":3", with: "\"hidden\":32.5")]))
        XCTAssertTrue(m.contains("metadata \"model\" is not valid") && m.contains("32.5"), m)
        XCTAssertFalse(m.contains("not valid JSON"), m)
    }

    func testDevicesAreRefusedAsCheckpointsBeforeAnyRead() {
        for dev in ["/dev/zero", "/dev/urandom"] {
            XCTAssertTrue(message { try Checkpoint.load(path: dev) }.contains("is not a regular file"))
        }
    }

    // MARK: - Text

    func testNFCOfAHundredThousandCombiningMarksIsBounded() throws {
        // alternating ccc 230 and 220: canonical reordering has to move every other mark
        var text = "a"
        for i in 0..<100_000 { text.unicodeScalars.append(i % 2 == 0 ? "\u{301}" : "\u{323}") }
        text += "\nb\n"
        let t0 = Date()
        let c = try Corpus(bytes: Array(text.utf8), name: "marks.txt", unit: .scalar, normalize: .nfc)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 10, "NFC work is not bounded per piece")
        XCTAssertGreaterThan(c.count, 90_000)
        // ordinary text is normalized as before
        let e = try Corpus(bytes: Array("e\u{301}\u{323}x\n".utf8), name: "e.txt", unit: .scalar, normalize: .nfc)
        XCTAssertEqual(e.count, 4, "ẹ́ composes to U+1EB9 U+0301")
    }

    func testAnInvalidSequenceIsReportedWithoutTheValidByteAfterIt() {
        XCTAssertThrowsError(try Corpus(bytes: Array("ab".utf8) + [0xE4, 0xB8, 0x41], name: "x.txt")) {
            XCTAssertEqual("\($0)", "x.txt:1:3 (byte 2): invalid UTF-8 sequence 0xE4 0xB8")
        }
    }

    func testMinCountThatDropsEverythingSaysSo() throws {
        var o = LoadOptions(); o.minCount = 100_000
        let (c, _, _) = try CorpusLoader.load(paths: [corpusPath], options: o, cacheDirectory: nil)
        var t = trainConfig(maxIters: 1); t.minCount = 100_000
        let m = message { try Trainer(corpus: c, corpusInfo: CorpusInfo(name: "s", path: self.corpusPath, bytes: 0, tokens: c.count),
                                      model: ModelConfig(hidden: 4, vocabSize: c.vocabulary.count), train: t, runDir: self.dir + "/m") }
        XCTAssertTrue(m.contains("distinct characters occur fewer than --min-count 100000 times"), m)
        XCTAssertFalse(m.contains("only one distinct character (\"\")"), m)
    }

    func testSameSizeVocabulariesNameTheFirstDifference() throws {
        let path = try forged()
        let other = try Corpus(bytes: Array(String(repeating: "abd ab\nba!\n", count: 30).utf8), name: "c.txt")
        let m = message { try Trainer(resume: try Checkpoint.load(path: path), corpus: other, maxIters: nil, epochs: nil) }
        XCTAssertTrue(m.contains("both 6 tokens, first at id 5: \"d\" vs \"c\""), m)
        XCTAssertFalse(m.contains("6 vs 6"), m)
    }

    func testACacheThatCannotBeWrittenGivesTheSystemsReason() throws {
        let blocker = dir + "/not-a-folder"
        FileManager.default.createFile(atPath: blocker, contents: Data("x".utf8))
        let (_, _, outcome) = try CorpusLoader.load(paths: [corpusPath], options: LoadOptions(), cacheDirectory: blocker + "/cache",
                                                    minimumCacheBytes: 0)
        guard case let .writeFailed(_, message) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertFalse(message.contains("Domain") || message.contains("Code="), message)
        XCTAssertEqual(message, "\(blocker): cannot create folder: Not a directory")
    }

    func testEvalChecksMemoryBeforeGrowingItsBuffers() throws {
        let ck = try Checkpoint.load(path: try forged())
        let text = dir + "/t.txt"
        try String(repeating: "abc ab\nba!\n", count: 3000).write(toFile: text, atomically: true, encoding: .utf8)
        let ev = try Evaluator(checkpoint: ck, batch: 1_000_000, seq: 100_000_000)
        ev.availableBytes = { 1 << 20 }
        let m = message { try ev.evaluate(path: text) }
        XCTAssertTrue(m.contains("scoring \(text) with --batch 32999 --seq 1") && m.contains("use a smaller --batch"), m)
        ev.availableBytes = { nil }
        XCTAssertEqual(try ev.evaluate(path: text).scored, 32_999)
    }
}
