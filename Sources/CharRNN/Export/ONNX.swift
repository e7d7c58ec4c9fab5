// Export/ONNX.swift — the ONNX messages the exporter writes (onnx/onnx.proto, IR version 8), as
// plain Swift values encoded with ProtoWriter. Only the fields charrnn uses are modelled:
//   ModelProto        ir_version 1, producer_name 2, producer_version 3, doc_string 6, graph 7,
//                     opset_import 8 (OperatorSetIdProto: domain 1, version 2), metadata_props 14
//   GraphProto        node 1, name 2, initializer 5, doc_string 10, input 11, output 12
//   NodeProto         input 1, output 2, name 3, op_type 4, attribute 5
//   AttributeProto    name 1, f 2, i 3, s 4, floats 7, ints 8, strings 9, type 20
//   TensorProto       dims 1, data_type 2, name 8, raw_data 9 (little-endian, row-major)
//   ValueInfoProto    name 1, type 2 → TypeProto.tensor_type 1 → elem_type 1, shape 2 → dim 1
//                     (dim_value 1 | dim_param 2)
//   StringStringEntryProto key 1, value 2
// Field numbers checked against the `onnx` package's descriptors (scripts/export/check_onnx.py
// loads every exported file with onnx.load and onnx.checker.check_model).

/// TensorProto.DataType values used here.
package enum ONNXType: Int64, Sendable {
    case float = 1, int64 = 7
}

/// A constant tensor (initializer).
package struct ONNXTensor: Sendable {
    package var name: String
    package var dims: [Int]
    package var type: ONNXType
    package var raw: [UInt8]

    /// float32 values, row-major.
    package init(_ name: String, dims: [Int], floats: [Float]) {
        precondition(dims.reduce(1, *) == floats.count, "\(name): \(floats.count) values for dims \(dims)")
        self.name = name; self.dims = dims; type = .float
        var r = [UInt8](); r.reserveCapacity(4 * floats.count)
        for f in floats { let b = f.bitPattern.littleEndian; withUnsafeBytes(of: b) { r.append(contentsOf: $0) } }
        raw = r
    }

    /// int64 values, row-major.
    package init(_ name: String, dims: [Int], int64s: [Int64]) {
        precondition(dims.reduce(1, *) == int64s.count, "\(name): \(int64s.count) values for dims \(dims)")
        self.name = name; self.dims = dims; type = .int64
        var r = [UInt8](); r.reserveCapacity(8 * int64s.count)
        for v in int64s { withUnsafeBytes(of: v.littleEndian) { r.append(contentsOf: $0) } }
        raw = r
    }

    func encode(into w: inout ProtoWriter) {
        for d in dims { w.int(1, Int64(d)) }
        w.int(2, type.rawValue)
        w.string(8, name)
        w.bytes(9, raw)
    }
}

/// A node attribute.
package enum ONNXAttribute: Sendable {
    case int(Int64), float(Float), string(String), ints([Int64]), floats([Float]), strings([String])
}

/// One operator application.
package struct ONNXNode: Sendable {
    package var op: String
    package var inputs: [String]
    package var outputs: [String]
    package var name: String
    package var attributes: [(String, ONNXAttribute)]

    package init(_ op: String, _ inputs: [String], _ outputs: [String], name: String, _ attributes: [(String, ONNXAttribute)] = []) {
        self.op = op; self.inputs = inputs; self.outputs = outputs; self.name = name; self.attributes = attributes
    }

    func encode(into w: inout ProtoWriter) {
        for i in inputs { w.string(1, i) }
        for o in outputs { w.string(2, o) }
        w.string(3, name)
        w.string(4, op)
        for (name, value) in attributes {
            w.message(5) { a in
                a.string(1, name)
                switch value {
                case .float(let f): a.float(2, f); a.int(20, 1)
                case .int(let i): a.int(3, i); a.int(20, 2)
                case .string(let s): a.string(4, s); a.int(20, 3)
                case .floats(let fs): for f in fs { a.float(7, f) }; a.int(20, 6)
                case .ints(let iv): for i in iv { a.int(8, i) }; a.int(20, 7)
                case .strings(let ss): for s in ss { a.string(9, s) }; a.int(20, 8)
                }
            }
        }
    }
}

/// A graph input or output: name, element type and shape (a number or a named dynamic axis per dim).
package struct ONNXValueInfo: Sendable {
    package enum Dim: Sendable { case value(Int), param(String) }
    package var name: String
    package var type: ONNXType
    package var dims: [Dim]

    package init(_ name: String, _ type: ONNXType, _ dims: [Dim]) { self.name = name; self.type = type; self.dims = dims }

    func encode(into w: inout ProtoWriter) {
        w.string(1, name)
        w.message(2) { t in
            t.message(1) { tt in
                tt.int(1, type.rawValue)
                tt.message(2) { s in
                    for d in dims {
                        s.message(1) { dim in
                            switch d {
                            case .value(let v): dim.int(1, Int64(v))
                            case .param(let p): dim.string(2, p)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A whole model: one graph, one opset of the default domain, string metadata.
package struct ONNXModel: Sendable {
    package static let irVersion: Int64 = 8
    package var opset: Int64
    package var producer: String
    package var producerVersion: String
    package var doc: String
    package var graphName: String
    package var nodes: [ONNXNode] = []
    package var initializers: [ONNXTensor] = []
    package var inputs: [ONNXValueInfo] = []
    package var outputs: [ONNXValueInfo] = []
    package var metadata: [(String, String)] = []

    package init(opset: Int64, producer: String, producerVersion: String, doc: String, graphName: String) {
        self.opset = opset; self.producer = producer; self.producerVersion = producerVersion; self.doc = doc; self.graphName = graphName
    }

    /// The ModelProto bytes.
    package func serialize() -> [UInt8] {
        var w = ProtoWriter()
        w.int(1, Self.irVersion)
        w.string(2, producer)
        w.string(3, producerVersion)
        w.string(6, doc)
        w.message(7) { g in
            for n in nodes { g.message(1) { n.encode(into: &$0) } }
            g.string(2, graphName)
            for t in initializers { g.message(5) { t.encode(into: &$0) } }
            for i in inputs { g.message(11) { i.encode(into: &$0) } }
            for o in outputs { g.message(12) { o.encode(into: &$0) } }
        }
        w.message(8) { o in o.string(1, ""); o.int(2, opset) }
        for (k, v) in metadata { w.message(14) { e in e.string(1, k); e.string(2, v) } }
        return w.bytes
    }
}
