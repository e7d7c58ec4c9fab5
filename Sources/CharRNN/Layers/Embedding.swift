// Layers/Embedding.swift — token embedding table, PyTorch nn.Embedding (state_dict `embedding.weight`, (V, E)).
//
//   forward:  x[r] = W[token r]            (row gather, T·B rows of E)
//   backward: dW[token r] += dx[r]         (scatter-add; accumulates)

package struct EmbeddingLayer: Sendable {
    package let weight: TensorView   // (V, E)
    package let V: Int, E: Int

    package init(weight: TensorView) {
        precondition(weight.shape.count == 2)
        self.weight = weight; V = weight.shape[0]; E = weight.shape[1]
    }

    /// Writes out (rows, E).
    package func forward(ids: UnsafePointer<Int32>, rows: Int, p: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
        let w = p + weight.offset
        for r in 0..<rows {
            let tok = Int(ids[r])
            precondition(tok >= 0 && tok < V, "token id \(tok) outside vocabulary of \(V)")
            (out + r * E).update(from: w + tok * E, count: E)
        }
    }

    /// Accumulates dW from dout (rows, E).
    package func backward(ids: UnsafePointer<Int32>, rows: Int, dout: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>) {
        let dw = g + weight.offset
        for r in 0..<rows {
            axpy(n: E, alpha: 1, x: dout + r * E, y: dw + Int(ids[r]) * E)
        }
    }
}
