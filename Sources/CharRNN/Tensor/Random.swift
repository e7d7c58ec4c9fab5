// Tensor/Random.swift — deterministic, checkpointable random numbers.
//
// xoshiro256** (Blackman & Vigna) seeded through SplitMix64. The whole state is four UInt64s,
// stored in checkpoints so that a resumed run draws exactly the numbers the uninterrupted run would.

/// A small, fast, reproducible PRNG whose state can be saved and restored.
package struct Xoshiro256: RandomNumberGenerator, Sendable, Equatable {
    package var state: (UInt64, UInt64, UInt64, UInt64)

    /// Seeds the four words with SplitMix64 of `seed`.
    package init(seed: UInt64) {
        var z = seed
        state = (Self.splitmix(&z), Self.splitmix(&z), Self.splitmix(&z), Self.splitmix(&z))
    }

    /// One SplitMix64 step: advances `x` by the golden-ratio increment and returns its mix.
    @inline(__always)
    package static func splitmix(_ x: inout UInt64) -> UInt64 {
        x &+= 0x9E37_79B9_7F4A_7C15
        var r = x
        r = (r ^ (r >> 30)) &* 0xBF58_476D_1CE4_E5B9
        r = (r ^ (r >> 27)) &* 0x94D0_49BB_1331_11EB
        return r ^ (r >> 31)
    }

    /// Restores a saved state (see `words`).
    package init(words: [UInt64]) {
        precondition(words.count == 4 && words.contains { $0 != 0 }, "invalid xoshiro state")
        state = (words[0], words[1], words[2], words[3])
    }

    package var words: [UInt64] { [state.0, state.1, state.2, state.3] }

    @inline(__always)
    package mutating func next() -> UInt64 {
        let result = ((state.1 &* 5) << 7 | (state.1 &* 5) >> 57) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = (state.3 << 45) | (state.3 >> 19)
        return result
    }

    /// Uniform Float in [0, 1) with 24 random bits.
    @inline(__always)
    package mutating func nextFloat() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Uniform Double in [0, 1) with 53 random bits.
    @inline(__always)
    package mutating func nextDouble() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }

    package static func == (a: Xoshiro256, b: Xoshiro256) -> Bool { a.words == b.words }
}
