// RunFolderTestCase.swift — what the in-process run tests share: a fresh folder holding a synthetic
// corpus, a runs folder beside it, and a small, fast training config.

import Foundation
import XCTest
@testable import CharRNN

class RunFolderTestCase: XCTestCase {
    var dir = ""
    var corpusPath: String { dir + "/synthetic.txt" }
    var out: String { dir + "/runs" }
    /// Prefix of the temporary folder's name.
    class var folderPrefix: String { "run" }

    override func setUpWithError() throws {
        try WorkerPool.configure(threads: 1)
        dir = tempDir(Self.folderPrefix)
        try syntheticCorpusText().write(toFile: corpusPath, atomically: true, encoding: .utf8)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func trainConfig(maxIters: Int) -> TrainConfig {
        var t = TrainConfig()
        t.seq = 16; t.batch = 8; t.maxIters = maxIters; t.evalEvery = 10; t.lr = 3e-2; t.threads = 1
        t.trainFrac = 0.9; t.valFrac = 0.1
        return t
    }
}
