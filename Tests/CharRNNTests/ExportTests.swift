// ExportTests — the export library without Python: the protobuf encoder against the protobuf spec's
// worked examples, bfloat16 rounding, and the ONNX model decoded again by a small protobuf reader
// here, whose initializers run through ONNX's own LSTM/GRU/RNN equations (ONNX gate order, GRU with
// linear_before_reset = 1, written from the ONNX operator spec) and must reproduce the library's
// inference step; the HTML page's embedded model; the export writer's refusals.
// (scripts/export-test.sh checks the same files with onnx, onnxruntime and Chromium.)

import Foundation
import XCTest
@testable import CharRNN

/// Reads the protobuf wire format: enough to walk an exported ModelProto.
struct ProtoReader {
    enum Value { case varint(UInt64), fixed32(UInt32), fixed64(UInt64), bytes([UInt8]) }
    static func fields(_ b: [UInt8]) throws -> [(Int, Value)] {
        var i = 0, out: [(Int, Value)] = []
        func varint() throws -> UInt64 {
            var v: UInt64 = 0, shift: UInt64 = 0
            while true {
                guard i < b.count, shift < 64 else { throw CocoaError(.coderReadCorrupt) }
                let byte = b[i]; i += 1
                v |= UInt64(byte & 0x7f) << shift
                if byte < 0x80 { return v }
                shift += 7
            }
        }
        while i < b.count {
            let key = try varint()
            let field = Int(key >> 3)
            switch key & 7 {
            case 0: out.append((field, .varint(try varint())))
            case 1: out.append((field, .fixed64(b[i..<i + 8].enumerated().reduce(0) { $0 | UInt64($1.1) << (8 * UInt64($1.0)) }))); i += 8
            case 5: out.append((field, .fixed32(b[i..<i + 4].enumerated().reduce(0) { $0 | UInt32($1.1) << (8 * UInt32($1.0)) }))); i += 4
            case 2:
                let n = Int(try varint())
                guard i + n <= b.count else { throw CocoaError(.coderReadCorrupt) }
                out.append((field, .bytes(Array(b[i..<i + n])))); i += n
            default: throw CocoaError(.coderReadCorrupt)
            }
        }
        return out
    }
    static func bytes(_ v: Value) -> [UInt8] { if case .bytes(let b) = v { return b }; return [] }
    static func string(_ v: Value) -> String { String(decoding: bytes(v), as: UTF8.self) }
    static func int(_ v: Value) -> Int64 { if case .varint(let x) = v { return Int64(bitPattern: x) }; return -1 }
}

/// The parts of a decoded ONNX model the tests look at.
struct DecodedONNX {
    var opset: Int64 = 0, irVersion: Int64 = 0
    var metadata: [String: String] = [:]
    var initializers: [String: (dims: [Int], raw: [UInt8])] = [:]
    var nodes: [(op: String, inputs: [String], outputs: [String], ints: [String: Int64])] = []
    var inputs: [String] = [], outputs: [String] = []

