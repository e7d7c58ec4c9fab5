// Checkpoint/PathNames.swift — the parent folder of a path, computed on the string. Every file
// charrnn writes or reads derives its folder here, not through Foundation's
// `NSString.deletingLastPathComponent`: on Linux (swift-corelibs-foundation with Swift 6.3.1) that
// traps on a one-character relative path such as "o" or "." and on "x/" — `train --out o` and
// `plot r/loss.csv` died with SIGILL (issue 22's third hostile round).
//
// Contract: trailing slashes are ignored (except the root's); a path without a slash has the parent
// "" (the working directory, as NSString gives); "/a" has "/"; "a//b" has "a". No file-system access.

/// The folder part of `path` (see the file header).
package func parentPath(_ path: String) -> String {
    var b = Array(path.utf8)
    while b.count > 1 && b.last == UInt8(ascii: "/") { b.removeLast() }
    guard let slash = b.lastIndex(of: UInt8(ascii: "/")) else { return "" }
    var end = slash
    while end > 0 && b[end - 1] == UInt8(ascii: "/") { end -= 1 }
    return end == 0 ? "/" : String(decoding: b[..<end], as: UTF8.self)
}
