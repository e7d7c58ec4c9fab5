// Tensor/Pointwise.swift — vectorised exp / sigmoid / tanh and small row kernels.
//
// exp(x) = 2^n · p(r), n = round(x·log2 e), r = x − n·ln2 (Cody–Waite split), p a degree-6 Taylor
// polynomial on |r| ≤ ln2/2: relative error ≲ 2e-7, i.e. about one Float ulp, which keeps the
// float-vs-double gradient checks tight. sigmoid(x) = 1/(1+e^−x); tanh(x) = 1 − 2/(e^{2x}+1)
// (absolute error ≲ 3e-7 everywhere, exact limits ±1 and 0/1 saturate without NaN).
// Every kernel has a SIMD16 body, written once as a function generic over `Lanes`: a row runs it on
// whole vectors (`WholeLanes`, plain loads and stores) and then once on its tail of fewer than 16
// floats (`TailLanes`, a partly filled vector). Keeping the two apart matters: one loop whose loads
// chose between the two at run time compiled to split 128-bit halves and lane inserts, and ran the
// LSTM forward kernel 3× slower. The math functions are @_transparent for the same reason — with
// @inline(__always) alone the compiler kept some as calls, passing each vector in four registers.

/// The library's one SIMD vector type: the pointwise kernels here and the packed GEMM's tiles.
package typealias Vec = SIMD16<Float>
package let vecWidth = 16

@usableFromInline let expHi: Float = 88.0
@usableFromInline let expLo: Float = -87.0

/// e^x for sixteen lanes (inputs clamped to [−87, 88], so the result is finite and ≥ 2^-126).
/// Rounding to the nearest integer uses the 1.5·2²³ trick: adding it leaves round(x·log2 e) in the
/// low mantissa bits, which also gives the integer exponent without a float→int conversion.
@_transparent
package func vexp(_ x0: Vec) -> Vec {
    let x = vclamp(x0, expLo, expHi)
    let magic = Vec(repeating: 12_582_912.0)                 // 1.5 · 2²³
    let t = x * 1.442_695_04 + magic
    let n = t - magic                                        // round(x · log2 e)
    var r = x - n * 0.693_145_751_953_125                    // ln2 high part (exact in Float)
    r = r - n * 1.428_606_765_330_187e-06                    // ln2 low part
    var p: Vec = Vec(repeating: 1.0 / 720.0)
    p = vfma(p, r, 1.0 / 120.0)
    p = vfma(p, r, 1.0 / 24.0)
    p = vfma(p, r, 1.0 / 6.0)
    p = vfma(p, r, 0.5)
    p = vfma(p, r, 1.0)
    p = vfma(p, r, 1.0)
    let k = unsafeBitCast(t, to: SIMD16<Int32>.self) &- 0x4B40_0000   // integer n
    return p * unsafeBitCast((k &+ 127) &<< 23, to: Vec.self)         // · 2ⁿ
}

/// a · b + c, fused where the CPU has FMA (CHARRNN_FMA, set by Package.swift; elsewhere a fused
/// multiply-add would become a libm call per lane).
@_transparent
package func vfma(_ a: Vec, _ b: Vec, _ c: Float) -> Vec {
#if CHARRNN_FMA
    Vec(repeating: c).addingProduct(a, b)
#else
    a * b + c
#endif
}

/// Lane-wise clamp to [lo, hi] (comparisons and blends; the generic `clamped` does not vectorise).
@_transparent
package func vclamp(_ x: Vec, _ lo: Float, _ hi: Float) -> Vec {
    var y = x
    y.replace(with: Vec(repeating: lo), where: y .< Vec(repeating: lo))
    y.replace(with: Vec(repeating: hi), where: y .> Vec(repeating: hi))
    return y
}

/// Lane-wise maximum.
@_transparent
package func vmax(_ a: Vec, _ b: Vec) -> Vec {
    var y = a
    y.replace(with: b, where: b .> a)
    return y
}

/// 1 / (1 + e^−x) for sixteen lanes.
@_transparent package func vsigmoid(_ x: Vec) -> Vec { 1 / (1 + vexp(-x)) }

/// tanh(x) for sixteen lanes.
@_transparent package func vtanh(_ x: Vec) -> Vec { 1 - 2 / (vexp(x + x) + 1) }


// MARK: - Unaligned SIMD loads and stores

@inline(__always)
package func vload(_ p: UnsafePointer<Float>) -> Vec {
    UnsafeRawPointer(p).loadUnaligned(as: Vec.self)
}

@inline(__always)
package func vstore(_ v: Vec, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vec.self)
}

// MARK: - Whole vectors and row tails

