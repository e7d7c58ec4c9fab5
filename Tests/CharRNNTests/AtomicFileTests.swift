// Tests/CharRNNTests/AtomicFileTests.swift — AtomicFile: the old file survives until the rename,
// failures leave no temp file and a clean one-line error, successes leave only the target.

import Foundation
import XCTest
@testable import CharRNN

#if canImport(Glibc)
import Glibc
#endif

final class AtomicFileTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "charrnn-atomic-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        _ = chmod(dir, 0o755)
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func contents(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map { [UInt8]($0) }
    }

    private func listing() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
    }

    private func temps() -> [String] {
        listing().filter { $0.contains(".tmp-") }
    }

    private func assertCleanError(_ error: Error, path: String, code: Int32,
                                  file: StaticString = #filePath, line: UInt = #line) {
        guard let e = error as? FileIOError else { return XCTFail("not a FileIOError: \(error)", file: file, line: line) }
        XCTAssertEqual(e.path, path, file: file, line: line)
        XCTAssertEqual(e.code, code, "\(e)", file: file, line: line)
        XCTAssertTrue(e.description.hasPrefix(path + ": cannot "), e.description, file: file, line: line)
        XCTAssertTrue(e.description.hasSuffix(String(cString: strerror(code))), e.description, file: file, line: line)
        XCTAssertFalse(e.description.contains("\n"), file: file, line: line)
    }

    // MARK: - Success

    func testWriteCreatesFileAndLeavesNoTempFiles() throws {
        let path = dir + "/a.bin"
        try AtomicFile.write([1, 2, 3], to: path)
        XCTAssertEqual(contents(path), [1, 2, 3])
        try AtomicFile.write([], to: path)
        XCTAssertEqual(contents(path), [])
        let big = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try AtomicFile.write(big, to: path)
        XCTAssertEqual(try AtomicFile.read(from: path), big)
        XCTAssertEqual(listing(), ["a.bin"])
    }

    func testRelativePathWritesIntoCurrentDirectory() throws {
        let cwd = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(dir))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(cwd) }
        try AtomicFile.write([9], to: "rel.bin")
        XCTAssertEqual(contents(dir + "/rel.bin"), [9])
        XCTAssertEqual(listing(), ["rel.bin"])
    }

    func testSplitAndTempName() {
        XCTAssertEqual(AtomicFile.split("a/b/c.st").directory, "a/b")
        XCTAssertEqual(AtomicFile.split("a/b/c.st").base, "c.st")
        XCTAssertEqual(AtomicFile.split("c.st").directory, ".")
        XCTAssertEqual(AtomicFile.split("/c.st").directory, "/")
        let name = AtomicFile.tempName(directory: "ck", base: "best.safetensors")
        XCTAssertTrue(name.hasPrefix("ck/.best.safetensors.tmp-\(getpid())-"), name)
        let long = AtomicFile.tempName(directory: ".", base: String(repeating: "é", count: 200))
        XCTAssertLessThan(AtomicFile.split(long).base.utf8.count, 255)
    }

    // MARK: - Overwrite is atomic

    func testOverwriteKeepsOldFileUntilRename() throws {
        let path = dir + "/best.safetensors"
        try AtomicFile.write(Array("old".utf8), to: path)
        var sawOldFile = false
        try AtomicFile.write(Array("new contents".utf8), to: path, beforeRename: {
            // The new data is complete in a sibling temp file; the target still holds the old bytes.
            XCTAssertEqual(contents(path), Array("old".utf8))
            let t = temps()
            XCTAssertEqual(t.count, 1)
            XCTAssertTrue(t.first?.hasPrefix(".best.safetensors.tmp-") ?? false)
            if let t = t.first { XCTAssertEqual(contents(dir + "/" + t), Array("new contents".utf8)) }
            sawOldFile = true
        })
        XCTAssertTrue(sawOldFile)
        XCTAssertEqual(contents(path), Array("new contents".utf8))
        XCTAssertEqual(listing(), ["best.safetensors"])
    }

    func testFailureBeforeRenameLeavesOldFileAndNoTemp() throws {
        struct Interrupted: Error {}
        let path = dir + "/best.safetensors"
        try AtomicFile.write(Array("old".utf8), to: path)
        XCTAssertThrowsError(try AtomicFile.write(Array("new".utf8), to: path, beforeRename: { throw Interrupted() })) {
            XCTAssertTrue($0 is Interrupted)
        }
        XCTAssertEqual(contents(path), Array("old".utf8))
        XCTAssertEqual(listing(), ["best.safetensors"])
    }

    // MARK: - Clean failures

    func testMissingDirectoryGivesCleanError() {
        let path = dir + "/no/such/dir/x.safetensors"
        XCTAssertThrowsError(try AtomicFile.write([1], to: path)) { assertCleanError($0, path: path, code: ENOENT) }
        XCTAssertEqual(listing(), [])
    }

    func testParentIsAFileGivesCleanError() throws {
        try AtomicFile.write([1], to: dir + "/file")
        let path = dir + "/file/x.safetensors"
        XCTAssertThrowsError(try AtomicFile.write([1], to: path)) { assertCleanError($0, path: path, code: ENOTDIR) }
        XCTAssertEqual(listing(), ["file"])
    }

    func testTargetIsADirectoryGivesCleanErrorAndNoTemp() throws {
        try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: false)
        XCTAssertThrowsError(try AtomicFile.write([1], to: dir + "/sub")) { error in
            XCTAssertEqual((error as? FileIOError)?.path, self.dir + "/sub")
        }
        XCTAssertThrowsError(try AtomicFile.write([1], to: dir + "/")) { error in
            XCTAssertEqual((error as? FileIOError)?.code, EISDIR)
        }
        XCTAssertEqual(listing(), ["sub"])
    }

    /// A read-only directory refuses the temp file. Root ignores permission bits, so when running as
    /// root the write is attempted with the effective uid temporarily dropped to `nobody`.
    func testReadOnlyDirectoryGivesCleanErrorAndNoTemp() throws {
        let ro = dir + "/ro"
        try FileManager.default.createDirectory(atPath: ro, withIntermediateDirectories: false)
        try AtomicFile.write(Array("old".utf8), to: ro + "/x.safetensors")
        XCTAssertEqual(chmod(ro, 0o555), 0)
        defer { _ = chmod(ro, 0o755) }
        let path = ro + "/x.safetensors"

        let dropped = geteuid() == 0
        if dropped {
            guard seteuid(65534) == 0 else { throw XCTSkip("cannot drop privileges to test a read-only directory") }
        }
        var thrown: Error?
        do { try AtomicFile.write(Array("new".utf8), to: path) } catch { thrown = error }
        if dropped { XCTAssertEqual(seteuid(0), 0) }

        guard let thrown else { return XCTFail("write into a read-only directory succeeded") }
        assertCleanError(thrown, path: path, code: EACCES)
        XCTAssertEqual(contents(path), Array("old".utf8))
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: ro)) ?? [], ["x.safetensors"])
    }

    /// A write that fails part-way (here: the file-size limit, standing in for a full disk) removes
    /// the temp file and leaves the old file intact.
    func testWriteFailureMidFileRemovesTempAndKeepsOldFile() throws {
        let path = dir + "/best.safetensors"
        try AtomicFile.write(Array("old".utf8), to: path)

        var old = rlimit()
        XCTAssertEqual(getrlimit(Int32(RLIMIT_FSIZE.rawValue), &old), 0)
        let oldHandler = signal(SIGXFSZ, SIG_IGN)
        var limited = old
        limited.rlim_cur = 4096
        guard setrlimit(Int32(RLIMIT_FSIZE.rawValue), &limited) == 0 else {
            _ = signal(SIGXFSZ, oldHandler)
            throw XCTSkip("cannot lower RLIMIT_FSIZE")
        }
        var thrown: Error?
        do { try AtomicFile.write([UInt8](repeating: 7, count: 100_000), to: path) } catch { thrown = error }
        XCTAssertEqual(setrlimit(Int32(RLIMIT_FSIZE.rawValue), &old), 0)
        _ = signal(SIGXFSZ, oldHandler)

        guard let thrown else { return XCTFail("write beyond RLIMIT_FSIZE succeeded") }
        assertCleanError(thrown, path: path, code: EFBIG)
        XCTAssertTrue("\(thrown)".contains("cannot write"), "\(thrown)")
        XCTAssertEqual(contents(path), Array("old".utf8))
        XCTAssertEqual(listing(), ["best.safetensors"])
    }

    // MARK: - Read

    func testReadErrors() throws {
        XCTAssertThrowsError(try AtomicFile.read(from: dir + "/missing")) { assertCleanError($0, path: self.dir + "/missing", code: ENOENT) }
        XCTAssertThrowsError(try AtomicFile.read(from: dir)) { assertCleanError($0, path: self.dir, code: EISDIR) }
        XCTAssertEqual(try AtomicFile.read(from: "/proc/self/stat").isEmpty, false)  // st_size 0, still read to EOF
    }

    func testPartsAreWrittenInOrderAsOneFile() throws {
        let path = dir + "/parts.bin"
        let a: [UInt8] = [1, 2, 3], b: [UInt8] = [], c = [UInt8](repeating: 9, count: 100_000)
        try a.withUnsafeBytes { ra in
            try b.withUnsafeBytes { rb in
                try c.withUnsafeBytes { rc in try AtomicFile.write(parts: [ra, rb, rc], to: path) }
            }
        }
        XCTAssertEqual(contents(path), a + b + c)
        XCTAssertEqual(temps(), [])
    }

    // MARK: - Links (issue 22: nothing is written through a link)

    func testWritingOverALinkReplacesTheNameAndLeavesTheTarget() throws {
        let target = dir + "/target"
        try AtomicFile.write([1, 2, 3], to: target)
        for makeLink in [{ symlink(target, self.dir + "/name") }, { link(target, self.dir + "/name") }] {
            unlink(dir + "/name")
            XCTAssertEqual(makeLink(), 0)
            try AtomicFile.write([9], to: dir + "/name")                 // checkpoints, the token cache
            XCTAssertEqual(try AtomicFile.read(from: target), [1, 2, 3])
            XCTAssertEqual(try AtomicFile.read(from: dir + "/name"), [9])
            unlink(dir + "/name")
            XCTAssertEqual(makeLink(), 0)
            let fd = try AtomicFile.replace(dir + "/name", with: [7])       // the loss log
            XCTAssertEqual([UInt8](arrayLiteral: 8).withUnsafeBytes { write(fd, $0.baseAddress, 1) }, 1)
            close(fd)
            XCTAssertEqual(try AtomicFile.read(from: target), [1, 2, 3])
            XCTAssertEqual(try AtomicFile.read(from: dir + "/name"), [7, 8])
            var st = stat()
            XCTAssertEqual(lstat(dir + "/name", &st), 0)
            XCTAssertEqual(st.st_mode & S_IFMT, S_IFREG)
            XCTAssertEqual(st.st_nlink, 1)
        }
    }

    /// parentPath on the paths Foundation's deletingLastPathComponent trapped on, and the usual ones.
    func testParentPath() {
        let cases: [(String, String)] = [("o", ""), (".", ""), ("x/", ""), ("o/w4", "o"), ("a/b/c", "a/b"), ("/a", "/"),
                                         ("/", "/"), ("", ""), ("a//b", "a"), ("a/b/", "a"), ("./x", "."), ("../x", ".."),
                                         ("/tmp/r/loss.csv", "/tmp/r"), ("é/ü", "é")]
        for (path, parent) in cases { XCTAssertEqual(parentPath(path), parent, path) }
    }
}
