// RunFolderCLITests.swift — run folders through the binary: a second process on a run is refused with
// the holder's pid and the lock dies with it; an existing run needs --overwrite, names are one folder;
// a resume warns for every flag it ignores.

import Foundation
import XCTest

final class RunFolderCLITests: HostileCLITestCase {
    func testASecondProcessOnARunIsRefusedWithTheHoldersPidAndTheLockDiesWithIt() throws {
        let dir = workDir()
        let first = try startLongRun(dir, name: "keep")
        let corpus = try writeCorpus(dir)
        for args in [["train", corpus, "--name", "keep", "--overwrite", "--max-iters", "2"] + tiny,
                     ["train", "--resume", "checkpoints/keep", "--max-iters", "2"]] {
            let r = try run(args, cwd: dir)
            assertOneLineError(r, contains: "checkpoints/keep: another charrnn process (pid \(first.0.processIdentifier)) is writing this run")
        }
        kill(first.0.processIdentifier, SIGKILL)
        first.0.waitUntilExit()
        // no stale lock after a kill -9: the run resumes (to two iterations past the last logged one,
        // which is at or after the latest checkpoint)
        let log = try String(contentsOfFile: dir + "/checkpoints/keep/loss.csv", encoding: .utf8)
        let last = log.split(separator: "\n").last.flatMap { Int($0.split(separator: ",")[0]) } ?? 0
        let r = try run(["train", "--resume", "checkpoints/keep", "--max-iters", String(last + 2)], cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
    }

    func testAnExistingRunNeedsOverwriteAndNamesAreOneComponent() throws {
        let dir = workDir()
        _ = try trained(dir, name: "keep")
        let corpus = "corpus.txt"
        assertOneLineError(try run(["train", corpus, "--name", "keep", "--max-iters", "2"] + tiny, cwd: dir),
                           contains: "checkpoints/keep: already holds a run", "--overwrite")
        assertOneLineError(try run(["train", corpus, "--name", "keep", "--init-from", "checkpoints/keep", "--overwrite", "--max-iters", "2"], cwd: dir),
                           contains: "cannot replace its own source")
        XCTAssertEqual(try run(["train", corpus, "--name", "keep", "--overwrite", "--max-iters", "2"] + tiny, cwd: dir).status, 0)
        for bad in ["", ".", "..", "../x"] {
            let r = try run(["train", corpus, "--name", bad] + tiny, cwd: dir)
            XCTAssertEqual(r.status, 64, "--name \(bad.debugDescription): \(r.err)")
            XCTAssertTrue(r.err.contains("a run name must be one folder name"), r.err)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["checkpoints", "corpus.txt"])
        // a run name with a space is quoted in the commands printed for it
        let spaced = try run(["train", corpus, "--name", "my run", "--max-iters", "2"] + tiny, cwd: dir)
        XCTAssertTrue(spaced.err.contains("sample with: charrnn sample --checkpoint 'checkpoints/my run'"), spaced.err)
    }

    func testResumeWarnsForEveryFlagItIgnores() throws {
        let dir = workDir()
        let run = try trained(dir)
        let r = try self.run(["train", "--resume", run, "--max-iters", "6", "--hidden", "64", "--model", "gru", "--lr", "0.5", "--batch", "3"], cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        for flag in ["--hidden", "--model", "--lr", "--batch"] {
            XCTAssertTrue(r.err.contains("warning: \(flag) ignored: --resume continues the run"), "\(flag): \(r.err)")
        }
        let ft = try self.run(["train", "corpus.txt", "--init-from", run, "--name", "ft", "--max-iters", "2", "--softmax", "adaptive", "--max-vocab", "5"], cwd: dir)
        XCTAssertEqual(ft.status, 0, ft.err)
        for flag in ["--softmax", "--max-vocab"] {
            XCTAssertTrue(ft.err.contains("warning: \(flag) ignored: --init-from takes"), "\(flag): \(ft.err)")
        }
    }
}
