// Model/NetworkSpec.swift — every tensor of a network, derived from its ModelConfig, in one place.
//
// Legend: V vocabulary, E embedding width, D_k input width of layer k (V one-hot, E, or H), H hidden,
// G = gates·H, L layers, B carried streams; adaptive softmax: S head size, C clusters, w_i tail widths,
// n_i cluster sizes.
//
//   parameter      embedding.weight (V, E)                               [only with E > 0]
//                  rnn.weight_ih_l{k} (G, D_k)  rnn.weight_hh_l{k} (G, H)  rnn.bias_ih_l{k} (G)  rnn.bias_hh_l{k} (G)
//                  full softmax:     decoder.weight (V, H)  decoder.bias (V)
//                  adaptive softmax: decoder.head.weight (S+C, H)  decoder.head.bias (S+C)
//                                    decoder.tail.{i}.0.weight (w_i, H)  decoder.tail.{i}.1.weight (n_i, w_i)
//   optimizer slot optimizer.<slot>.<parameter name>, the parameter's shape, one set per slot
//   carried state  state.h_l{k} (B, H), and state.c_l{k} (B, H) for the LSTM
//
// The order of `parameters` is the model's memory order (and so the order of initialisation); the
// names are StateDict's. Allocation (ParameterLayout), checkpoint writing, reading and validation,
// the parameter count, the memory estimate, the FLOP count of `bench` and `info` read this table.

/// What a tensor of a checkpoint is for.
package enum TensorRole: Sendable, Equatable {
    case parameter
    /// An optimizer moment (`slot`, e.g. "square_avg") of a parameter.
    case optimizerSlot(String)
    /// Hidden state carried across minibatches (truncated BPTT).
    case carriedState
}

/// One tensor: its state_dict name, row-major shape and role.
package struct TensorSpec: Sendable, Equatable {
    package let name: String
    package let shape: [Int]
    package let role: TensorRole
    /// Multiply-adds per token of the forward pass this weight takes part in (0 for biases, an
    /// embedding or a one-hot input matrix, which are gathered, not multiplied).
    package let macsPerToken: Int
    /// For adaptive-softmax tail weights: the cluster, whose rows only the tokens in it pay for.
    package let tailCluster: Int?

    init(_ name: String, _ shape: [Int], role: TensorRole = .parameter, macs: Int = 0, tail: Int? = nil) {
        self.name = name; self.shape = shape; self.role = role; self.macsPerToken = macs; self.tailCluster = tail
    }

    package var count: Int { shape.reduce(1, *) }
}