    init(_ bytes: [UInt8]) throws {
        for (f, v) in try ProtoReader.fields(bytes) {
            switch f {
            case 1: irVersion = ProtoReader.int(v)
            case 8: for (g, w) in try ProtoReader.fields(ProtoReader.bytes(v)) where g == 2 { opset = ProtoReader.int(w) }
            case 14:
                var k = "", val = ""
                for (g, w) in try ProtoReader.fields(ProtoReader.bytes(v)) { if g == 1 { k = ProtoReader.string(w) } else if g == 2 { val = ProtoReader.string(w) } }
                metadata[k] = val
            case 7:
                for (g, w) in try ProtoReader.fields(ProtoReader.bytes(v)) {
                    let body = ProtoReader.bytes(w)
                    switch g {
                    case 1:
                        var op = "", ins: [String] = [], outs: [String] = [], ints: [String: Int64] = [:]
                        for (h, x) in try ProtoReader.fields(body) {
                            switch h {
                            case 1: ins.append(ProtoReader.string(x))
                            case 2: outs.append(ProtoReader.string(x))
                            case 4: op = ProtoReader.string(x)
                            case 5:
                                var name = "", i: Int64? = nil
                                for (a, y) in try ProtoReader.fields(ProtoReader.bytes(x)) { if a == 1 { name = ProtoReader.string(y) } else if a == 3 { i = ProtoReader.int(y) } }
                                if let i { ints[name] = i }
                            default: break
                            }
                        }
                        nodes.append((op, ins, outs, ints))
                    case 5:
                        var name = "", dims: [Int] = [], raw: [UInt8] = []
                        for (h, x) in try ProtoReader.fields(body) {
                            if h == 1 { dims.append(Int(ProtoReader.int(x))) } else if h == 8 { name = ProtoReader.string(x) } else if h == 9 { raw = ProtoReader.bytes(x) }
                        }
                        initializers[name] = (dims, raw)
                    case 11, 12:
                        for (h, x) in try ProtoReader.fields(body) where h == 1 { if g == 11 { inputs.append(ProtoReader.string(x)) } else { outputs.append(ProtoReader.string(x)) } }
                    default: break
                    }
                }
            default: break
            }
        }
    }

    func floats(_ name: String) -> [Float] {
        guard let t = initializers[name] else { return [] }
        return stride(from: 0, to: t.raw.count, by: 4).map { i in
            Float(bitPattern: UInt32(t.raw[i]) | UInt32(t.raw[i + 1]) << 8 | UInt32(t.raw[i + 2]) << 16 | UInt32(t.raw[i + 3]) << 24)
        }
    }
}

final class ExportTests: XCTestCase {
    // MARK: - Protobuf encoding (examples of the protobuf encoding guide)

    func testProtobufWireFormat() {
        var w = ProtoWriter()
        w.int(1, 150)
        XCTAssertEqual(w.bytes, [0x08, 0x96, 0x01], "field 1 = 150")
        w = ProtoWriter(); w.string(2, "testing")
        XCTAssertEqual(w.bytes, [0x12, 0x07, 0x74, 0x65, 0x73, 0x74, 0x69, 0x6e, 0x67])
        w = ProtoWriter(); w.message(3) { $0.int(1, 150) }
        XCTAssertEqual(w.bytes, [0x1a, 0x03, 0x08, 0x96, 0x01], "embedded message")
        w = ProtoWriter(); w.int(1, -2)
        XCTAssertEqual(w.bytes, [0x08, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], "negative int64: ten bytes")
        w = ProtoWriter(); w.float(2, 1)
        XCTAssertEqual(w.bytes, [0x15, 0x00, 0x00, 0x80, 0x3f], "float: wire type 5, little-endian")
        w = ProtoWriter(); w.varint(300)
        XCTAssertEqual(w.bytes, [0xac, 0x02])
        w = ProtoWriter(); w.int(20, 7)
        XCTAssertEqual(w.bytes, [0xa0, 0x01, 0x07], "field 20 needs a two-byte key")
    }

    func testBFloat16RoundsToNearestEven() {
        XCTAssertEqual(HTMLExport.bfloat16Bits(1), 0x3F80)
        XCTAssertEqual(HTMLExport.bfloat16Bits(Float(bitPattern: 0x3F80_8000)), 0x3F80, "tie, even stays")
        XCTAssertEqual(HTMLExport.bfloat16Bits(Float(bitPattern: 0x3F81_8000)), 0x3F82, "tie, odd rounds up")
        XCTAssertEqual(HTMLExport.bfloat16Bits(Float(bitPattern: 0x3F80_8001)), 0x3F81, "above half rounds up")
        XCTAssertEqual(HTMLExport.bfloat16Bits(Float(bitPattern: 0x3F80_7FFF)), 0x3F80, "below half rounds down")
        XCTAssertEqual(HTMLExport.bfloat16Bits(-2.5), 0xC020)
    }

