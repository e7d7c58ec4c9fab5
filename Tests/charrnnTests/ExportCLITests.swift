// ExportCLITests — `charrnn export` as a user runs it: both formats from a run folder, the refusals
// (existing output without --force, a directory, a missing folder, a checkpoint that fails
// validation, --weights with ONNX) each as one line and a non-zero exit with no file left, and a
// full disk (a 16 KiB tmpfs, root only). The numerical checks of the files are scripts/export-test.sh's.

import Foundation
import XCTest

final class ExportCLITests: HostileCLITestCase {
    /// A trained run folder `checkpoints/r` in a fresh work folder.
    func trainedRun() throws -> String {
        let dir = workDir()
        let corpus = try writeCorpus(dir, lines: 60)
        let r = try run(["train", corpus, "--max-iters", "4", "--eval-every", "4", "--name", "r"] + small, cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        return dir
    }

    func files(_ dir: String) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() }

    func testExportsBothFormatsAndRefusesToOverwrite() throws {
        let dir = try trainedRun()
        let onnx = try run(["export", "checkpoints/r", "--format", "onnx", "-o", "m.onnx"], cwd: dir)
        XCTAssertEqual(onnx.status, 0, onnx.err)
        XCTAssertTrue(onnx.err.contains("wrote m.onnx"), onnx.err)
        let bytes = try XCTUnwrap(FileManager.default.contents(atPath: dir + "/m.onnx"))
        XCTAssertEqual(Array(bytes.prefix(2)), [0x08, 0x08], "ModelProto starts with ir_version 8")
        for w in ["fp32", "bf16"] {
            let html = try run(["export", "checkpoints/r/best.safetensors", "--format", "html", "--weights", w, "-o", "m-\(w).html"], cwd: dir)
            XCTAssertEqual(html.status, 0, html.err)
        }
        let inferred = try run(["export", "checkpoints/r", "-o", "inferred.HTML"], cwd: dir)
        XCTAssertEqual(inferred.status, 0, inferred.err)
        XCTAssertTrue(inferred.err.contains("(html,"), "the extension names the format: \(inferred.err)")
        let fp32 = try String(contentsOfFile: dir + "/m-fp32.html", encoding: .utf8)
        XCTAssertTrue(fp32.hasPrefix("<!doctype html>") && fp32.contains("window.charrnn"))
        let again = try run(["export", "checkpoints/r", "--format", "onnx", "-o", "m.onnx"], cwd: dir)
        assertOneLineError(again, contains: "m.onnx", "already exists", "--force")
        XCTAssertEqual(FileManager.default.contents(atPath: dir + "/m.onnx"), bytes, "the existing file is untouched")
        let forced = try run(["export", "checkpoints/r", "--format", "html", "-o", "m.onnx", "--force"], cwd: dir)
        XCTAssertEqual(forced.status, 0, forced.err)
        XCTAssertNotEqual(FileManager.default.contents(atPath: dir + "/m.onnx"), bytes, "--force replaces it")
        XCTAssertEqual(files(dir).filter { $0.contains(".tmp-") }, [])
    }

    func testBadInputIsOneLineAndLeavesNoFile() throws {
        let dir = try trainedRun()
        assertOneLineError(try run(["export", "checkpoints/r", "--format", "onnx", "-o", "no/such/m.onnx"], cwd: dir),
                           contains: "no/such/m.onnx", "No such file or directory")
        assertOneLineError(try run(["export", "checkpoints/r", "--format", "onnx", "-o", "checkpoints"], cwd: dir), contains: "is a directory")
        assertOneLineError(try run(["export", "checkpoints/nothing", "--format", "onnx", "-o", "x.onnx"], cwd: dir))
        let r = try run(["export", "checkpoints/r", "--format", "onnx", "--weights", "bf16", "-o", "x.onnx"], cwd: dir)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("--weights applies to --format html"), r.err)
        let noFormat = try run(["export", "checkpoints/r", "-o", "x.bin"], cwd: dir)
        XCTAssertNotEqual(noFormat.status, 0)
        XCTAssertTrue(noFormat.err.contains("give --format onnx or --format html"), noFormat.err)
        // a checkpoint that fails validation: decoder.bias[0] set to NaN, and a truncated copy
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: dir + "/checkpoints/r/best.safetensors"))
        let n = Int(bytes.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        let header = try XCTUnwrap(JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + n))) as? [String: Any])
        let begin = try XCTUnwrap(((header["decoder.bias"] as? [String: Any])?["data_offsets"] as? [Int])?.first)
        bytes.replaceSubrange((8 + n + begin)..<(8 + n + begin + 4), with: [0x00, 0x00, 0xc0, 0x7f])
        FileManager.default.createFile(atPath: dir + "/nan.safetensors", contents: bytes)
        FileManager.default.createFile(atPath: dir + "/short.safetensors", contents: bytes.prefix(bytes.count - 9))
        for bad in ["nan.safetensors", "short.safetensors"] {
            let e = try run(["export", bad, "--format", "html", "-o", "x.html"], cwd: dir)
            assertOneLineError(e, contains: bad)
            if bad.hasPrefix("nan") { XCTAssertTrue(e.err.contains("non-finite"), e.err) }
        }
        XCTAssertFalse(files(dir).contains { $0.hasPrefix("x.") || $0.contains(".tmp-") }, "\(files(dir))")
    }

    func testFullDiskIsOneLineAndLeavesNoFile() throws {
        let dir = try trainedRun()
        let full = dir + "/full"
        try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
        try mountTmpfs(full, options: "size=16k")             // unmounted by tearDown
        let r = try run(["export", "checkpoints/r", "--format", "html", "-o", "full/m.html"], cwd: dir)
        assertOneLineError(r, contains: "full/m.html", "No space left on device")
        XCTAssertEqual(files(full), [], "no partial or temporary file on the full disk")
    }
}
