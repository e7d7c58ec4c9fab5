// Layers/Dropout.swift — inverted dropout (PyTorch nn.Dropout): y = x ⊙ m, m_i ∈ {0, 1/(1−p)}.
//
// Dims: T steps, B rows (streams) of this process, H units. The mask is kept for backward: dx = dy ⊙ m.
// The bits are counter-based, not a sequential stream: unit j of layer k's output at step t of global
// stream b is drawn from SplitMix64 seeded with a hash of (key, k, t, b), where `key` is one draw of
// the run's Xoshiro256 per training step (so a resumed run draws the same masks). A process that
// computes only a block of the B streams (data-parallel, Distributed/Reducers.swift) therefore draws
// exactly the bits the single process draws for those rows, and the run's generator advances by one
// word per step whatever the number of processes. The rows' seeds are three SplitMix64 rounds
// (Steele, Lea & Flood, "Fast splittable pseudorandom number generators", the splitting of
// java.util.SplittableRandom); a row's H draws are its SplitMix64 sequence.

/// Which masks a training step draws: the step's key and the global index of this process's first stream.
package struct DropoutDraw: Sendable {
    /// One word of the run's generator, drawn for this step.
    package var key: UInt64
    /// Global stream index of local row 0 (0 for the single process).
    package var firstStream: Int
    package init(key: UInt64, firstStream: Int = 0) { self.key = key; self.firstStream = firstStream }
}

package enum Dropout {
    /// Draws layer `layer`'s mask (T, B, H) for drop probability `prob`; local row b is global stream
    /// `draw.firstStream + b`. Writes mask.
    package static func drawMask(_ mask: UnsafeMutablePointer<Float>, T: Int, B: Int, H: Int, layer: Int, prob: Float,
                                draw: DropoutDraw) {
        let keep = 1 / (1 - prob)
        var layerSeed = draw.key ^ UInt64(layer)
        layerSeed = Xoshiro256.splitmix(&layerSeed)
        for t in 0..<T {
            var stepSeed = layerSeed ^ UInt64(t)
            stepSeed = Xoshiro256.splitmix(&stepSeed)
            for b in 0..<B {
                var s = stepSeed ^ UInt64(draw.firstStream + b)
                s = Xoshiro256.splitmix(&s)
                let row = mask + (t * B + b) * H
                for j in 0..<H {
                    let u = Float(Xoshiro256.splitmix(&s) >> 40) * (1.0 / 16_777_216.0)   // 24 bits, as Xoshiro256.nextFloat
                    row[j] = u < prob ? 0 : keep
                }
            }
        }
    }

    /// out = x ⊙ mask. Writes out (may alias x).
    package static func apply(_ x: UnsafePointer<Float>, mask: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, n: Int) {
        for i in 0..<n { out[i] = x[i] * mask[i] }
    }
}