    func testGateBlocksReorderToONNXOrder() {
        // rows are blocks of H = 1: PyTorch LSTM [i f g o] → ONNX [i o f c]; GRU [r z n] → [z r h]
        XCTAssertEqual(ONNXExport.reorderBlocks([1, 2, 3, 4], H: 1, cols: 1, order: ONNXExport.onnxGateOrder(.lstm)), [1, 4, 2, 3])
        XCTAssertEqual(ONNXExport.reorderBlocks([1, 2, 3], H: 1, cols: 1, order: ONNXExport.onnxGateOrder(.gru)), [2, 1, 3])
        XCTAssertEqual(ONNXExport.reorderBlocks([1, 2, 3, 4, 5, 6], H: 1, cols: 2, order: ONNXExport.onnxGateOrder(.gru)), [3, 4, 1, 2, 5, 6])
    }

    // MARK: - A checkpoint to export

    static let tokens = ["\n", " ", "a", "b", "c", "d", "e", "é", "明", "🦊"]

    /// A randomly initialised model saved as a checkpoint and loaded back (as `charrnn export` reads it).
    func checkpoint(_ cell: CellKind, embed: Int = 0, hidden: Int = 6, layers: Int = 2, adaptive: Bool = false, seed: UInt64 = 5) throws -> ExportSource {
        var c = ModelConfig(cell: cell, layers: layers, hidden: hidden, embed: embed, vocabSize: Self.tokens.count)
        if adaptive { c.adaptive = AdaptiveSoftmaxConfig(cutoffs: [4, 7], order: [3, 0, 9, 1, 2, 8, 4, 7, 5, 6]) }
        let m = CharRNNModel(config: c, maxT: 1, maxB: 1)
        var rng = Xoshiro256(seed: seed)
        m.initialize(rng: &rng)
        // larger weights than the initialiser's, so every gate matters
        for i in 0..<m.layout.count { m.params.ptr[i] = Float(rng.nextDouble() * 2 - 1) }
        let dir = tempDir("export")
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let meta = CheckpointMeta(model: c, train: TrainConfig(), vocabulary: Vocabulary(unit: .scalar, tokens: Self.tokens),
                                  corpus: CorpusInfo(name: "tiny", path: "tiny.txt", bytes: 1, tokens: 1), progress: RunProgress(), trainBatches: 1)
        try Checkpoint.save(to: dir + "/m.safetensors", model: m, optimizer: nil, state: nil, meta: meta)
        return try ExportSource(checkpoint: try Checkpoint.load(path: dir + "/m.safetensors"))
    }

    /// The library's log p after feeding `ids` from a zero state, and the top layer's h.
    func libraryStep(_ s: ExportSource, _ ids: [Int32]) -> (logProbs: [Float], h: [Float]) {
        let m = CharRNNModel(config: s.config, maxT: 1, maxB: 1)
        for (t, v) in zip(m.spec.parameters, m.layout.views) { (m.params.ptr + v.offset).update(from: s.tensor(t.name), count: t.count) }
        let st = InferenceState(config: s.config, streams: 1), out = Storage(count: s.config.vocabSize), tok = IntStorage(count: 1)
        for id in ids { tok.ptr[0] = id; m.step(tokens: tok.ptr, state: st, logProbs: out.ptr) }
        return (out.toArray(), st.hidden(layer: s.config.layers - 1))
    }

