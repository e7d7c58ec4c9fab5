// RunFolderSafetyTests.swift — a run writes only files it owns (issue 22, "Data and files"): the lock
// is never followed or truncated through a link, the loss log never writes into an inode it did not
// create, a resume refuses a folder of links into another run, a folder without a checkpoint is
// reclaimed, removals never recurse, and the corpus path a checkpoint records finds the corpus again.

import Foundation
import XCTest
@testable import CharRNN

final class RunFolderSafetyTests: RunFolderTestCase {
    override class var folderPrefix: String { "safety" }

    let model = ModelConfig(cell: .lstm, layers: 1, hidden: 16, dropout: 0, vocabSize: 1)

    func train(_ name: String, maxIters: Int = 10) throws -> String {
        let r = TrainingRun.Request(mode: .fresh(model: model, softmax: .full), corpus: [corpusPath],
                                    train: trainConfig(maxIters: maxIters), outDir: out, name: name, tokenCache: .off)
        let run = try TrainingRun(r)
        _ = try run.trainer.run { _ in }
        return run.trainer.runDir
    }

    func resume(_ dir: String, maxIters: Int) throws -> TrainingRun {
        try TrainingRun(TrainingRun.Request(mode: .resume(checkpoint: dir, maxIters: maxIters, epochs: nil, allowNewCorpus: false),
                                            corpus: [], outDir: out, tokenCache: .off))
    }

    func bytes(_ path: String) -> [UInt8] { (try? AtomicFile.read(from: path)) ?? [] }

