// Library side of the run tools: the evaluator's stream layout, the loss-log reader (torn lines), plot
// axes, the corpus hash, fixed-vocabulary corpora, vocab_counts and the loss log's resume cut.

import Foundation
import XCTest
@testable import CharRNN

final class RunToolsTests: XCTestCase {
    /// A randomly initialised model saved and loaded as a checkpoint, and the synthetic corpus.
    func checkpoint(cell: CellKind) throws -> (Checkpoint.Loaded, Corpus) {
        let text = syntheticCorpusText(lines: 60)
        let corpus = try Corpus(bytes: Array(text.utf8), name: "synthetic")
        let cfg = ModelConfig(cell: cell, layers: 2, hidden: 12, vocabSize: corpus.vocabulary.count)
        let model = CharRNNModel(config: cfg, maxT: 1, maxB: 1)
        var rng = Xoshiro256(seed: 5)
        model.initialize(rng: &rng)
        for v in model.layout.views { for i in 0..<v.count { model.params.ptr[v.offset + i] *= 10 } }   // sharper predictions
        let meta = CheckpointMeta(model: cfg, train: TrainConfig(), vocabulary: corpus.vocabulary,
                                  corpus: CorpusInfo(name: "synthetic", path: "synthetic.txt", bytes: text.utf8.count, tokens: corpus.count),
                                  progress: RunProgress(), trainBatches: 1)
        let path = tempDir("eval") + "/m.safetensors"
        try Checkpoint.save(to: path, model: model, optimizer: nil, state: nil, meta: meta)
        return (try Checkpoint.load(path: path), corpus)
    }

    func ids(_ c: Corpus, _ n: Int) -> [Int32] { (0..<n).map { c.token(at: $0) } }

    /// B streams of S = ⌊P/B⌋ predictions, the last one taking the tail, each from a zero state:
    /// equal to scoring each stream's own slice sequentially.
    func testEvaluatorScoresEveryPredictionOnceInStreams() throws {
        for cell in CellKind.allCases {
            let (ck, corpus) = try checkpoint(cell: cell)
            let ids = ids(corpus, 203)                 // P = 202 = 3·67 + 1: a one-token tail
            let batched = try Evaluator(checkpoint: ck, batch: 3, seq: 10).evaluate(ids: ids)
            XCTAssertEqual(batched.scored, 202)
            let one = try Evaluator(checkpoint: ck, batch: 1, seq: 7)
            var total = 0.0
            for (lo, hi) in [(0, 67), (67, 134), (134, 202)] {     // predictions [lo, hi): ids lo...hi
                let r = one.evaluate(ids: Array(ids[lo...hi]))
                total += r.loss * Double(r.scored)
            }
            XCTAssertEqual(batched.loss, total / 202, accuracy: 1e-5, "\(cell)")
            // Chunking (seq) does not change a sequential pass.
            let a = try Evaluator(checkpoint: ck, batch: 1, seq: 50).evaluate(ids: ids).loss
            let b = try Evaluator(checkpoint: ck, batch: 1, seq: 3).evaluate(ids: ids).loss
            XCTAssertEqual(a, b, accuracy: 1e-5)
            // Streams start from zero state, so more streams give a different (here: worse or equal context) score.
            XCTAssertNotEqual(a, batched.loss)
        }
    }

    func testEvaluatorShortTextsAndFiles() throws {
        let (ck, corpus) = try checkpoint(cell: .gru)
        let ev = try Evaluator(checkpoint: ck, batch: 50, seq: 50)
        XCTAssertEqual(ev.evaluate(ids: []).scored, 0)
        XCTAssertEqual(ev.evaluate(ids: ids(corpus, 1)).scored, 0)
        XCTAssertEqual(ev.evaluate(ids: ids(corpus, 10)).scored, 9, "fewer predictions than streams: all in the tail")
        let path = tempDir("evalfile") + "/t.txt"
        try "the fox 🦊 runs\u{7}far".write(toFile: path, atomically: true, encoding: .utf8)
        let r = try ev.evaluate(path: path)
        XCTAssertEqual(r.unknown, 2)
        XCTAssertEqual(r.tokens, 18 - 2)
        XCTAssertEqual(r.scored, 15)
        XCTAssertEqual(r.bitsPerToken, r.loss / log(2), accuracy: 1e-12)
    }