    /// The same tokens through ONNX's operator equations (onnx/docs/Operators.md, LSTM/GRU/RNN with
    /// the default activations) over the decoded initializers, in Double.
    func onnxStep(_ d: DecodedONNX, _ c: ModelConfig, _ ids: [Int32]) -> (logProbs: [Double], h: [Double]) {
        let H = c.hidden, G = c.cell.gates * H, L = c.layers
        func sig(_ x: Double) -> Double { 1 / (1 + exp(-x)) }
        var h = [[Double]](repeating: [Double](repeating: 0, count: H), count: L), cs = h
        for id in ids {
            var x: [Double]
            if c.embed > 0 {
                x = Array(d.floats(StateDict.embedding)[(Int(id) * c.embed)..<((Int(id) + 1) * c.embed)]).map(Double.init)
            } else if let t = d.initializers["one_hot_rows"] {
                let n = t.dims[1]; x = Array(d.floats("one_hot_rows")[(Int(id) * n)..<((Int(id) + 1) * n)]).map(Double.init)
            } else {
                x = Array(d.floats("input_gates_table")[(Int(id) * G)..<((Int(id) + 1) * G)]).map(Double.init)
            }
            for k in 0..<L {
                let W = d.floats("rnn.W_l\(k)").map(Double.init), R = d.floats("rnn.R_l\(k)").map(Double.init), B = d.floats("rnn.B_l\(k)").map(Double.init)
                let D = x.count
                XCTAssertEqual(W.count, G * D, "W_l\(k) shape")
                var wx = [Double](repeating: 0, count: G), rh = wx
                for g in 0..<G {
                    var s = B[g], r = B[G + g]
                    for j in 0..<D { s += W[g * D + j] * x[j] }
                    for j in 0..<H { r += R[g * H + j] * h[k][j] }
                    wx[g] = s; rh[g] = r
                }
                var hn = [Double](repeating: 0, count: H)
                for j in 0..<H {
                    switch c.cell {
                    case .lstm:   // ONNX order i o f c
                        let i = sig(wx[j] + rh[j]), o = sig(wx[H + j] + rh[H + j]), f = sig(wx[2 * H + j] + rh[2 * H + j])
                        let cc = tanh(wx[3 * H + j] + rh[3 * H + j])
                        cs[k][j] = f * cs[k][j] + i * cc
                        hn[j] = o * tanh(cs[k][j])
                    case .gru:    // ONNX order z r h, linear_before_reset = 1
                        let z = sig(wx[j] + rh[j]), r = sig(wx[H + j] + rh[H + j])
                        let ht = tanh(wx[2 * H + j] + r * rh[2 * H + j])
                        hn[j] = (1 - z) * ht + z * h[k][j]
                    case .rnn:
                        hn[j] = tanh(wx[j] + rh[j])
                    }
                }
                h[k] = hn; x = hn
            }
        }
        let top = h[L - 1], V = c.vocabSize
        guard c.adaptive == nil else { return ([], top) }
        let w = d.floats("decoder.weight_T").map(Double.init), b = d.floats(StateDict.decoderBias).map(Double.init)
        var z = (0..<V).map { v in b[v] + (0..<H).reduce(0.0) { $0 + top[$1] * w[$1 * V + v] } }
        let m = z.max()!, lse = m + log(z.reduce(0) { $0 + exp($1 - m) })
        z = z.map { $0 - lse }
        return (z, top)
    }