    func isLink(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFLNK
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "" } catch { return "\(error)" }
    }

    // MARK: - The lock

    func testALockThatIsASymbolicLinkIsRefusedAndItsTargetKeepsItsBytes() throws {
        let precious = dir + "/precious"
        try "keep me\n".write(toFile: precious, atomically: true, encoding: .utf8)
        let run = out + "/x"
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        XCTAssertEqual(symlink(precious, run + "/.lock"), 0)
        let m = message { _ = try RunFolder.claimNew(run, replacing: false) }
        XCTAssertTrue(m.contains(".lock: is a symbolic link") && m.contains("precious"), m)
        XCTAssertFalse(m.contains("\n"))
        XCTAssertEqual(bytes(precious), Array("keep me\n".utf8))
        // --overwrite does not change that, and a dangling link is not created through either
        XCTAssertThrowsError(try RunFolder.claimNew(run, replacing: true))
        unlink(run + "/.lock")
        XCTAssertEqual(symlink(dir + "/nowhere", run + "/.lock"), 0)
        XCTAssertThrowsError(try RunLock(runDir: run))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/nowhere"))
    }

    func testALockWithAnotherHardLinkOrOfAnotherTypeIsRefused() throws {
        let other = dir + "/other"
        try "pid of someone\n".write(toFile: other, atomically: true, encoding: .utf8)
        let run = out + "/h"
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        XCTAssertEqual(link(other, run + "/.lock"), 0)
        let m = message { _ = try RunLock(runDir: run) }
        XCTAssertTrue(m.contains("hard link (2 names"), m)
        XCTAssertEqual(bytes(other), Array("pid of someone\n".utf8))
        // a FIFO named .lock: refused at once (opening it must not block)
        unlink(run + "/.lock")
        XCTAssertEqual(mkfifo(run + "/.lock", 0o644), 0)
        let f = message { _ = try RunLock(runDir: run) }
        XCTAssertTrue(f.contains("not a regular file"), f)
    }

    // MARK: - The loss log

    func testTheLossLogNeverWritesIntoALinkedFile() throws {
        let target = dir + "/target.csv"
        let original = Array("do not touch\n".utf8)
        try AtomicFile.write(original, to: target)
        // a symbolic link, then a hard link, at the log's name: the other file keeps its bytes
        for makeLink in [{ symlink(target, self.dir + "/loss.csv") }, { link(target, self.dir + "/loss.csv") }] {
            unlink(dir + "/loss.csv")
            XCTAssertEqual(makeLink(), 0)
            var log: LossLog? = try LossLog(path: dir + "/loss.csv", keepThrough: nil)
            log?.append(iteration: 1, epoch: 0.1, trainLoss: 2, valLoss: nil, lr: 0.1, gradNorm: 1, tokensPerSec: 1, elapsed: 1)
            log = nil
            XCTAssertEqual(bytes(target), original)
            XCTAssertFalse(isLink(dir + "/loss.csv"))
            let rows = String(decoding: bytes(dir + "/loss.csv"), as: UTF8.self).split(separator: "\n")
            XCTAssertEqual(rows.first.map(String.init), LossLog.header)
            XCTAssertEqual(rows.count, 2)
        }
    }

    func testResumingTheLossLogKeepsTheRowsUpToTheCheckpointByteForByte() throws {
        let path = dir + "/loss.csv"
        let text = LossLog.header + "\n1,0.1000,2.000000,,0.1,1.000000,1.0,1.000\n2,0.2000,1.900000,,0.1,1.000000,1.0,2.000\n3,0.3"
        try AtomicFile.write(Array(text.utf8), to: path)
        var log: LossLog? = try LossLog(path: path, keepThrough: 1)
        log = nil
        _ = log
        XCTAssertEqual(String(decoding: bytes(path), as: UTF8.self), LossLog.header + "\n1,0.1000,2.000000,,0.1,1.000000,1.0,1.000\n")
    }

    // MARK: - Resume

    func testResumingACopyMadeOfSymbolicLinksIsRefusedAndTheOriginalIsUntouched() throws {
        let base = try train("base")
        let fork = out + "/fork"
        try FileManager.default.createDirectory(atPath: fork, withIntermediateDirectories: true)
        for n in [".lock", "loss.csv", "best.safetensors", "latest.safetensors"] {     // cp -as
            XCTAssertEqual(symlink(base + "/" + n, fork + "/" + n), 0)
        }
        let before = [".lock", "loss.csv", "best.safetensors", "latest.safetensors"].map { bytes(base + "/" + $0) }
        let m = message { _ = try resume(fork, maxIters: 20) }
        XCTAssertTrue(m.contains("are symbolic links") && m.contains("loss.csv") && m.contains("cp -a"), m)
        XCTAssertEqual([".lock", "loss.csv", "best.safetensors", "latest.safetensors"].map { bytes(base + "/" + $0) }, before)

        // once the links are the fork's own copies, it resumes and writes only its own files
        for n in ["loss.csv", "best.safetensors", "latest.safetensors"] {
            let b = bytes(fork + "/" + n)
            unlink(fork + "/" + n)
            try AtomicFile.write(b, to: fork + "/" + n)
        }
        unlink(fork + "/.lock")
        let run = try resume(fork, maxIters: 20)
        _ = try run.trainer.run { _ in }
        XCTAssertEqual([".lock", "loss.csv", "best.safetensors", "latest.safetensors"].map { bytes(base + "/" + $0) }, before)
        XCTAssertNotEqual(bytes(fork + "/latest.safetensors"), before[3])
    }

    func testACopyMadeOfHardLinksResumesOnceItsLockIsItsOwn() throws {
        let base = try train("base")
        let fork = out + "/fork"
        try FileManager.default.createDirectory(atPath: fork, withIntermediateDirectories: true)
        for n in [".lock", "loss.csv", "best.safetensors", "latest.safetensors"] {     // cp -al
            XCTAssertEqual(link(base + "/" + n, fork + "/" + n), 0)
        }
        let before = ["loss.csv", "best.safetensors", "latest.safetensors"].map { bytes(base + "/" + $0) }
        let m = message { _ = try resume(fork, maxIters: 20) }
        XCTAssertTrue(m.contains(".lock is a hard link"), m)
        unlink(fork + "/.lock")
        let run = try resume(fork, maxIters: 20)
        _ = try run.trainer.run { _ in }
        // the loss log and the checkpoints were replaced by name: the base run's inodes are unchanged
        XCTAssertEqual(["loss.csv", "best.safetensors", "latest.safetensors"].map { bytes(base + "/" + $0) }, before)
        XCTAssertGreaterThan(bytes(fork + "/loss.csv").count, before[0].count)
    }

    // MARK: - A folder without a checkpoint

    func testAFolderWithoutACheckpointIsReclaimedAndResumingItSaysSo() throws {
        let run = out + "/stopped"
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        try AtomicFile.write(Array("12345\n".utf8), to: run + "/.lock")
        try AtomicFile.write(Array((LossLog.header + "\n1,0.1,2,,0.1,1,1,1\n").utf8), to: run + "/loss.csv")
        XCTAssertFalse(RunFolder(run).holdsRun)
        let m = message { _ = try resume(run, maxIters: 20) }
        XCTAssertTrue(m.contains("stopped before its first checkpoint") && m.contains("same --name"), m)
        XCTAssertEqual(try train("stopped"), run)
        XCTAssertTrue(RunFolder(run).holdsRun)
        // a folder with a checkpoint is still a run
        XCTAssertThrowsError(try RunFolder.claimNew(run, replacing: false))
    }

    func testARunRefusedAfterItsLogWasCreatedLeavesNothingBehind() throws {
        let run = out + "/refused/deeper"
        let lock = try RunFolder.claimNew(run, replacing: false)
        _ = try LossLog(path: RunFolder(run).lossLog, keepThrough: nil)
        struct Refused: Error {}
        XCTAssertThrowsError(try lock.abandoningOnError { throw Refused() })
        // every folder the claim made (runs, refused, deeper) goes; the one that was there stays
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        XCTAssertTrue(FileManager.default.fileExists(atPath: corpusPath))
    }

    func testOverwriteAndCleanUpNeverRemoveAFolderRecursively() throws {
        let run = try train("r")
        // a folder where a checkpoint would be: --overwrite refuses it and keeps what is inside
        unlink(run + "/best.safetensors")
        try FileManager.default.createDirectory(atPath: run + "/best.safetensors", withIntermediateDirectories: true)
        try AtomicFile.write([1, 2, 3], to: run + "/best.safetensors/keep")
        let m = message { _ = try RunFolder.claimNew(run, replacing: true) }
        XCTAssertTrue(m.contains("cannot remove it"), m)
        XCTAssertEqual(bytes(run + "/best.safetensors/keep"), [1, 2, 3])
        // a folder named like a temp file is not a temp file
        try FileManager.default.createDirectory(atPath: run + "/.latest.safetensors.tmp-1-2", withIntermediateDirectories: true)
        try AtomicFile.write([4], to: run + "/.latest.safetensors.tmp-1-2/keep")
        try AtomicFile.write([5], to: run + "/.loss.csv.tmp-1-3")
        XCTAssertEqual(RunContinuation.removeStaleTempFiles(runDir: run), [".loss.csv.tmp-1-3"])
        XCTAssertEqual(bytes(run + "/.latest.safetensors.tmp-1-2/keep"), [4])
    }

    func testOverwriteRemovesLinksNotTheirTargets() throws {
        let run = try train("r")
        let target = dir + "/elsewhere.safetensors"
        let b = bytes(run + "/best.safetensors")
        try AtomicFile.write(b, to: target)
        unlink(run + "/best.safetensors")
        XCTAssertEqual(symlink(target, run + "/best.safetensors"), 0)
        _ = try RunFolder.claimNew(run, replacing: true)
        XCTAssertEqual(bytes(target), b)
        XCTAssertFalse(RunFolder.exists(run + "/best.safetensors"))
    }

    // MARK: - The recorded corpus

    func testTheRecordedCorpusPathIsAbsoluteAndOldRelativeOnesSayWhatToPass() throws {
        let run = try train("abs")
        let meta = try Checkpoint.load(path: run + "/latest.safetensors").meta
        XCTAssertTrue(meta.corpus.path.hasPrefix("/"), meta.corpus.path)
        XCTAssertEqual(meta.corpus.path, corpusPath)

        XCTAssertEqual(RunContinuation.absolutePath("/a/b"), "/a/b")
        let cwd = FileManager.default.currentDirectoryPath
        XCTAssertEqual(RunContinuation.absolutePath("./data/x.txt"), (cwd == "/" ? "" : cwd) + "/data/x.txt")
        XCTAssertEqual(RunContinuation.absolutePath("data/x.txt"), (cwd == "/" ? "" : cwd) + "/data/x.txt")

        // a checkpoint written before: its relative path is not found from here
        var old = meta.corpus
        old.path = "no-such-folder-\(getpid())/input.txt"
        let m = message { _ = try RunContinuation.recordedCorpus(old, checkpoint: "runs/x") }
        XCTAssertTrue(m.contains("relative") && m.contains("charrnn train --resume runs/x PATH"), m)
        old.path = corpusPath
        XCTAssertEqual(try RunContinuation.recordedCorpus(old, checkpoint: "runs/x"), [corpusPath])
    }
}

