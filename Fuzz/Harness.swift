// Fuzz/Harness.swift — libFuzzer entry for the targets in Tests/CharRNNTests/FuzzTargets.swift.
// Built by scripts/fuzz.sh together with that file against an ASan + coverage build of CharRNN.
// The target is chosen by the binary's name (fuzz-<target>, symlinks to one binary) or by
// CHARRNN_FUZZ_TARGET. An invariant violation aborts, so libFuzzer saves the input as a crash.

import Foundation

nonisolated(unsafe) var selectedTarget: FuzzTarget?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    var name = ProcessInfo.processInfo.environment["CHARRNN_FUZZ_TARGET"]
    if name == nil, let a0 = argv.pointee?.pointee {
        let base = (String(cString: a0) as NSString).lastPathComponent
        if base.hasPrefix("fuzz-") { name = String(base.dropFirst(5)) }
    }
    guard let name, let t = FuzzTarget(rawValue: name) else {
        fputs("choose a target: CHARRNN_FUZZ_TARGET=\(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) or run as fuzz-<target>\n", stderr)
        exit(2)
    }
    selectedTarget = t
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size > 0 && data != nil ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    do {
        try selectedTarget!.run(bytes)
    } catch {
        fputs("\(error)\n", stderr)
        abort()
    }
    return 0
}
