// Layers/Dropout.swift — inverted dropout (PyTorch nn.Dropout): y = x ⊙ m, m_i ∈ {0, 1/(1−p)}.
//
// The mask is drawn from the run's Xoshiro256 stream (so a resumed run draws the same masks) and
// kept for backward: dx = dy ⊙ m.

public enum Dropout {
    /// Draws a fresh mask (n floats) for drop probability `prob`. Writes mask.
    public static func drawMask(_ mask: UnsafeMutablePointer<Float>, n: Int, prob: Float, rng: inout Xoshiro256) {
        let keep = 1 / (1 - prob)
        for i in 0..<n { mask[i] = rng.nextFloat() < prob ? 0 : keep }
    }

    /// out = x ⊙ mask. Writes out (may alias x).
    public static func apply(_ x: UnsafePointer<Float>, mask: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, n: Int) {
        for i in 0..<n { out[i] = x[i] * mask[i] }
    }
}
