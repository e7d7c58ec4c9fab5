// CorpusMappingFaultsTests.swift — `MappingFaults`: a file truncated under a guarded mapping reads as
// zeros with the fault recorded (not a SIGBUS crash), and the corpus loader reports it as one line,
// `TextError.changed`. Without the guard each of these tests would kill the test process.

import Foundation
import XCTest
@testable import CharRNN

final class CorpusMappingFaultsTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDir("faults") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    let page = Int(sysconf(Int32(_SC_PAGESIZE)))

    func testAGuardedMappingOfATruncatedFileReadsZerosAndRecordsWhere() throws {
        let path = dir + "/f"
        try AtomicFile.write([UInt8](repeating: 0x61, count: 3 * page), to: path)
        let fd = open(path, O_RDWR | O_CLOEXEC)
        defer { close(fd) }
        let m = try MappedFile(fd: fd, size: 3 * page, path: path, guarded: true)
        XCTAssertEqual(m.bytes[0], 0x61)
        XCTAssertNil(m.faultOffset)
        XCTAssertEqual(ftruncate(fd, off_t(page)), 0)
        XCTAssertEqual(m.bytes[page - 1], 0x61)            // still inside the file
        XCTAssertEqual(m.bytes[2 * page + 5], 0)           // past its end: SIGBUS without the guard
        XCTAssertEqual(m.faultOffset, 2 * page + 5)
        XCTAssertEqual(m.bytes[page + 1], 0)
        XCTAssertEqual(m.faultOffset, 2 * page + 5)        // the first fault is kept
        m.unmap()
        // a new mapping at the same slot starts clean
        let again = try MappedFile(fd: fd, size: page, path: path, guarded: true)
        XCTAssertEqual(again.bytes[0], 0x61)
        XCTAssertNil(again.faultOffset)
    }

    func testACorpusTruncatedWhileItIsDecodedIsAOneLineChangedError() throws {
        let path = dir + "/corpus.txt"
        let text = String(repeating: "the quick brown fox jumps over the lazy dog\n", count: 4000)   // ~176 KB
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        for cut in [0, 3 * page] {
            try text.write(toFile: path, atomically: false, encoding: .utf8)
            let inputs = try CorpusLoader.inputs([path])
            var truncated = false
            // after the first chunk is verified, the file is cut: the next chunk reads past its end
            XCTAssertThrowsError(try CorpusLoader.load(inputs, name: "corpus", options: LoadOptions(), chunkBytes: 4 * page,
                                                       progress: { done, _ in
                if !truncated && done > 0 { truncated = true; XCTAssertEqual(truncate(path, off_t(cut)), 0) }
            })) { error in
                guard case let .changed(file, offset)? = error as? TextError else { return XCTFail("\(error)") }
                XCTAssertEqual(file, path)
                XCTAssertGreaterThanOrEqual(offset, 4 * page)
                XCTAssertTrue("\(error)".contains("changed while it was being read"))
            }
            XCTAssertTrue(truncated)
        }
    }

    func testAnUntouchedCorpusLoadsAsBeforeWithTheGuard() throws {
        let path = dir + "/corpus.txt"
        try String(repeating: "abc\n", count: 10_000).write(toFile: path, atomically: true, encoding: .utf8)
        let c = try CorpusLoader.load(try CorpusLoader.inputs([path]), name: "c", options: LoadOptions(), chunkBytes: page, progress: { _, _ in })
        XCTAssertEqual(c.count, 40_000)
        XCTAssertEqual(c.vocabulary.count, 4)
    }
}