    func testONNXGraphReproducesTheInferenceStep() throws {
        let ids: [Int32] = [2, 3, 0, 8, 9, 4, 1, 7]
        for (cell, embed) in [(CellKind.lstm, 0), (.gru, 0), (.rnn, 0), (.lstm, 4), (.gru, 3), (.rnn, 5)] {
            let tag = "\(cell) embed \(embed)"
            // hidden 6: LSTM G = 24 and GRU G = 18 ≥ V = 10 take the one-hot rows; RNN G = 6 < V the W_ihᵀ table
            let s = try checkpoint(cell, embed: embed)
            let d = try DecodedONNX(try ONNXExport.model(s, producerVersion: "test").serialize())
            XCTAssertEqual(d.opset, 14, tag); XCTAssertEqual(d.irVersion, 8, tag)
            XCTAssertEqual(d.inputs, cell == .lstm ? ["tokens", "h", "c"] : ["tokens", "h"], tag)
            XCTAssertEqual(d.outputs, cell == .lstm ? ["log_probs", "h_out", "c_out"] : ["log_probs", "h_out"], tag)
            let rnnNodes = d.nodes.filter { $0.op == cell.rawValue.uppercased() }
            XCTAssertEqual(rnnNodes.count, 2, "\(tag): one ONNX \(cell) node per layer")
            XCTAssertFalse(d.nodes.contains { $0.op == "OneHot" }, tag)
            if cell == .gru { XCTAssertTrue(rnnNodes.allSatisfy { $0.ints["linear_before_reset"] == 1 }, tag) }
            XCTAssertTrue(rnnNodes.allSatisfy { $0.ints["hidden_size"] == 6 }, tag)
            XCTAssertEqual(d.initializers[embed > 0 ? StateDict.embedding : (cell == .rnn ? "input_gates_table" : "one_hot_rows")] != nil, true, tag)
            let lib = libraryStep(s, ids), onnx = onnxStep(d, s.config, ids)
            for j in 0..<6 { XCTAssertEqual(Double(lib.h[j]), onnx.h[j], accuracy: 1e-5, "\(tag): top h[\(j)]") }
            for v in 0..<Self.tokens.count { XCTAssertEqual(Double(lib.logProbs[v]), onnx.logProbs[v], accuracy: 1e-5, "\(tag): log p[\(v)]") }
            // the metadata is the tokenizer: vocabulary, unit, start token
            let meta = try JSONSerialization.jsonObject(with: Data(d.metadata["charrnn"]!.utf8)) as! [String: Any]
            XCTAssertEqual(meta["vocab"] as? [String], Self.tokens, tag)
            XCTAssertEqual(meta["unit"] as? String, "scalar"); XCTAssertEqual(meta["normalize"] as? String, "none")
            XCTAssertEqual(meta["start_id"] as? Int, 0); XCTAssertTrue(meta["unknown_id"] is NSNull)
            XCTAssertEqual(meta["cell"] as? String, cell.rawValue); XCTAssertEqual(meta["vocab_size"] as? Int, 10)
        }
    }

    func testAdaptiveGraphMapsRanksBackToIds() throws {
        let s = try checkpoint(.gru, embed: 4, adaptive: true)
        let d = try DecodedONNX(try ONNXExport.model(s, producerVersion: "test").serialize())
        let last = try XCTUnwrap(d.nodes.last)
        XCTAssertEqual(last.op, "Gather"); XCTAssertEqual(last.outputs, ["log_probs"]); XCTAssertEqual(last.ints["axis"], 2)
        let raw = try XCTUnwrap(d.initializers["rank_of_id"]).raw
        let rankOf = stride(from: 0, to: raw.count, by: 8).map { Int(raw[$0]) }
        let order = [3, 0, 9, 1, 2, 8, 4, 7, 5, 6]
        for (rank, id) in order.enumerated() { XCTAssertEqual(rankOf[id], rank) }
        XCTAssertEqual(d.nodes.filter { $0.op == "LogSoftmax" }.count, 3, "head and two tails")
        XCTAssertEqual(d.nodes.filter { $0.op == "GRU" }.count, 2)
    }

    // MARK: - HTML

