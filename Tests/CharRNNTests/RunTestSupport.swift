// RunTestSupport.swift — what the run-level tests share on top of RunFolderTestCase: a tiny model,
// a fresh TrainingRun in the runs folder, the one-line error text of a refused call, and a tiny
// checkpoint file with forged metadata or tensors.


import Foundation
import XCTest
@testable import CharRNN

extension RunFolderTestCase {
    var tinyModel: ModelConfig { ModelConfig(cell: .lstm, layers: 1, hidden: 8, vocabSize: 1) }

    func fresh(_ name: String?, overwrite: Bool = false, maxIters: Int = 2) throws -> TrainingRun {
        let r = TrainingRun.Request(mode: .fresh(model: tinyModel, softmax: .full), corpus: [corpusPath], train: trainConfig(maxIters: maxIters),
                                    outDir: out, name: name, tokenCache: .off, overwrite: overwrite)
        return try TrainingRun(r)
    }

    func message(_ body: () throws -> Any, file: StaticString = #filePath, line: UInt = #line) -> String {
        do { _ = try body(); XCTFail("no error", file: file, line: line); return "" } catch {
            let d = "\(error)"
            XCTAssertFalse(d.contains("\n"), d, file: file, line: line)
            return d
        }
    }

    /// A valid tiny checkpoint's file, with raw metadata strings replaced and an optional tensor edit.
    func forged(_ meta: [String: String] = [:], tensor: ((String, inout [Float]) -> Void)? = nil) throws -> String {
        let c = try Corpus(bytes: Array(String(repeating: "abc ab\nba!\n", count: 30).utf8), name: "c.txt")
        var t = TrainConfig(); t.seq = 4; t.batch = 2; t.maxIters = 1
        let tr = try Trainer(corpus: c, corpusInfo: CorpusInfo(name: "c", path: "c.txt", bytes: 0, tokens: c.count),
                             model: ModelConfig(hidden: 3, vocabSize: c.vocabulary.count), train: t, runDir: dir + "/f\(UInt32.random(in: 0...UInt32.max))")
        _ = try tr.run { _ in }
        let file = try SafeTensorsFile.read(path: tr.latestPath)
        var w = SafeTensorsWriter()
        for name in file.names {
            let info = file.tensors[name]!
            if let tensor, info.dtype == .F32 {
                var v = try file.floats(name)
                tensor(name, &v)
                w.add(name, shape: info.shape, floats: v)
            } else {
                try file.rawBytes(name).withUnsafeBytes { w.add(name, dtype: info.dtype, shape: info.shape, bytes: $0) }
            }
        }
        w.metadata = file.metadata.merging(meta) { $1 }
        try w.write(to: [tr.latestPath])
        return tr.latestPath
    }

    func refusal(_ path: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        message({ () -> Any in
            let c = try Checkpoint.load(path: path)
            try Checkpoint.restore(c, model: CharRNNModel(config: c.meta.model, maxT: 1, maxB: 1))
            return c
        }, file: file, line: line)
    }
}