/// The hostile round of the same class: links, concurrent runs, odd path encodings.
final class RunFolderHostileTests: RunFolderTestCase {
    override class var folderPrefix: String { "hostile" }

    func testANewRunRefusesARunFolderThatIsASymbolicLinkEvenWithOverwrite() throws {
        let elsewhere = dir + "/elsewhere"
        try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: true)
        try AtomicFile.write([7], to: elsewhere + "/best.safetensors")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        XCTAssertEqual(symlink(elsewhere, out + "/x"), 0)
        for replacing in [false, true] {
            do { _ = try RunFolder.claimNew(out + "/x", replacing: replacing); XCTFail("claimed a link") } catch {
                XCTAssertTrue("\(error)".contains("is a symbolic link"), "\(error)")
            }
        }
        XCTAssertEqual(try AtomicFile.read(from: elsewhere + "/best.safetensors"), [7])
        XCTAssertFalse(FileManager.default.fileExists(atPath: elsewhere + "/.lock"))
    }

    func testADefaultNameTakenByARunOrByAnotherWriterGetsASuffix() throws {
        let base = out + "/c-20260101-000000"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        try AtomicFile.write([1], to: base + "/latest.safetensors")
        let (second, lock2) = try RunFolder.claimUnused(base)
        XCTAssertEqual(second, base + "-2")
        // another process holds -3's lock (a run that has not saved yet): -3 is skipped, not reclaimed
        let third = base + "-3"
        try FileManager.default.createDirectory(atPath: third, withIntermediateDirectories: true)
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        holder.arguments = ["python3", "-c", "import fcntl,sys,time; f=open(sys.argv[1],'w'); fcntl.lockf(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)", third + "/.lock"]
        let pipe = Pipe()
        holder.standardOutput = pipe
        try holder.run()
        defer { holder.terminate(); holder.waitUntilExit() }
        _ = pipe.fileHandleForReading.availableData                  // "held"
        XCTAssertTrue(RunLock.isHeld(runDir: third))
        // -2 now holds a run too: the next default claim goes past -2 and the held -3
        try AtomicFile.write([1], to: second + "/latest.safetensors")
        withExtendedLifetime(lock2) {}
        let (fourth, _) = try RunFolder.claimUnused(base)
        XCTAssertEqual(fourth, base + "-4")
        XCTAssertEqual(try AtomicFile.read(from: second + "/latest.safetensors"), [1])
    }

    func testErrorsNameOddPathsOnOneLine() throws {
        let nl = "a\nb.txt"
        XCTAssertFalse("\(TextError.nulByte(file: nl, line: 1, column: 2, byteOffset: 1))".contains("\n"))
        XCTAssertTrue("\(TextError.changed(file: nl, offset: 3))".hasPrefix(#""a\nb.txt": "#))
        XCTAssertFalse("\(FileIOError(path: "x\u{1B}[2Jy", operation: "write", code: ENOSPC))".contains("\u{1B}"))
        XCTAssertFalse("\(CheckpointError(file: "r\nx", message: "m"))".contains("\n"))
        XCTAssertEqual(displayPath("plain/päth.txt"), "plain/päth.txt")
        // a name whose bytes are not UTF-8 arrives with U+FFFD: the error says why it is not found
        let e = TextError.cannotRead("caf\u{FFFD}.txt", code: ENOENT)
        XCTAssertTrue("\(e)".contains("not UTF-8"), "\(e)")
        XCTAssertFalse("\(TextError.cannotRead("cafe.txt", code: ENOENT))".contains("UTF-8"))
    }

    func testAFolderThisProcessIsWritingIsNeitherReclaimedNorUnlocked() throws {
        // a library caller: one run claimed and logging, no checkpoint yet; a second claim in the
        // same process must not reclaim it (removing its live loss.csv) nor drop its lock
        let run = out + "/c-20260101-000000"
        let first = try RunFolder.claimNew(run, replacing: false)
        _ = try LossLog(path: RunFolder(run).lossLog, keepThrough: nil)
        let m = { () -> String in do { _ = try RunFolder.claimNew(run, replacing: true); return "" } catch { return "\(error)" } }()
        XCTAssertTrue(m.contains("this process is already writing"), m)
        XCTAssertTrue(FileManager.default.fileExists(atPath: RunFolder(run).lossLog))
        XCTAssertTrue(RunLock.isHeld(runDir: run))
        let (other, _) = try RunFolder.claimUnused(run)
        XCTAssertEqual(other, run + "-2")
        // the kernel lock is still there: another process is refused
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", "-c", "import fcntl,sys\ntry:\n  fcntl.lockf(open(sys.argv[1],'r+'), fcntl.LOCK_EX | fcntl.LOCK_NB); sys.exit(0)\nexcept OSError: sys.exit(3)", run + "/.lock"]
        try probe.run(); probe.waitUntilExit()
        XCTAssertEqual(probe.terminationStatus, 3)
        withExtendedLifetime(first) {}
    }

    func testRunNamesWithBidirectionalControlsAreRefusedAndOtherUnicodeIsFine() throws {
        for bad in ["run\u{202E}txt.exe", "a\u{2066}b", "\u{200F}x"] {
            XCTAssertThrowsError(try RunFolder.checkName(bad), bad.debugDescription) { e in
                XCTAssertTrue("\(e)".contains("bidirectional"), "\(e)")
            }
        }
        for good in ["café", "日本語", "e\u{301}", "👩‍💻", "a b"] { XCTAssertNoThrow(try RunFolder.checkName(good), good) }
    }

    func testAStaleLockFileAloneIsNoRunAndAFreshRunReusesIt() throws {
        let run = out + "/x"
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        try AtomicFile.write(Array("99999\n".utf8), to: run + "/.lock")
        let lock = try RunFolder.claimNew(run, replacing: false)
        XCTAssertEqual(String(decoding: try AtomicFile.read(from: run + "/.lock"), as: UTF8.self), "\(getpid())\n")
        withExtendedLifetime(lock) {}
    }
}