    func testHTMLPageEmbedsModelAndWeightsOffline() throws {
        let s = try checkpoint(.lstm, embed: 0, adaptive: true)
        for precision in [WeightPrecision.fp32, .bf16] {
            let page = HTMLExport.page(s, weights: precision, version: "9.9.9")
            XCTAssertTrue(page.contains("default-src 'none'"), "a CSP forbids every request")
            XCTAssertFalse(page.contains("src=") || page.contains("href=") || page.contains("http://") || page.contains("https://"),
                           "no external resources")
            XCTAssertTrue(page.contains(PageStyle.css), "the served page's stylesheet")
            func element(_ id: String) throws -> String {
                let open = try XCTUnwrap(page.range(of: "id=\"\(id)\">"))
                let close = try XCTUnwrap(page.range(of: "</script>", range: open.upperBound..<page.endIndex))
                return String(page[open.upperBound..<close.lowerBound])
            }
            let model = try JSONSerialization.jsonObject(with: Data(try element("charrnn-model").utf8)) as! [String: Any]
            let meta = model["meta"] as! [String: Any]
            XCTAssertEqual(meta["vocab"] as? [String], Self.tokens, "non-ASCII tokens survive the \\u escapes")
            XCTAssertEqual(model["dtype"] as? String, precision.rawValue)
            XCTAssertFalse(try element("charrnn-model").unicodeScalars.contains { $0.value > 0x7f || $0 == "<" })
            let weights = try XCTUnwrap(Data(base64Encoded: try element("charrnn-weights").trimmingCharacters(in: .whitespacesAndNewlines)))
            XCTAssertEqual(weights.count, s.spec.parameterCount * (precision == .bf16 ? 2 : 4))
            // every tensor at its manifest offset
            for t in model["tensors"] as! [[String: Any]] {
                let name = t["name"] as! String, offset = t["offset"] as! Int, values = s.tensor(name)
                for (i, v) in values.enumerated() where i % 7 == 0 {
                    let at = (offset + i) * (precision == .bf16 ? 2 : 4)
                    if precision == .bf16 {
                        XCTAssertEqual(UInt16(weights[at]) | UInt16(weights[at + 1]) << 8, HTMLExport.bfloat16Bits(v), name)
                    } else {
                        let bits = (0..<4).reduce(UInt32(0)) { $0 | UInt32(weights[at + $1]) << (8 * UInt32($1)) }
                        XCTAssertEqual(Float(bitPattern: bits), v, name)
                    }
                }
            }
        }
    }

    func testMetadataEscapesForHTML() {
        var m = ExportMetadata(CheckpointMeta(model: ModelConfig(vocabSize: 2), train: TrainConfig(),
                                              vocabulary: Vocabulary(unit: .grapheme, tokens: ["<", "👩‍💻"]),
                                              corpus: CorpusInfo(name: "</script>", path: "", bytes: 0, tokens: 0), progress: RunProgress(), trainBatches: 1))
        m.valLoss = nil
        let s = m.json(asciiOnly: true)
        XCTAssertFalse(s.contains("<"))
        let back = try? JSONDecoder().decode(ExportMetadata.self, from: Data(s.utf8))
        XCTAssertEqual(back, m)
        XCTAssertEqual(back?.vocab, ["<", "👩‍💻"])
        XCTAssertEqual(back?.corpus, "</script>")
    }

    // MARK: - Writing

    func testExportFileRefusesExistingAndDirectoriesAndLeavesNothing() throws {
        let dir = tempDir("export-write")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.onnx"
        try ExportFile.write([1, 2, 3], to: path, overwrite: false)
        XCTAssertThrowsError(try ExportFile.write([4], to: path, overwrite: false)) { e in
            XCTAssertTrue("\(e)".contains("already exists"), "\(e)")
        }
        XCTAssertEqual(FileManager.default.contents(atPath: path), Data([1, 2, 3]))
        try ExportFile.write([4], to: path, overwrite: true)
        XCTAssertEqual(FileManager.default.contents(atPath: path), Data([4]))
        XCTAssertThrowsError(try ExportFile.write([4], to: dir, overwrite: true)) { e in XCTAssertTrue("\(e)".contains("is a directory"), "\(e)") }
        XCTAssertThrowsError(try ExportFile.write([4], to: dir + "/missing/m.onnx", overwrite: false)) { e in XCTAssertTrue(e is FileIOError, "\(e)") }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["m.onnx"], "no temporary files")
    }
}