/// How a kernel body reads and writes its sixteen lanes.
package protocol Lanes {
    /// Floats this access covers (16, or a tail's count).
    var count: Int { get }
    func load(_ p: UnsafePointer<Float>) -> Vec
    func store(_ v: Vec, _ p: UnsafeMutablePointer<Float>)
    /// v with the lanes outside this access zeroed (for sums over loaded-as-zero lanes).
    func keep(_ v: Vec) -> Vec
}

/// Sixteen floats: plain vector loads and stores.
package struct WholeLanes: Lanes {
    package init() {}
    package var count: Int { vecWidth }
    @_transparent package func load(_ p: UnsafePointer<Float>) -> Vec { vload(p) }
    @_transparent package func store(_ v: Vec, _ p: UnsafeMutablePointer<Float>) { vstore(v, p) }
    @_transparent package func keep(_ v: Vec) -> Vec { v }
}

/// The first `count` (< 16) floats of a row tail; the other lanes load as 0 and are not stored.
package struct TailLanes: Lanes {
    package let count: Int
    package init(_ count: Int) { self.count = count }
    @_transparent package func load(_ p: UnsafePointer<Float>) -> Vec { vloadPartial(p, count) }
    @_transparent package func store(_ v: Vec, _ p: UnsafeMutablePointer<Float>) { vstorePartial(v, p, count) }
    @_transparent package func keep(_ v: Vec) -> Vec {
        var out = Vec()
        for k in 0..<count { out[k] = v[k] }
        return out
    }
}

/// Calls `body(WholeLanes(), j)` for j = 0, 16, … while 16 floats remain of `n`, then
/// `tail(TailLanes(n % 16), j)` once if any are left. Both closures are the same generic kernel
/// body; this spells the split once.
@_transparent
package func forEachLaneBlock(_ n: Int, _ body: (WholeLanes, Int) -> Void, tail: (TailLanes, Int) -> Void) {
    var j = 0
    while j + vecWidth <= n { body(WholeLanes(), j); j += vecWidth }
    if j < n { tail(TailLanes(n - j), j) }
}

// MARK: - Small row kernels

/// c[i] = a[i] + b[i] (n floats). Writes c.
@inline(__always)
package func addVectors(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into c: UnsafeMutablePointer<Float>, n: Int) {
    for i in 0..<n { c[i] = a[i] + b[i] }
}

/// dst (rows×cols) += srcᵀ where src is (cols×rows). Accumulates.
package func addTransposed(_ src: UnsafePointer<Float>, rows: Int, cols: Int, into dst: UnsafeMutablePointer<Float>) {
    // Blocked so both sides stay in cache for large vocabularies.
    let bs = 32
    var r0 = 0
    while r0 < rows {
        let r1 = min(rows, r0 + bs)
        var c0 = 0
        while c0 < cols {
            let c1 = min(cols, c0 + bs)
            for r in r0..<r1 {
                let d = dst + r * cols
                for c in c0..<c1 { d[c] += src[c * rows + r] }
            }
            c0 = c1
        }
        r0 = r1
    }
}

/// dst (cols×rows) = srcᵀ where src is (rows×cols). Writes dst.
package func transpose(_ src: UnsafePointer<Float>, rows: Int, cols: Int, into dst: UnsafeMutablePointer<Float>) {
    let bs = 32
    var r0 = 0
    while r0 < rows {
        let r1 = min(rows, r0 + bs)
        var c0 = 0
        while c0 < cols {
            let c1 = min(cols, c0 + bs)
            for r in r0..<r1 {
                let s = src + r * cols
                for c in c0..<c1 { dst[c * rows + r] = s[c] }
            }
            c0 = c1
        }
        r0 = r1
    }
}

/// Loads `n` (< 16) floats into the low lanes, zero elsewhere (row tails).
@inline(__always)
package func vloadPartial(_ p: UnsafePointer<Float>, _ n: Int) -> Vec {
    var v = Vec()
    for k in 0..<n { v[k] = p[k] }
    return v
}

/// Stores the low `n` (< 16) lanes.
@inline(__always)
package func vstorePartial(_ v: Vec, _ p: UnsafeMutablePointer<Float>, _ n: Int) {
    for k in 0..<n { p[k] = v[k] }
}

/// Loads min(16, n) floats: a full vector when n ≥ 16, else a zero-padded tail.
@inline(__always)
package func vload(_ p: UnsafePointer<Float>, _ n: Int) -> Vec {
    n >= vecWidth ? vload(p) : vloadPartial(p, n)
}

/// Stores min(16, n) lanes.
@inline(__always)
package func vstore(_ v: Vec, _ p: UnsafeMutablePointer<Float>, _ n: Int) {
    if n >= vecWidth { vstore(v, p) } else { vstorePartial(v, p, n) }
}
