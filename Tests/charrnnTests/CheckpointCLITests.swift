// CheckpointCLITests.swift — hostile checkpoints through the binary: a folder, a foreign or mismatched
// safetensors file; a prime of only unknown characters.

import Foundation
import XCTest

final class CheckpointCLITests: HostileCLITestCase {
    func testDirectoryAsCheckpointAndForeignOrMismatchedCheckpoints() throws {
        let dir = workDir()
        try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
        assertOneLineError(try run(["sample", "--checkpoint", "empty"], cwd: dir), contains: "empty: run directory has no best.safetensors or latest.safetensors")
        try FileManager.default.createDirectory(atPath: dir + "/odd/best.safetensors", withIntermediateDirectories: true)
        assertOneLineError(try run(["sample", "--checkpoint", "odd"], cwd: dir), contains: "odd/best.safetensors: cannot read: Is a directory")
        assertOneLineError(try run(["train", "--resume", "odd/best.safetensors"], cwd: dir), contains: "odd/best.safetensors: run directory has no best.safetensors or latest.safetensors")

        // Another program's safetensors file (a PyTorch-style state dict without charrnn metadata).
        let header = Array(#"{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}"#.utf8)
        var foreign = withUnsafeBytes(of: UInt64(header.count).littleEndian, Array.init) + header
        foreign += [Float](repeating: 1, count: 6).withUnsafeBytes(Array.init)
        _ = write(dir, "foreign.safetensors", foreign)
        assertOneLineError(try run(["train", "--resume", "foreign.safetensors"], cwd: dir), contains: "not a charrnn checkpoint")

        // A charrnn GRU checkpoint whose metadata claims another cell type (same header length).
        let runDir = try trainSmall(dir, name: "gru", extra: ["--model", "gru"])
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: runDir + "/latest.safetensors")))
        let from = Array(#"\"cell\":\"gru\""#.utf8), to = Array(#"\"cell\":\"rnn\""#.utf8)
        guard let at = (0...(bytes.count - from.count)).first(where: { bytes[$0..<($0 + from.count)].elementsEqual(from) }) else {
            return XCTFail("cell not found in the checkpoint header")
        }
        bytes.replaceSubrange(at..<(at + from.count), with: to)
        try Data(bytes).write(to: URL(fileURLWithPath: runDir + "/latest.safetensors"))
        assertOneLineError(try run(["train", "--resume", runDir], cwd: dir), contains: "tensor \"rnn.weight_ih_l0\" has shape [48, ", "expected [16, ")
        assertOneLineError(try run(["sample", "--checkpoint", runDir + "/latest.safetensors"], cwd: dir), contains: "(WrongShape)")
    }

    func testPrimeWithOnlyUnknownCharactersIsAnError() throws {
        let dir = workDir()
        let runDir = try trainSmall(dir, name: "p")
        assertOneLineError(try run(["sample", "--checkpoint", runDir, "--prime", "ЖЖ☃", "--length", "5"], cwd: dir),
                           contains: "--prime has no character in the model's vocabulary: \"Ж\" \"☃\"")
        let mixed = try run(["sample", "--checkpoint", runDir, "--prime", "To☃", "--length", "5", "--seed", "1"], cwd: dir)
        XCTAssertEqual(mixed.status, 0, mixed.err)
        XCTAssertTrue(mixed.out.hasPrefix("To☃"))
    }
}
