// Bench/Probes.swift — what the machine can do, measured in the same run as the figures they are
// compared with: sgemm GFLOP/s (the fp32 ceiling of the training step), read bandwidth (the ceiling of
// a memory-bound sampling step), peak RSS, and the heap-allocation counter of scripts/malloc-count.c.
// The probes allocate their own buffers; none runs inside a timed loop.

import Foundation

/// The allocation counter of scripts/malloc-count.c, when it is preloaded.
enum MallocCounter {
    typealias Fn = @convention(c) () -> UInt
    static let fn: Fn? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "charrnn_malloc_count") else { return nil }
        return unsafeBitCast(sym, to: Fn.self)
    }()
    static var count: Int? { fn.map { Int($0()) } }
}

extension Benchmark {
    /// sgemm GFLOP/s on n×n×n (median of `reps` after one warm-up), with the current BLAS threads.
    package static func sgemmGFLOPS(n: Int = 2048, reps: Int = 5) -> Double {
        let a = Storage(count: n * n), b = Storage(count: n * n), c = Storage(count: n * n)
        for i in 0..<(n * n) { a.ptr[i] = Float(i % 7) * 0.1; b.ptr[i] = Float(i % 5) * 0.1 }
        var times: [Double] = []
        for r in 0...reps {
            let t0 = DispatchTime.now().uptimeNanoseconds
            gemm(.noTrans, .noTrans, m: n, n: n, k: n, a: a.ptr, lda: n, b: b.ptr, ldb: n, beta: 0, c: c.ptr, ldc: n)
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if r > 0 { times.append(dt) }
        }
        times.sort()
        return 2 * pow(Double(n), 3) / times[times.count / 2] / 1e9
    }

    /// Read bandwidth in GB/s over a buffer of `bytes`, each of the pool's cores summing its own slice
    /// (median of 9 passes after one warm-up): what a memory-bound sampling step can reach.
    package static func readBandwidthGBs(bytes: Int) -> Double {
        let n = max(vecWidth, bytes / 4)
        let buf = Storage(count: n)
        for i in 0..<n { buf.ptr[i] = Float(i & 7) }
        let pool = WorkerPool.shared
        let parts = pool.width
        let sums = Storage(count: parts * 16)
        var times: [Double] = []
        for r in 0...9 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            pool.run(parts: parts, with: ReadJob(buf: buf.ptr, n: n, sums: sums.ptr, parts: parts)) {
                $0.assumingMemoryBound(to: ReadJob.self).pointee.run(part: $1)
            }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if r > 0 { times.append(dt) }
        }
        times.sort()
        return Double(n * 4) / times[times.count / 2] / 1e9
    }

    /// Peak resident set size of this process so far, in MB.
    package static func peakRSSMB() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_maxrss) / 1024
    }
}

/// One core's slice of the read-bandwidth probe: a 16-lane sum, four accumulators (allocation-free pool job).
private struct ReadJob {
    let buf: UnsafePointer<Float>, n: Int, sums: UnsafeMutablePointer<Float>, parts: Int
    func run(part: Int) {
        let r = slice(n / vecWidth, part: part, of: parts)
        var a = Vec(), b = Vec(), c = Vec(), d = Vec()
        var i = r.lowerBound
        while i + 4 <= r.upperBound {
            let p = buf + i * vecWidth
            a += vload(p); b += vload(p + 16); c += vload(p + 32); d += vload(p + 48)
            i += 4
        }
        while i < r.upperBound { a += vload(buf + i * vecWidth); i += 1 }
        sums[part * 16] = (a + b + c + d).sum()
    }
}