/// The tensors of a network described by a `ModelConfig` (which must have no `problem`: its bounds
/// keep every size here far from overflowing an Int).
package struct NetworkSpec: Sendable {
    package let config: ModelConfig
    /// Trainable parameters in memory order.
    package let parameters: [TensorSpec]

    package init(_ config: ModelConfig) {
        precondition(config.problem == nil, config.problem ?? "")
        self.config = config
        let V = config.vocabSize, H = config.hidden
        var t: [TensorSpec] = []
        if config.embed > 0 { t.append(TensorSpec(StateDict.embedding, [V, config.embed])) }
        for k in 0..<config.layers {
            t += Self.recurrentTensors(layer: k, cell: config.cell, inputSize: config.inputSize(layer: k), hidden: H,
                                       oneHotInput: k == 0 && config.embed == 0)
        }
        if let a = config.adaptive {
            t += Self.adaptiveTensors(a, hidden: H)
        } else {
            t.append(TensorSpec(StateDict.decoderWeight, [V, H], macs: V * H))
            t.append(TensorSpec(StateDict.decoderBias, [V]))
        }
        parameters = t
    }

    /// The four tensors of recurrent layer `k` (PyTorch nn.LSTM/GRU/RNN names and shapes).
    package static func recurrentTensors(layer k: Int, cell: CellKind, inputSize D: Int, hidden H: Int,
                                        oneHotInput: Bool = false) -> [TensorSpec] {
        let G = cell.gates * H
        return [TensorSpec(StateDict.weightIH(k), [G, D], macs: oneHotInput ? 0 : G * D),
                TensorSpec(StateDict.weightHH(k), [G, H], macs: G * H),
                TensorSpec(StateDict.biasIH(k), [G]),
                TensorSpec(StateDict.biasHH(k), [G])]
    }

    /// The head and tail tensors of an adaptive softmax (PyTorch nn.AdaptiveLogSoftmaxWithLoss names).
    package static func adaptiveTensors(_ a: AdaptiveSoftmaxConfig, hidden H: Int) -> [TensorSpec] {
        let K = a.headSize + a.clusters, b = a.bounds
        var t = [TensorSpec(StateDict.adaptiveHeadWeight, [K, H], macs: K * H), TensorSpec(StateDict.adaptiveHeadBias, [K])]
        for i in 0..<a.clusters {
            let w = a.tailWidth(i, hidden: H), n = b[i + 1] - b[i]
            t.append(TensorSpec(StateDict.adaptiveTailProj(i), [w, H], macs: w * H, tail: i))
            t.append(TensorSpec(StateDict.adaptiveTailOut(i), [n, w], macs: n * w, tail: i))
        }
        return t
    }

    /// Number of trainable parameters.
    package var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    /// The moments an optimizer keeps: one tensor per parameter and slot, slot-major.
    package func optimizerSlots(_ kind: OptimizerKind) -> [TensorSpec] {
        kind.slots.flatMap { slot in
            parameters.map { TensorSpec(StateDict.moment(slot, of: $0.name), $0.shape, role: .optimizerSlot(slot)) }
        }
    }

    /// The carried state of `streams` streams: h of every layer, then c of every layer (LSTM).
    package func carriedState(streams B: Int) -> [TensorSpec] {
        let L = config.layers, H = config.hidden
        let h = (0..<L).map { TensorSpec(StateDict.stateH($0), [B, H], role: .carriedState) }
        let c = config.cell == .lstm ? (0..<L).map { TensorSpec(StateDict.stateC($0), [B, H], role: .carriedState) } : []
        return h + c
    }

    /// Forward multiply-adds per token. An adaptive softmax's tail i counts with `tailShares[i]`, the
    /// fraction of tokens whose target falls in it (training evaluates a tail only on those rows);
    /// without shares every tail counts fully (the cost of the exact distribution).
    package func forwardMACsPerToken(tailShares: [Double]? = nil) -> Double {
        parameters.reduce(0.0) { sum, t in
            let share = t.tailCluster.map { i in tailShares.map { i < $0.count ? $0[i] : 1 } ?? 1 } ?? 1
            return sum + Double(t.macsPerToken) * share
        }
    }

    /// Bytes of activations and workspace for training minibatches of `rows` = seq × batch rows: per
    /// layer the LSTM's caches (gates, c, h, tanh c) and their gradients (an upper bound for GRU/RNN),
    /// the embedding output and its gradient, the decoder outputs, and an adaptive softmax's
    /// gathered rows and full-distribution block.
    package func activationBytes(rows N: Int) -> Int {
        let c = config
        let outputs = c.adaptive.map { $0.headSize + $0.cutoffs.count } ?? c.vocabSize
        return N * 4 * (16 * c.layers * c.hidden + 2 * c.embed + outputs)
            + (c.adaptive != nil ? N * 4 * (2 * c.hidden + c.vocabSize) : 0)
    }

    /// Bytes bf16 training (`--precision bf16`, Model/MixedPrecision.swift) adds for N rows (seq ×
    /// streams), an upper bound: two packed bf16 copies (Wᵀ for forward, W for backward) of every
    /// multiplied weight matrix, and the scratch its products round activations into — rows of the
    /// widest operand, the transposed gradient pairs of the tallest matrix and the activation panels
    /// of the widest input, each N deep.
    package func bf16TrainingBytes(rows N: Int) -> Int {
        var matrixElements = 0, widest = config.hidden, tallest = 1, widestInput = config.hidden
        for t in parameters where t.shape.count == 2 && t.macsPerToken > 0 {
            matrixElements += t.count
            widest = max(widest, t.shape[0], t.shape[1])
            tallest = max(tallest, t.shape[0])
            widestInput = max(widestInput, t.shape[1])
        }
        return 2 * 2 * matrixElements + 2 * N * (widest + tallest + widestInput)
    }
}

extension ParameterLayout {
    /// The layout of `tensors`, in their order.
    package init(_ tensors: [TensorSpec]) {
        self.init()
        for t in tensors { add(t.name, shape: t.shape) }
    }
}
