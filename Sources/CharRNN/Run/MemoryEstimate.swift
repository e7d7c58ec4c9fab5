// Run/MemoryEstimate.swift — predict a run's memory before allocating it, and compare it with what
// the machine (or its cgroup) has available.
//
// Estimate (bytes):
//   tokens      = token count × bytes per id (2 while V ≤ 65,536, else 4)
//   model       = P × 4 × (1 parameters + 1 gradients + optimizer slots), P = NetworkSpec.parameterCount
//   workspace   = NetworkSpec.activationBytes(rows: N), N = seq × streams (batch, or a rank's block),
//                 plus with --precision bf16 NetworkSpec.bf16TrainingBytes(rows: N) (packed weight
//                 copies and rounded operands)
// Data-parallel, the ranks on one host share its memory: the check is for all of them (every rank
// needs the model, its moments and its block's activations).
// Loading needs the token buffer plus one 8 MB chunk of the file; the file itself is not resident.
// Before the corpus is decoded the token count is predicted from the byte count (scalar tokens ≤ bytes).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

package struct MemoryEstimate: Sendable, CustomStringConvertible {
    package var tokens: Int
    package var model: Int
    package var workspace: Int
    package var total: Int { tokens + model + workspace }

    package init(tokens: Int, model: Int, workspace: Int) {
        self.tokens = tokens; self.model = model; self.workspace = workspace
    }

    /// Estimate for training `config` with `train` on `tokenCount` tokens of `bytesPerToken` bytes, in
    /// a process that computes `streams` of the batch's streams (data-parallel: its block; default all).
    package init(tokenCount: Int, bytesPerToken: Int, config: ModelConfig, train: TrainConfig, streams: Int? = nil) {
        tokens = tokenCount * bytesPerToken
        let spec = NetworkSpec(config)
        model = spec.parameterCount * 4 * (2 + train.optim.slots.count)
        let N = train.seq * (streams ?? train.batch)
        workspace = spec.activationBytes(rows: N) + ((train.precision ?? .fp32) == .bf16 ? spec.bf16TrainingBytes(rows: N) : 0)
    }

    package var description: String {
        "\(Self.mb(total)) (tokens \(Self.mb(tokens)), parameters+gradients+optimizer \(Self.mb(model)), activations \(Self.mb(workspace)))"
    }

    static func mb(_ b: Int) -> String { String(format: "%.0f MB", Double(b) / 1_048_576) }

    /// Bytes this process can still allocate: MemAvailable, capped by a cgroup v2 limit when one is set.
    package static func availableBytes() -> Int? {
        var avail: Int? = nil
        if let s = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) {
            for line in s.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
                let f = line.split(separator: " ")
                if f.count >= 2, let kb = Int(f[1]) { avail = kb * 1024 }
            }
        }
        if let maxS = try? String(contentsOfFile: "/sys/fs/cgroup/memory.max", encoding: .utf8),
           let limit = Int(maxS.trimmingCharacters(in: .whitespacesAndNewlines)),
           let curS = try? String(contentsOfFile: "/sys/fs/cgroup/memory.current", encoding: .utf8),
           let cur = Int(curS.trimmingCharacters(in: .whitespacesAndNewlines)) {
            avail = min(avail ?? Int.max, max(0, limit - cur))
        }
        return avail
    }
}

/// The run would not fit in memory.
package struct OutOfMemoryPrediction: Error, CustomStringConvertible {
    package let what: String
    package let needed: Int
    package let available: Int
    package let suggestion: String
    package var description: String {
        "\(what) needs about \(MemoryEstimate.mb(needed)) but only \(MemoryEstimate.mb(available)) is available; \(suggestion)"
    }

    /// Throws when `needed` exceeds the available memory (`available` nil = measure it).
    package static func check(_ what: String, needed: Int, available: Int? = MemoryEstimate.availableBytes(),
                             suggestion: String) throws {
        guard let available, needed > available else { return }
        throw OutOfMemoryPrediction(what: what, needed: needed, available: available, suggestion: suggestion)
    }
}
