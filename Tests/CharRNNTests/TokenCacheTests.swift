// TokenCacheTests.swift — the first-pass token cache: an in-place rewrite with its mtime restored is
// not served from the cache; a cache that cannot be written gives the system's reason.

import Foundation
import XCTest
@testable import CharRNN

final class TokenCacheTests: RunFolderTestCase {
    override class var folderPrefix: String { "cache" }

    func testAnInPlaceRewriteWithItsMtimeRestoredIsNotServedFromTheCache() throws {
        let cache = dir + "/cache"
        let old = String(repeating: "abcdefgh\n", count: 2000), new = String(repeating: "ABCDEFGH\n", count: 2000)
        let path = dir + "/c.txt"
        try old.write(toFile: path, atomically: false, encoding: .utf8)
        let (a, _, _) = try CorpusLoader.load(paths: [path], options: LoadOptions(), cacheDirectory: cache, minimumCacheBytes: 0)
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        // same size, same inode, the mtime put back as `touch -r` would
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.write(contentsOf: Data(new.utf8)); try h.close()
        var times = [st.st_atim, st.st_mtim]
        XCTAssertEqual(utimensat(AT_FDCWD, path, &times, 0), 0)
        let (b, _, outcome) = try CorpusLoader.load(paths: [path], options: LoadOptions(), cacheDirectory: cache, minimumCacheBytes: 0)
        guard case .built = outcome else { return XCTFail("the stale cache was used: \(outcome)") }
        XCTAssertNotEqual(a.vocabulary.tokens, b.vocabulary.tokens)
        XCTAssertEqual(b.contentHash, try CorpusHash.file(path))
    }

    func testACacheThatCannotBeWrittenGivesTheSystemsReason() throws {
        let blocker = dir + "/not-a-folder"
        FileManager.default.createFile(atPath: blocker, contents: Data("x".utf8))
        let (_, _, outcome) = try CorpusLoader.load(paths: [corpusPath], options: LoadOptions(), cacheDirectory: blocker + "/cache",
                                                    minimumCacheBytes: 0)
        guard case let .writeFailed(_, message) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertFalse(message.contains("Domain") || message.contains("Code="), message)
        XCTAssertEqual(message, "\(blocker): cannot create folder: Not a directory")
    }
}
