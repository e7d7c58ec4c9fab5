// Tensor/Profile.swift — where a training step's time goes (`charrnn bench --profile`).
//
// Off by default: every probe is one load of `enabled` and a branch. On, a probe reads the monotonic
// clock (vDSO, ~20 ns) and adds wall seconds to its phase, less the pool waits that fell inside it
// (those count once, under poolWait). Probes sit on the calling thread only (the pool's part 0), so
// the phases add up to the step's wall time, less what no probe covers:
//   inputProjection    embedding gather, x · W_ihᵀ (or the one-hot gather) of every layer
//   recurrentProducts  per-step h · W_hhᵀ (and dA · W_hh in backward), W_hh packing
//   gates              the fused per-step cell kernels, forward and backward
//   output             output layer: decoder GEMMs, softmax and cross-entropy, their backward
//   weightGradients    per-layer dW_ih, dW_hh, bias sums and dx GEMMs over all T·B rows
//   optimizer          gradient norm, clipping, the optimizer step (bf16 in a process alone: with the
//                      weight pack, which it does block by block)
//   bf16WeightPack     bf16 under mpirun: rounding the gathered weights into their bf16 copies
//   poolWait           part 0 waiting for the other parts of a parallel region to finish

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

package enum ProfilePhase: Int, CaseIterable, Sendable {
    case inputProjection, recurrentProducts, gates, output, weightGradients, optimizer, bf16WeightPack, poolWait

    package var name: String {
        switch self {
        case .inputProjection: "input projection"
        case .recurrentProducts: "recurrent products"
        case .gates: "gate kernels"
        case .output: "decoder + softmax"
        case .weightGradients: "weight gradients"
        case .optimizer: "optimizer"
        case .bf16WeightPack: "bf16 weight pack"
        case .poolWait: "pool waits"
        }
    }
}

package enum Profiler {
    /// Turns the probes on or off (not while a step runs).
    package nonisolated(unsafe) static var enabled = false
    nonisolated(unsafe) static let seconds: UnsafeMutablePointer<Double> = {
        let p = UnsafeMutablePointer<Double>.allocate(capacity: ProfilePhase.allCases.count)
        p.initialize(repeating: 0, count: ProfilePhase.allCases.count)
        return p
    }()

    /// Monotonic nanoseconds, or 0 when off.
    @inline(__always) package static func now() -> UInt64 {
        guard enabled else { return 0 }
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// A phase's start: the clock and the pool waits so far.
    package struct Probe: Sendable { let t: UInt64; let waits: Double }
    /// A probe for code that does not report (the pool's other parts).
    package static let idle = Probe(t: 0, waits: 0)

    @inline(__always) package static func start() -> Probe {
        Probe(t: now(), waits: enabled ? seconds[ProfilePhase.poolWait.rawValue] : 0)
    }

    /// Adds the wall time since `probe`, less the pool waits inside it, to `phase`; returns a new
    /// probe (the next phase's start).
    @inline(__always) @discardableResult
    package static func stop(_ phase: ProfilePhase, _ probe: Probe) -> Probe {
        guard enabled else { return probe }
        let next = start()
        seconds[phase.rawValue] += Double(next.t &- probe.t) * 1e-9 - (next.waits - probe.waits)
        return next
    }

    /// Adds the time since `t0` (from `now()`) to `phase` as it is (for the pool's own waits).
    @inline(__always) static func add(_ phase: ProfilePhase, since t0: UInt64) {
        if enabled { seconds[phase.rawValue] += Double(now() &- t0) * 1e-9 }
    }

    package static func reset() { seconds.update(repeating: 0, count: ProfilePhase.allCases.count) }

    /// Seconds per phase since the last reset.
    package static func snapshot() -> [ProfilePhase: Double] {
        Dictionary(uniqueKeysWithValues: ProfilePhase.allCases.map { ($0, seconds[$0.rawValue]) })
    }
}
