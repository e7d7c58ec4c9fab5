// Export/ONNXExport.swift — a checkpoint as a standard ONNX model (opset 14, IR version 8).
//
// Legend: B batch, T steps, L layers, H hidden, G = gates·H, V vocabulary, E embedding width,
// S adaptive head shortlist, C tail clusters, K = S + C.
//
// Graph (ONNX's own recurrent operators, so runtimes use their fused kernels):
//   inputs   tokens int64 [batch, seq]      h float [L, batch, H]      c float [L, batch, H] (LSTM only)
//   ids      = Transpose(tokens, perm [1, 0])                                  [T, B]
//   layer 0  x = Gather(embedding.weight, ids)                                 [T, B, E]   (embedding)
//            x = Gather(I_V, ids), W = W_ih                                    [T, B, V]   (one-hot, V ≤ G)
//            x = Gather(W_ihᵀ, ids), W = I_G                                   [T, B, G]   (one-hot, V > G)
//            (the one-hot input is a gather of rows, never an OneHot op or a MatMul outside the
//            cell; of the two exact forms the exporter takes the one whose in-cell input product
//            is smaller, G·min(V, G) per token)
//   layer k  Y, Y_h[, Y_c] = LSTM|GRU|RNN(x, W, R, B, "", Gather(h, [k])[, Gather(c, [k])])
//            x = Squeeze(Y, axes [1])                                           [T, B, H]
//            W, R, B: PyTorch's gate blocks reordered to ONNX's — LSTM [i f g o] → [i o f c];
//            GRU [r z n] → [z r h] with linear_before_reset = 1 (PyTorch's GRU: r multiplies
//            W_hn h + b_hn); RNN tanh, one block. B = [b_ih, b_hh] in the same order.
//   h_out    = Concat(Y_h of every layer, axis 0)   c_out likewise (LSTM)      [L, B, H]
//   top      = Transpose(x, perm [1, 0, 2])                                    [B, T, H]
//   full     log_probs = LogSoftmax(top · decoder.weightᵀ + decoder.bias)      [B, T, V]
//   adaptive z = LogSoftmax(top · W_headᵀ + b_head) [B, T, K]; tail i: LogSoftmax((top · W_i0ᵀ) · W_i1ᵀ)
//            + z[..., S+i]; ranked = Concat(z[..., :S], tails…) [B, T, V] (rank order);
//            log_probs = Gather(ranked, rank of each id, axis 2) — exact full log-probabilities.
// Outputs: log_probs [batch, seq, V], h_out, c_out. Feeding h_out/c_out back as h/c continues the
// text, so a long text scored in chunks equals one pass (the test checks it).

