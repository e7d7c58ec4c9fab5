// Tensor/Arena.swift — one flat Float32 buffer per role, carved into named views.
//
// Parameters, gradients and each optimizer moment share one `ParameterLayout`: the same offsets
// name the same tensor in each buffer (llm.c's split by role). Views are added in model order; the
// checkpoint writer and optimizer walk them by name or as one flat range.

/// A named slice `[offset, offset + count)` of a flat buffer, with a row-major shape.
package struct TensorView: Sendable, Equatable {
    package let name: String
    package let offset: Int
    package let shape: [Int]
    package var count: Int { shape.reduce(1, *) }
}

/// The layout shared by parameters, gradients and optimizer moments.
package struct ParameterLayout: Sendable {
    package private(set) var views: [TensorView] = []
    package private(set) var count: Int = 0
    private var index: [String: Int] = [:]

    package init() {}

    /// Appends a view, 16-float aligned so every tensor starts on a 64-byte boundary.
    @discardableResult
    package mutating func add(_ name: String, shape: [Int]) -> TensorView {
        precondition(index[name] == nil, "duplicate parameter \(name)")
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(name)")
        let offset = (count + 15) & ~15
        let v = TensorView(name: name, offset: offset, shape: shape)
        index[name] = views.count
        views.append(v)
        count = offset + v.count
        return v
    }

    package subscript(name: String) -> TensorView? { index[name].map { views[$0] } }
}
