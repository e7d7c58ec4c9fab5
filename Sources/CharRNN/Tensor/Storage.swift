// Tensor/Storage.swift — owned, 64-byte-aligned, zero-initialised Float32 buffers.
//
// Contract: every large buffer in charrnn (parameters, gradients, optimizer moments, activations,
// workspaces) is one `Storage`, allocated once when a model or workspace is built and never resized
// in the hot loop. Pointers handed out by `ptr` are valid only while the owning Storage is alive.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fixed-size, 64-byte-aligned, zero-initialised Float32 buffer that frees itself.
package final class Storage: @unchecked Sendable {
    /// Base address; valid for `count` floats while `self` is alive.
    package let ptr: UnsafeMutablePointer<Float>
    package let count: Int

    /// - Parameter count: number of floats (0 is allowed and yields a 1-float dummy allocation).
    package init(count: Int) {
        precondition(count >= 0, "Storage count must be non-negative")
        self.count = count
        var raw: UnsafeMutableRawPointer? = nil
        let bytes = max(1, count) * MemoryLayout<Float>.stride
        let rc = posix_memalign(&raw, 64, (bytes + 63) & ~63)
        precondition(rc == 0 && raw != nil, "out of memory allocating \(bytes) bytes")
        memset(raw!, 0, bytes)
        ptr = raw!.bindMemory(to: Float.self, capacity: max(1, count))
    }

    deinit { free(ptr) }

    /// Sets every element to zero.
    @inline(__always) package func zero() { memset(ptr, 0, count * MemoryLayout<Float>.stride) }

    /// Copies the contents into a new array (tests, checkpoints; never in the hot loop).
    package func toArray() -> [Float] { Array(UnsafeBufferPointer(start: ptr, count: count)) }

    /// Overwrites the contents from `values` (which must have `count` elements).
    package func load(_ values: [Float]) {
        precondition(values.count == count, "Storage.load: \(values.count) values for \(count) slots")
        values.withUnsafeBufferPointer { ptr.update(from: $0.baseAddress!, count: count) }
    }
}

/// A fixed-size Int32 buffer (token ids of a minibatch), allocated once.
package final class IntStorage: @unchecked Sendable {
    package let ptr: UnsafeMutablePointer<Int32>
    package let count: Int
    package init(count: Int) {
        precondition(count >= 0)
        self.count = count
        ptr = .allocate(capacity: max(1, count))
        ptr.initialize(repeating: 0, count: max(1, count))
    }
    deinit { ptr.deallocate() }
}
