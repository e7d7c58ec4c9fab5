// RunFolderTests.swift — the run folder: the lock holds the writer's pid, an existing run is replaced
// only with --overwrite (never the --init-from source), a run name is one folder name, and a run
// resumed from elsewhere keeps its token cache beside it.

import Foundation
import XCTest
@testable import CharRNN

final class RunFolderTests: RunFolderTestCase {
    override class var folderPrefix: String { "runfolder" }

    func testTheLockFileHoldsTheWritersPid() throws {
        let run = dir + "/r"
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        let lock = try RunLock(runDir: run)
        XCTAssertEqual(try String(contentsOfFile: run + "/.lock", encoding: .utf8), "\(getpid())\n")
        withExtendedLifetime(lock) {}
        // another process refused with this pid, and the lock dropped at exit: RunFolderCLITests
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
        let r = TrainingRun.Request(mode: .fresh(model: tinyModel, softmax: .full), corpus: [corpusPath], train: trainConfig(maxIters: 2),
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
}
