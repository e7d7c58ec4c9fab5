// EvaluatorTests.swift — `charrnn eval`'s evaluator checks memory before growing its buffers.

import Foundation
import XCTest
@testable import CharRNN

final class EvaluatorTests: RunFolderTestCase {
    override class var folderPrefix: String { "eval" }

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
