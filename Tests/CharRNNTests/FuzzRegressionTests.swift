// FuzzRegressionTests.swift — replays every input in Fuzz/regressions/<target>/ (crashes the fuzzers
// found, or hand-made hostile files for bugs found by review) through the same entry points the
// libFuzzer harness uses, so a fixed bug stays fixed. A regression either crashes this test process
// or fails an invariant here.

import Foundation
import XCTest
@testable import CharRNN

final class FuzzRegressionTests: XCTestCase {
    static var regressions: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fuzz/regressions")
    }

    func replay(_ target: FuzzTarget, minimum: Int) throws {
        let dir = Self.regressions.appendingPathComponent(target.rawValue)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { !$0.hasPrefix(".") }.sorted()
        XCTAssertGreaterThanOrEqual(files.count, minimum, "regression corpus for \(target.rawValue) is missing")
        for name in files {
            let bytes = [UInt8](try Data(contentsOf: dir.appendingPathComponent(name)))
            XCTAssertNoThrow(try target.run(bytes), "\(target.rawValue)/\(name)")
        }
    }

    func testCorpusRegressions() throws { try replay(.corpus, minimum: 1) }
    func testSafeTensorsRegressions() throws { try replay(.safetensors, minimum: 5) }
    func testCSVRegressions() throws { try replay(.csv, minimum: 1) }
    func testPrimeRegressions() throws { try replay(.prime, minimum: 1) }
    func testRequestRegressions() throws { try replay(.request, minimum: 5) }

    /// The entry points must be able to fail: a broken invariant is reported, not swallowed.
    func testTargetsReportViolations() {
        XCTAssertThrowsError(try FuzzTarget.check(false, .corpus, "x"))
        XCTAssertThrowsError(try FuzzTarget.oneLine("two\nlines", .csv))
    }
}
