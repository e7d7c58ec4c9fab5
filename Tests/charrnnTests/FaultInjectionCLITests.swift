// FaultInjectionCLITests.swift — faults injected into real runs: NaN/Inf gradients (CHARRNN_FAULT_NONFINITE,
// debug builds), a full disk and a read-only folder on small tmpfs mounts (root only), a corpus replaced
// during training. No checkpoint is lost.

import Foundation
import XCTest

final class FaultInjectionCLITests: HostileCLITestCase {
    func testNaNGradientStopsTheRunAndSkipNonFiniteSkipsIt() throws {
        let dir = workDir()
        let corpus = writeShortCorpus(dir)
        let r = try run(["train", corpus, "--max-iters", "30", "--eval-every", "10", "--name", "nan"] + tiny, cwd: dir,
                        env: ["CHARRNN_FAULT_NONFINITE": "15"])
        assertLastLineError(r, contains: "training diverged at iteration 15", "the last good checkpoint is checkpoints/nan/latest.safetensors")
        let s = try run(["sample", "--checkpoint", "checkpoints/nan/latest.safetensors", "--length", "20", "--seed", "2"], cwd: dir)
        XCTAssertEqual(s.status, 0, s.err)

        let k = try run(["train", corpus, "--max-iters", "30", "--eval-every", "10", "--name", "skip", "--skip-nonfinite"] + tiny,
                        cwd: dir, env: ["CHARRNN_FAULT_NONFINITE": "15,16"])
        XCTAssertEqual(k.status, 0, k.err)
        XCTAssertTrue(k.err.contains("warning: iteration 15: non-finite"), k.err)
        XCTAssertTrue(k.err.contains("skipped 2 non-finite steps"), k.err)

        let many = try run(["train", corpus, "--max-iters", "40", "--eval-every", "5", "--name", "many", "--skip-nonfinite"] + tiny,
                           cwd: dir, env: ["CHARRNN_FAULT_NONFINITE": (12...40).map(String.init).joined(separator: ",")])
        XCTAssertNotEqual(many.status, 0)
        XCTAssertTrue(many.err.split(separator: "\n").last!.hasPrefix("error: training diverged: 10 steps in a row"), many.err)
    }

    func testDiskFullWhileSavingKeepsThePreviousCheckpoint() throws {
        let dir = workDir()
        let corpus = writeShortCorpus(dir)
        let args = ["train", corpus, "--eval-every", "10", "--name", "r"] + tiny
        // Measure one checkpoint, then give the run room for two (best + latest) but not a third (the temp file).
        let probe = try run(args + ["--max-iters", "10"], cwd: dir)
        XCTAssertEqual(probe.status, 0, probe.err)
        let size = try FileManager.default.attributesOfItem(atPath: dir + "/checkpoints/r/latest.safetensors")[.size] as! Int
        let full = dir + "/full"
        try mountTmpfs(full, options: "size=\((size * 5 / 2 + 8191) / 4096 * 4096)")
        let r = try run(args + ["--max-iters", "40", "--out", full], cwd: dir)
        assertLastLineError(r, contains: "full/r/", "No space left on device")
        let left = try FileManager.default.contentsOfDirectory(atPath: full + "/r").sorted()
        XCTAssertEqual(left, [".lock", "best.safetensors", "latest.safetensors", "loss.csv"], "no temp file may be left behind")
        let s = try run(["sample", "--checkpoint", full + "/r/latest.safetensors", "--length", "10", "--seed", "1"], cwd: dir)
        XCTAssertEqual(s.status, 0, "the previous checkpoint must still load: \(s.err)")
    }

    func testReadOnlyOutputFolderIsAOneLineError() throws {
        let dir = workDir()
        let corpus = writeShortCorpus(dir)
        let ro = dir + "/ro"
        try mountTmpfs(ro, options: "ro,size=64k")
        let r = try run(["train", corpus, "--out", ro, "--max-iters", "5"] + tiny, cwd: dir)
        assertOneLineError(r, contains: "ro/corpus-", "cannot create run directory")
    }

    func testCorpusReplacedDuringTraining() throws {
        let dir = workDir()
        let corpus = writeShortCorpus(dir)
        let s = try start(["train", corpus, "--max-iters", "1000000", "--eval-every", "20", "--name", "live"] + tiny, cwd: dir)
        let p = s.0
        let latest = dir + "/checkpoints/live/latest.safetensors"
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: latest) && Date() < deadline && p.isRunning { usleep(20_000) }
        // Overwrite the corpus in place (same inode, new bytes) while the run is going.
        let fh = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/" + corpus))
        try fh.truncate(atOffset: 0)
        try fh.write(contentsOf: Data(String(repeating: "A different corpus entirely.\n", count: 100).utf8))
        try fh.close()
        usleep(300_000)
        XCTAssertTrue(p.isRunning, "training must not crash when its corpus file changes (it holds the tokens in memory)")
        p.interrupt()
        let stopped = finish(s)
        XCTAssertEqual(stopped.status, 130, stopped.err)
        let r = try run(["train", "--resume", "checkpoints/live"], cwd: dir)
        assertOneLineError(r, contains: "the corpus changed")
    }
}