/// Builds the ONNX model of a checkpoint.
package enum ONNXExport {
    /// The opset the graph declares (every operator used exists in this form since 14 or earlier).
    package static let opset: Int64 = 14

    /// Gate block order of ONNX's operator, as indices into PyTorch's blocks.
    static func onnxGateOrder(_ cell: CellKind) -> [Int] {
        switch cell {
        case .lstm: [0, 3, 1, 2]   // PyTorch i f g o → ONNX i o f c
        case .gru: [1, 0, 2]       // PyTorch r z n → ONNX z r h
        case .rnn: [0]
        }
    }

    /// Rows of `m` (G × cols, G = blocks·H) with its H-row blocks in `order`.
    static func reorderBlocks(_ m: [Float], H: Int, cols: Int, order: [Int]) -> [Float] {
        var out = [Float](); out.reserveCapacity(m.count)
        for b in order { out += m[(b * H * cols)..<((b + 1) * H * cols)] }
        return out
    }

    /// m (rows × cols) transposed.
    static func transposed(_ m: [Float], rows: Int, cols: Int) -> [Float] {
        var out = [Float](repeating: 0, count: m.count)
        for r in 0..<rows { for c in 0..<cols { out[c * rows + r] = m[r * cols + c] } }
        return out
    }

    static func identity(_ n: Int) -> [Float] {
        var m = [Float](repeating: 0, count: n * n)
        for i in 0..<n { m[i * n + i] = 1 }
        return m
    }

    /// The model, with `metadata` as JSON under metadata_props key "charrnn".
    /// - Parameters:
    ///   - source: the restored checkpoint.
    ///   - producerVersion: charrnn's version, recorded as producer_version.
    /// - Throws: `ExportError` when the weights exceed protobuf's 2 GB message limit.
    package static func model(_ source: ExportSource, producerVersion: String) throws -> ONNXModel {
        let c = source.config
        let L = c.layers, H = c.hidden, V = c.vocabSize, G = c.cell.gates * H
        let order = onnxGateOrder(c.cell)
        var m = ONNXModel(opset: opset, producer: "charrnn", producerVersion: producerVersion,
                          doc: "charrnn \(c.cell.rawValue) \(L)x\(H), vocabulary \(V); metadata_props[\"charrnn\"] holds the vocabulary and tokenizer (JSON)",
                          graphName: "charrnn")
        let batch = ONNXValueInfo.Dim.param("batch"), seq = ONNXValueInfo.Dim.param("seq")
        m.inputs.append(ONNXValueInfo("tokens", .int64, [batch, seq]))
        m.inputs.append(ONNXValueInfo("h", .float, [.value(L), batch, .value(H)]))
        if c.cell == .lstm { m.inputs.append(ONNXValueInfo("c", .float, [.value(L), batch, .value(H)])) }
        m.outputs.append(ONNXValueInfo("log_probs", .float, [batch, seq, .value(V)]))
        m.outputs.append(ONNXValueInfo("h_out", .float, [.value(L), batch, .value(H)]))
        if c.cell == .lstm { m.outputs.append(ONNXValueInfo("c_out", .float, [.value(L), batch, .value(H)])) }

        func node(_ op: String, _ inputs: [String], _ outputs: [String], _ attrs: [(String, ONNXAttribute)] = []) {
            m.nodes.append(ONNXNode(op, inputs, outputs, name: outputs[0] + "_" + op, attrs))
        }
        m.nodes.reserveCapacity(8 * L + 16)
        node("Transpose", ["tokens"], ["ids"], [("perm", .ints([1, 0]))])

        // layer 0 input
        var x: String
        var firstW: (name: String, floats: [Float], cols: Int)? = nil   // layer 0's ONNX W when it is not W_ih
        if c.embed > 0 {
            m.initializers.append(ONNXTensor(StateDict.embedding, dims: [V, c.embed], floats: source.tensor(StateDict.embedding)))
            node("Gather", [StateDict.embedding, "ids"], ["x0"], [("axis", .int(0))])
        } else if V <= G {
            m.initializers.append(ONNXTensor("one_hot_rows", dims: [V, V], floats: identity(V)))
            node("Gather", ["one_hot_rows", "ids"], ["x0"], [("axis", .int(0))])
        } else {
            let wih = reorderBlocks(source.tensor(StateDict.weightIH(0)), H: H, cols: V, order: order)
            m.initializers.append(ONNXTensor("input_gates_table", dims: [V, G], floats: transposed(wih, rows: G, cols: V)))
            node("Gather", ["input_gates_table", "ids"], ["x0"], [("axis", .int(0))])
            firstW = ("W_identity", identity(G), G)
        }
        x = "x0"

        var hOuts: [String] = [], cOuts: [String] = []
        for k in 0..<L {
            let D = c.inputSize(layer: k)
            let w: ONNXTensor
            if k == 0, let f = firstW {
                w = ONNXTensor("rnn.W_l0", dims: [1, G, f.cols], floats: f.floats)
            } else {
                w = ONNXTensor("rnn.W_l\(k)", dims: [1, G, D],
                               floats: reorderBlocks(source.tensor(StateDict.weightIH(k)), H: H, cols: D, order: order))
            }
            let r = ONNXTensor("rnn.R_l\(k)", dims: [1, G, H],
                               floats: reorderBlocks(source.tensor(StateDict.weightHH(k)), H: H, cols: H, order: order))
            let b = ONNXTensor("rnn.B_l\(k)", dims: [1, 2 * G],
                               floats: reorderBlocks(source.tensor(StateDict.biasIH(k)), H: H, cols: 1, order: order)
                                   + reorderBlocks(source.tensor(StateDict.biasHH(k)), H: H, cols: 1, order: order))
            m.initializers += [w, r, b, ONNXTensor("layer_\(k)", dims: [1], int64s: [Int64(k)])]
            node("Gather", ["h", "layer_\(k)"], ["h0_l\(k)"], [("axis", .int(0))])
            var ins = [x, w.name, r.name, b.name, "", "h0_l\(k)"]
            var outs = ["y_l\(k)", "h_l\(k)"]
            var attrs: [(String, ONNXAttribute)] = [("hidden_size", .int(Int64(H)))]
            switch c.cell {
            case .lstm:
                node("Gather", ["c", "layer_\(k)"], ["c0_l\(k)"], [("axis", .int(0))])
                ins.append("c0_l\(k)")
                outs.append("c_l\(k)")
                cOuts.append("c_l\(k)")
                node("LSTM", ins, outs, attrs)
            case .gru:
                attrs.append(("linear_before_reset", .int(1)))
                node("GRU", ins, outs, attrs)
            case .rnn:
                attrs.append(("activations", .strings(["Tanh"])))
                node("RNN", ins, outs, attrs)
            }
            hOuts.append("h_l\(k)")
            node("Squeeze", ["y_l\(k)", "axis_1"], ["x\(k + 1)"])
            x = "x\(k + 1)"
        }
        m.initializers.append(ONNXTensor("axis_1", dims: [1], int64s: [1]))
        node("Concat", hOuts, ["h_out"], [("axis", .int(0))])
        if c.cell == .lstm { node("Concat", cOuts, ["c_out"], [("axis", .int(0))]) }
        node("Transpose", [x], ["top"], [("perm", .ints([1, 0, 2]))])

        if let a = c.adaptive {
            let S = a.headSize, C = a.clusters, K = S + C, bounds = a.bounds
            m.initializers.append(ONNXTensor("decoder.head.weight_T", dims: [H, K],
                                             floats: transposed(source.tensor(StateDict.adaptiveHeadWeight), rows: K, cols: H)))
            m.initializers.append(ONNXTensor(StateDict.adaptiveHeadBias, dims: [K], floats: source.tensor(StateDict.adaptiveHeadBias)))
            node("MatMul", ["top", "decoder.head.weight_T"], ["head_mm"])
            node("Add", ["head_mm", StateDict.adaptiveHeadBias], ["head_logits"])
            node("LogSoftmax", ["head_logits"], ["head_lp"], [("axis", .int(-1))])
            func slice(_ name: String, _ from: Int, _ to: Int) -> [String] {
                m.initializers.append(ONNXTensor(name + "_starts", dims: [1], int64s: [Int64(from)]))
                m.initializers.append(ONNXTensor(name + "_ends", dims: [1], int64s: [Int64(to)]))
                return ["head_lp", name + "_starts", name + "_ends", "axis_2"]
            }
            m.initializers.append(ONNXTensor("axis_2", dims: [1], int64s: [2]))
            node("Slice", slice("shortlist", 0, S), ["shortlist_lp"])
            var ranked = ["shortlist_lp"]
            for i in 0..<C {
                let w = a.tailWidth(i, hidden: H), n = bounds[i + 1] - bounds[i]
                m.initializers.append(ONNXTensor("decoder.tail.\(i).0.weight_T", dims: [H, w],
                                                 floats: transposed(source.tensor(StateDict.adaptiveTailProj(i)), rows: w, cols: H)))
                m.initializers.append(ONNXTensor("decoder.tail.\(i).1.weight_T", dims: [w, n],
                                                 floats: transposed(source.tensor(StateDict.adaptiveTailOut(i)), rows: n, cols: w)))
                node("MatMul", ["top", "decoder.tail.\(i).0.weight_T"], ["tail\(i)_proj"])
                node("MatMul", ["tail\(i)_proj", "decoder.tail.\(i).1.weight_T"], ["tail\(i)_logits"])
                node("LogSoftmax", ["tail\(i)_logits"], ["tail\(i)_lp_in"], [("axis", .int(-1))])
                node("Slice", slice("cluster\(i)", S + i, S + i + 1), ["cluster\(i)_lp"])
                node("Add", ["tail\(i)_lp_in", "cluster\(i)_lp"], ["tail\(i)_lp"])
                ranked.append("tail\(i)_lp")
            }
            node("Concat", ranked, ["ranked_lp"], [("axis", .int(2))])
            var rankOf = [Int64](repeating: 0, count: V)
            for (rank, id) in a.order.enumerated() { rankOf[id] = Int64(rank) }
            m.initializers.append(ONNXTensor("rank_of_id", dims: [V], int64s: rankOf))
            node("Gather", ["ranked_lp", "rank_of_id"], ["log_probs"], [("axis", .int(2))])
        } else {
            m.initializers.append(ONNXTensor("decoder.weight_T", dims: [H, V],
                                             floats: transposed(source.tensor(StateDict.decoderWeight), rows: V, cols: H)))
            m.initializers.append(ONNXTensor(StateDict.decoderBias, dims: [V], floats: source.tensor(StateDict.decoderBias)))
            node("MatMul", ["top", "decoder.weight_T"], ["logits_mm"])
            node("Add", ["logits_mm", StateDict.decoderBias], ["logits"])
            node("LogSoftmax", ["logits"], ["log_probs"], [("axis", .int(-1))])
        }
        let bytes = m.initializers.reduce(0) { $0 + $1.raw.count }
        if bytes >= 2_000_000_000 {
            throw ExportError(path: "", message: "the weights take \(bytes) bytes; an ONNX file (one protobuf message) holds less than 2 GB")
        }
        m.metadata = [("charrnn", source.metadata.json())]
        return m
    }
}
