// Checkpoint/StateDict.swift — the one table of PyTorch state_dict names charrnn uses.
//
// Model tensors are named and shaped exactly as a PyTorch module
//   embedding = nn.Embedding(V, E); rnn = nn.LSTM/nn.GRU/nn.RNN(D, H, L); decoder = nn.Linear(H, V)
// would name them, so `model.load_state_dict` takes them as they are. Optimizer moments and the
// carried hidden state live under the `optimizer.` and `state.` prefixes.

package enum StateDict {
    package static let embedding = "embedding.weight"
    package static let decoderWeight = "decoder.weight"
    package static let decoderBias = "decoder.bias"
    package static func weightIH(_ k: Int) -> String { "rnn.weight_ih_l\(k)" }
    package static func weightHH(_ k: Int) -> String { "rnn.weight_hh_l\(k)" }
    package static func biasIH(_ k: Int) -> String { "rnn.bias_ih_l\(k)" }
    package static func biasHH(_ k: Int) -> String { "rnn.bias_hh_l\(k)" }
    // Adaptive softmax (--softmax adaptive), PyTorch nn.AdaptiveLogSoftmaxWithLoss(head_bias=True) under `decoder.`.
    package static let adaptiveHeadWeight = "decoder.head.weight"
    package static let adaptiveHeadBias = "decoder.head.bias"
    package static func adaptiveTailProj(_ i: Int) -> String { "decoder.tail.\(i).0.weight" }
    package static func adaptiveTailOut(_ i: Int) -> String { "decoder.tail.\(i).1.weight" }

    /// Optimizer moment `slot` (e.g. "square_avg", "exp_avg", "momentum_buffer") of parameter `name`.
    package static func moment(_ slot: String, of name: String) -> String { "optimizer.\(slot).\(name)" }
    /// Carried hidden state of layer k, (B, H).
    package static func stateH(_ k: Int) -> String { "state.h_l\(k)" }
    /// Carried cell state of layer k (LSTM), (B, H).
    package static func stateC(_ k: Int) -> String { "state.c_l\(k)" }
}
