// Model/ModelConfig.swift — the shape of a model, stored in every checkpoint.

/// Hyper-parameters that fix the parameter tensors' names and shapes.
public struct ModelConfig: Codable, Sendable, Equatable {
    /// The recurrent cell: LSTM, GRU or a plain tanh RNN (PyTorch's equations and gate order).
    public var cell: CellKind
    /// Stacked recurrent layers.
    public var layers: Int
    /// Hidden units per layer.
    public var hidden: Int
    /// 0 = one-hot input (a column gather of the first layer's W_ih); > 0 = embedding width.
    public var embed: Int
    /// Inverted-dropout probability between layers and before the decoder (training only).
    public var dropout: Float
    /// Tokens in the vocabulary (the size of the one-hot input and of the output distribution).
    public var vocabSize: Int
    /// Output layer: nil = full softmax (`decoder.weight`, `decoder.bias`); set = adaptive softmax.
    package var adaptive: AdaptiveSoftmaxConfig? = nil

    /// A model shape; `vocabSize` is the corpus's (a `TrainingRun` sets it from the corpus it loads).
    public init(cell: CellKind = .lstm, layers: Int = 2, hidden: Int = 128, embed: Int = 0, dropout: Float = 0, vocabSize: Int) {
        self.cell = cell; self.layers = layers; self.hidden = hidden; self.embed = embed
        self.dropout = dropout; self.vocabSize = vocabSize
    }

    /// Input width of layer k.
    package func inputSize(layer k: Int) -> Int { k > 0 ? hidden : (embed > 0 ? embed : vocabSize) }

    /// Number of trainable parameters (from the network's spec; the config must have no `problem`).
    public var parameterCount: Int { NetworkSpec(self).parameterCount }

    /// Problems with the numbers, or nil.
    public var problem: String? {
        if layers < 1 { return "\(Setting.layers) must be at least 1" }
        if hidden < 1 { return "\(Setting.hidden) must be at least 1" }
        if embed < 0 { return "\(Setting.embed) must be 0 (one-hot) or positive" }
        if let p = Bounds.check("\(Setting.dropout)", Double(dropout), in: 0...Bounds.maxDropout) { return p }
        if vocabSize < 1 { return "vocabulary is empty" }
        // Bounds far past any machine, so that sizes computed from them cannot overflow an Int
        // (the memory estimate then refuses what does not fit).
        if layers > 1024 { return "\(Setting.layers) must be at most 1024" }
        if hidden > 1 << 20 { return "\(Setting.hidden) must be at most 1048576" }
        if embed > 1 << 20 { return "\(Setting.embed) must be at most 1048576" }
        if vocabSize > 1 << 30 { return "vocabulary is larger than 2^30 tokens" }
        if let adaptive {
            if let p = adaptive.problem { return p }
            if adaptive.order.count != vocabSize { return "adaptive softmax covers \(adaptive.order.count) tokens, vocabulary has \(vocabSize)" }
        }
        return nil
    }
}
