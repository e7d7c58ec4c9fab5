// Export/Protobuf.swift — a minimal protocol-buffers encoder: exactly what the ONNX writer needs.
//
// Wire format (protobuf encoding spec): a field is a key varint `(number << 3) | wireType`, then
// wire type 0 = varint (int32/int64/enum; negative values as 10-byte two's complement), 1 = 8-byte
// little-endian, 2 = length-delimited (varint length, then bytes: strings, bytes, nested messages),
// 5 = 4-byte little-endian (float). Repeated scalars are written unpacked (one key per element),
// which every proto2 and proto3 parser accepts. Messages are built bottom-up: a nested message is
// encoded into its own buffer first and then written as a length-delimited field.
// Why by hand and not swift-protobuf: the ONNX writer needs nine message types and four wire
// types; the generator plugin and its runtime would cost CI ~10 minutes of build for ~100 lines.
// Decoding is not needed here (the tests decode with the official `onnx` package).

/// Appends protobuf fields to a byte buffer.
package struct ProtoWriter: Sendable {
    package private(set) var bytes: [UInt8] = []

    package init() {}

    /// An unsigned varint (7 bits per byte, low group first, high bit = more).
    package mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }

    mutating func key(_ field: Int, _ wireType: UInt64) {
        precondition(field >= 1 && field < 1 << 29, "protobuf field number \(field)")
        varint(UInt64(field) << 3 | wireType)
    }

    /// int32/int64/enum/bool field (wire type 0); negative values take ten bytes, as the spec says.
    package mutating func int(_ field: Int, _ v: Int64) { key(field, 0); varint(UInt64(bitPattern: v)) }

    /// float field (wire type 5).
    package mutating func float(_ field: Int, _ v: Float) {
        key(field, 5)
        let b = v.bitPattern
        for s in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8((b >> UInt32(s)) & 0xff)) }
    }

    /// bytes field (wire type 2).
    package mutating func bytes(_ field: Int, _ data: some Collection<UInt8>) {
        key(field, 2); varint(UInt64(data.count)); bytes.append(contentsOf: data)
    }

    /// string field (UTF-8, wire type 2).
    package mutating func string(_ field: Int, _ s: String) { bytes(field, Array(s.utf8)) }

    /// Nested message field (wire type 2): `build` writes the message's own fields.
    package mutating func message(_ field: Int, _ build: (inout ProtoWriter) -> Void) {
        var inner = ProtoWriter()
        build(&inner)
        bytes(field, inner.bytes)
    }

    /// A nested message given as its encoded bytes.
    package mutating func message(_ field: Int, encoded: [UInt8]) { bytes(field, encoded) }
}