    /// A text scored in memory (serve's /v1/score) is the file holding it scored (eval): the same
    /// tokens, unknowns and loss to the bit — with a BOM, unknown characters, a combining accent,
    /// short and long texts. The in-memory evaluator here is built on an already restored model whose
    /// inference precision is bf16 (serve's engine model): scoring copies its fp32 weights.
    func testEvaluatorTextInMemoryIsTheFile() throws {
        let (ck, _) = try checkpoint(cell: .lstm)
        let fromFile = try Evaluator(checkpoint: ck, batch: 4, seq: 5)
        let model = CharRNNModel(config: ck.meta.model, maxT: 1, maxB: 1)
        try Checkpoint.restore(ck, model: model)
        model.inferencePrecision = .bf16
        let before = Array(UnsafeBufferPointer(start: model.params.ptr, count: model.layout.count))
        let inMemory = Evaluator(model: model, vocabulary: ck.meta.vocabulary, normalize: ck.meta.train.normalize, batch: 4, seq: 5)
        let dir = tempDir("evaltext")
        let long = syntheticCorpusText(lines: 20)
        let texts = ["", "t", "the", "\u{FEFF}the fox 🦊 runs\u{7}far", "e\u{301}te\r\nZZZ", String(long.prefix(37)), long]
        for (k, text) in texts.enumerated() {
            let path = dir + "/\(k).txt"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let a = try fromFile.evaluate(path: path), b = try inMemory.evaluate(text: text, name: path)
            XCTAssertEqual([a.tokens, a.unknown, a.scored], [b.tokens, b.unknown, b.scored], text.debugDescription)
            XCTAssertEqual(a.loss.bitPattern, b.loss.bitPattern, "\(a.loss) vs \(b.loss): \(text.debugDescription)")
            XCTAssertEqual(b.file, path)
        }
        XCTAssertGreaterThan(try fromFile.evaluate(path: dir + "/6.txt").scored, 100)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: model.params.ptr, count: model.layout.count)), before, "the source model is only read")
    }

    func testLossLogReaderIgnoresTornAndBadLines() throws {
        // (a log written before the event column: 8 fields)
        let csv = LossLog.legacyHeader + "\n1,0.0100,4.5,,0.002,0.4,100.0,0.1\n2,0.0200,4.4,4.6,0.002,0.4,100.0,0.2\ngarbage\n3,0.03,4.3,,0.002"
        let rows = try LossHistory.parse(Array(csv.utf8), file: "x.csv")
        XCTAssertEqual(rows, [LossRow(iteration: 1, epoch: 0.01, trainLoss: 4.5, valLoss: nil),
                              LossRow(iteration: 2, epoch: 0.02, trainLoss: 4.4, valLoss: 4.6)])
        XCTAssertThrowsError(try LossHistory.parse(Array("iteration,epo".utf8), file: "x.csv"))
        XCTAssertThrowsError(try LossHistory.parse(Array("a,b\n1,2\n".utf8), file: "x.csv"))
        // Reordered columns are found by name.
        let r2 = try LossHistory.parse(Array("val_loss,train_loss,iteration\n,3.5,7\n".utf8), file: "y.csv")
        XCTAssertEqual(r2.count, 1)
        XCTAssertEqual(r2[0].iteration, 7); XCTAssertEqual(r2[0].trainLoss, 3.5); XCTAssertNil(r2[0].valLoss); XCTAssertTrue(r2[0].epoch.isNaN)
    }

    func testLossLogResumeCutDropsTornLineAndLaterRows() throws {
        let path = tempDir("cut") + "/loss.csv"
        let rows = (1...5).map { "\($0),0.1,4.0,,0.002,0.4,100.0,0.1\n" }.joined()
        try (LossLog.header + "\n" + rows + "6,0.1,3.9").write(toFile: path, atomically: true, encoding: .utf8)
        do { _ = try LossLog(path: path, keepThrough: 5) }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), LossLog.header + "\n" + rows)
        do { _ = try LossLog(path: path, keepThrough: 3) }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").count, 4)
    }

    func testAxisTicksAndLabels() {
        let lin = Axis(lo: 1.23, hi: 4.56, log: false)
        XCTAssertEqual(lin.ticks(target: 6), [1.5, 2, 2.5, 3, 3.5, 4, 4.5])
        XCTAssertEqual(Axis.label(2, ticks: lin.ticks(target: 6)), "2.0")
        XCTAssertEqual(Axis(lo: 0, hi: 1000, log: false).ticks(target: 5), [0, 200, 400, 600, 800, 1000])
        let log = Axis(lo: 0.03, hi: 4, log: true)
        XCTAssertEqual(log.ticks(target: 6), [0.05, 0.1, 0.2, 0.5, 1, 2])
        XCTAssertEqual(log.fraction(0.03), 0, accuracy: 1e-12)
        XCTAssertEqual(log.fraction(4), 1, accuracy: 1e-12)
        XCTAssertEqual(Axis(lo: 1.2, hi: 3, log: true).ticks(target: 6), Axis(lo: 1.2, hi: 3, log: false).ticks(target: 6), "less than a decade: linear ticks")
        let flat = Axis(lo: 2, hi: 2, log: false)
        XCTAssertLessThan(flat.lo, 2); XCTAssertGreaterThan(flat.hi, 2)
    }

    func testChartEMAIsBiasCorrectedAndSVGEscapes() {
        let rows = [LossRow(iteration: 1, epoch: 0.1, trainLoss: 4, valLoss: nil), LossRow(iteration: 2, epoch: 0.2, trainLoss: 2, valLoss: 3)]
        let chart = Chart.losses([LossHistory(name: "a<b", rows: rows)], xAxis: .iteration, logY: false, smoothing: 0.5, raw: true)
        let ema = chart.series.first { $0.style == .line }!.points.map(\.y)
        XCTAssertEqual(ema, [4, (0.25 * 4 + 0.5 * 2) / 0.75])
        let svg = SVGChart.render(chart)
        XCTAssertTrue(svg.contains("a&lt;b val") && !svg.contains("a<b"))
        let text = TextChart.render(chart, width: 60, height: 16, charset: .ascii, color: false)
        XCTAssertLessThanOrEqual(text.split(separator: "\n").count, 16)
    }

    func testCorpusHash() {
        let a = Array(syntheticCorpusText(lines: 50).utf8)
        var b = a; b[b.count / 2] ^= 1
        var c = a; c[a.count - 1] ^= 0x80          // a tail byte
        XCTAssertEqual(CorpusHash.hex(a), CorpusHash.hex(a))
        XCTAssertEqual(Set([CorpusHash.hex(a), CorpusHash.hex(b), CorpusHash.hex(c), CorpusHash.hex(a + [0])]).count, 4)
        XCTAssertEqual(CorpusHash.hex([]).count, 16)
        XCTAssertEqual(CorpusHash.hex(Array("hello, world".utf8)), "c4c410405c337d15", "the recorded hashes must not change between versions")
    }

    func testFixedVocabularyCorpusAndCounts() throws {
        let base = try Corpus(bytes: Array("abcab\n".utf8), name: "x.txt")
        let path = tempDir("fixed") + "/y.txt"
        try "cab🦊a\u{0}b".write(toFile: path, atomically: true, encoding: .utf8)
        let enc = try base.vocabulary.encodeFile(path: path, normalize: .none)
        XCTAssertEqual(enc.unknownCount, 2)
        XCTAssertEqual(enc.unknown, ["🦊", "\u{0}"])
        let c = Corpus(ids: enc.ids, vocabulary: base.vocabulary, name: path)
        XCTAssertEqual(c.name, "y")
        XCTAssertEqual((0..<c.count).map { base.vocabulary.tokens[Int(c.token(at: $0))] }.joined(), "cabab")
        XCTAssertEqual(c.tokenCounts(), [0, 2, 2, 1])     // "\n" a b c
        XCTAssertThrowsError(try RunContinuation.corpus(path: path, vocabulary: base.vocabulary, normalize: .none)) {
            XCTAssertTrue("\($0)".contains("2 tokens are not in the checkpoint's vocabulary"), "\($0)")
        }
    }

    func testTrainerRecordsVocabCountsAndCorpusHash() throws {
        try WorkerPool.configure(threads: 1)
        let dir = tempDir("counts")
        let text = syntheticCorpusText()
        try text.write(toFile: dir + "/s.txt", atomically: true, encoding: .utf8)
        let corpus = try CorpusLoader.load(paths: [dir + "/s.txt"], options: LoadOptions(), cacheDirectory: nil).0
        let info = CorpusInfo(name: "s", path: dir + "/s.txt", bytes: text.utf8.count, tokens: corpus.count, hash: try CorpusHash.file(dir + "/s.txt"))
        var t = TrainConfig(); t.seq = 8; t.batch = 4; t.maxIters = 2; t.evalEvery = 2; t.threads = 1
        let tr = try Trainer(corpus: corpus, corpusInfo: info, model: ModelConfig(hidden: 8, vocabSize: corpus.vocabulary.count), train: t, runDir: dir + "/run")
        _ = try tr.run { _ in }
        let ck = try Checkpoint.load(path: dir + "/run/latest.safetensors")
        let counts = try XCTUnwrap(VocabCounts.decode(ck.meta))
        XCTAssertEqual(counts.reduce(0, +), corpus.count)
        XCTAssertEqual(counts[ck.meta.vocabulary.id(of: "\n")!], text.filter { $0 == "\n" }.count)
        XCTAssertEqual(ck.meta.corpus.hash, info.hash)
        XCTAssertEqual(corpus.contentHash, info.hash, "the loader's in-pass hash is the file's")
        // Stale temp files from a killed writer are cleaned up.
        FileManager.default.createFile(atPath: dir + "/run/.latest.safetensors.tmp-1-2", contents: Data([1]))
        XCTAssertEqual(RunContinuation.removeStaleTempFiles(runDir: dir + "/run"), [".latest.safetensors.tmp-1-2"])
    }
}
