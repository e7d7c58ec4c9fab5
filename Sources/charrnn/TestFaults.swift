// charrnn/TestFaults.swift — fault injection for the reliability tests, compiled into debug builds only
// (Package.swift defines CHARRNN_FAULTS for the debug configuration): a release binary reads none of
// these variables. The tests and scripts that use them (FaultInjectionCLITests, scripts/mpi-check.sh) run
// the debug build.
//   CHARRNN_FAULT_NONFINITE=3,4,5   a NaN in the gradient at those (1-based) iterations
//   CHARRNN_FAULT_SLOW_SAVE=4       each checkpoint write first waits 4 s (a slow disk: under mpirun the
//                                   other ranks wait for rank 0's write, which the watchdog must allow)
//   CHARRNN_FAULT_PROGRESS_INTERVAL=0.05   seconds between two `--progress plain` lines (30 s otherwise)

#if CHARRNN_FAULTS
import CharRNN
import Foundation

enum TestFaults {
    static var progressInterval: Double? {
        ProcessInfo.processInfo.environment["CHARRNN_FAULT_PROGRESS_INTERVAL"].flatMap { Double($0) }.map { max(0, $0) }
    }

    static func install(on trainer: Trainer) {
        let env = ProcessInfo.processInfo.environment
        if let spec = env["CHARRNN_FAULT_NONFINITE"] {
            let at = Set(spec.split(separator: ",").compactMap { Int($0) })
            trainer.gradientFault = { it, g in if at.contains(it) { g[0] = .nan } }
        }
        if let spec = env["CHARRNN_FAULT_SLOW_SAVE"], let s = Double(spec), s > 0 {
            trainer.saveFault = { usleep(UInt32(min(s, 3600) * 1e6)) }
        }
    }
}
#endif
