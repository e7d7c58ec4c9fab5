// Checkpoint/AtomicFile.swift — whole-file I/O with crash-safe replacement.
//
// Contract:
// - `AtomicFile.write(_:to:)` (and `write(parts:to:)`, for contents held in several buffers) never
//   leaves a torn file at `path`: it writes a sibling temp file
//   `.<base>.tmp-<pid>-<random>` (O_CREAT|O_EXCL, mode 0666 & ~umask), fsyncs it, closes it,
//   renames it over `path` (atomic on POSIX within one filesystem), then fsyncs the directory so the
//   rename itself survives a power loss (the safetensors reference stops at the rename; we add both
//   fsyncs for kill -9 / power-cut safety). Until the rename, `path` keeps its old contents.
// - On any failure before the rename the temp file is unlinked, `path` is untouched, and a one-line
//   `FileIOError` names the path, the failing step and strerror (ENOSPC, EROFS, EACCES, ENOENT …).
//   A failure of the final directory fsync is reported too, but by then the new file is in place.
// - `AtomicFile.replace(_:with:)` does the same and hands back the new file's descriptor for appending:
//   whatever the name was (a symbolic link, a hard link, another user's file), nothing is written into
//   an inode it did not create.
// - `AtomicFile.read(from:)` reads a whole regular file with POSIX read(2) into one array (no
//   per-byte work), tolerating files whose size changes while being read.
// - An overwrite replaces the inode: the new file gets default permissions, not the old file's.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A file-system error: one line naming the path, the operation and the system's reason, e.g.
/// `checkpoints/run/best.safetensors: cannot write: No space left on device`.
package struct FileIOError: Error, CustomStringConvertible, Equatable {
    /// The path the caller asked for (not the temp file).
    package let path: String
    /// The failing step, e.g. "create temporary file", "write", "fsync", "rename", "open", "read".
    package let operation: String
    /// The `errno` value.
    package let code: Int32

    /// - Parameters:
    ///   - path: the path to name.
    ///   - operation: the failing step, read after "cannot".
    ///   - code: the errno value.
    package init(path: String, operation: String, code: Int32) {
        self.path = path
        self.operation = operation
        self.code = code
    }

    /// `<path>: cannot <operation>: <strerror(code)>`.
    package var description: String {
        "\(displayPath(path)): cannot \(operation): \(String(cString: strerror(code)))"
    }
}

/// `path` for a one-line message: as it is, or quoted with Swift escapes (`"a\nb"`) when it holds a
/// control character (a newline, tab, escape … in a file name would break the line or the terminal).
package func displayPath(_ path: String) -> String {
    path.unicodeScalars.contains { $0.properties.generalCategory == .control } ? path.debugDescription : path
}

/// Whole-file reads and atomic whole-file writes.
package enum AtomicFile {
    /// Writes `bytes` to `path` atomically: temp file in the same directory
    /// (`.<base>.tmp-<pid>-<random>`), fsync, rename over `path`, fsync of the directory.
    /// - Parameters:
    ///   - bytes: the complete new contents.
    ///   - path: destination; its directory must exist.
    /// - Throws: `FileIOError`. On failure the temp file is removed and `path` is untouched.
    package static func write(_ bytes: [UInt8], to path: String) throws {
        try write(bytes, to: path, beforeRename: {})
    }

    /// Test seam: `beforeRename` runs after the temp file is complete and fsynced but before the
    /// rename; if it throws, the write is abandoned like any other failure.
    static func write(_ bytes: [UInt8], to path: String, beforeRename: () throws -> Void) throws {
        try bytes.withUnsafeBytes { raw in try write(parts: [raw], to: path, beforeRename: beforeRename) }
    }

    /// Replaces `path` atomically with `bytes`, like `write(_:to:)`, and returns the new file's
    /// descriptor (write-only, close-on-exec, positioned at its end) for the caller to append to and
    /// close. Whatever `path` was — a symbolic link, a file with other hard links, another user's
    /// file — only the name is replaced: nothing is ever written into an inode this call did not
    /// create (the loss log appends to its own file only).
    /// - Throws: `FileIOError`, as `write(_:to:)`.
    package static func replace(_ path: String, with bytes: [UInt8]) throws -> Int32 {
        try bytes.withUnsafeBytes { raw in try write(parts: [raw], to: path, keepOpen: true)! }
    }

    /// Writes the concatenation of `parts` to `path` atomically, like `write(_:to:)`, without first
    /// joining them in memory (the token cache's header and its id array).
    static func write(parts: [UnsafeRawBufferPointer], to path: String,
                      beforeRename: () throws -> Void = {}) throws {
        _ = try write(parts: parts, to: path, keepOpen: false, beforeRename: beforeRename)
    }

    /// `write(parts:to:)`; with `keepOpen`, the temp file's descriptor stays open and is returned.
    private static func write(parts: [UnsafeRawBufferPointer], to path: String, keepOpen: Bool,
                              beforeRename: () throws -> Void = {}) throws -> Int32? {
        let (directory, base) = split(path)
        guard !base.isEmpty, base != ".", base != ".." else {
            throw FileIOError(path: path, operation: "write (path names a directory)", code: EISDIR)
        }

        // Create the temp file, retrying on the (unlikely) name collision.
        var tempPath = ""
        var fd: Int32 = -1
        for _ in 0..<16 {
            tempPath = tempName(directory: directory, base: base)
            fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
            if fd >= 0 || errno != EEXIST { break }
        }
        guard fd >= 0 else {
            throw FileIOError(path: path, operation: "create temporary file", code: errno)
        }

        // From here on, every failure closes and unlinks the temp file.
        var isOpen = true
        func abandon(_ operation: String, _ code: Int32) -> FileIOError {
            if isOpen { _ = close(fd) }
            _ = unlink(tempPath)
            return FileIOError(path: path, operation: operation, code: code)
        }

        for raw in parts {
            var done = 0
            while done < raw.count {
                let n = sysWrite(fd, raw.baseAddress! + done, min(raw.count - done, 1 << 30))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw abandon("write", errno)
                }
                if n == 0 { throw abandon("write", EIO) }
                done += n
            }
        }
        while fsync(fd) != 0 {
            if errno != EINTR { throw abandon("fsync", errno) }
        }
        if !keepOpen {
            isOpen = false
            if close(fd) != 0 { throw abandon("close", errno) }
        }

        do {
            try beforeRename()
        } catch {
            if isOpen { _ = close(fd) }
            _ = unlink(tempPath)
            throw error
        }

        if rename(tempPath, path) != 0 { throw abandon("rename", errno) }

        // Make the rename durable. Some file systems cannot fsync a directory (EINVAL/ENOTSUP);
        // an unreadable directory cannot be opened — the data is in place either way.
        let dfd = sysOpen(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            var code: Int32 = 0
            while fsync(dfd) != 0 {
                if errno == EINTR { continue }
                if errno != EINVAL && errno != ENOTSUP && errno != EROFS { code = errno }
                break
            }
            _ = close(dfd)
            if code != 0 {
                if isOpen { _ = close(fd) }
                throw FileIOError(path: path, operation: "fsync directory (file was replaced, durability unknown)", code: code)
            }
        }
        return isOpen ? fd : nil
    }

    /// Reads the whole file at `path`.
    /// - Throws: `FileIOError` naming the path and strerror (missing file, directory, permissions …).
    package static func read(from path: String) throws -> [UInt8] {
        let fd = sysOpen(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileIOError(path: path, operation: "open", code: errno) }
        defer { _ = close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileIOError(path: path, operation: "stat", code: errno) }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw FileIOError(path: path, operation: "read", code: EISDIR) }
        let expected = max(Int(st.st_size), 0)

        var readError: Int32 = 0
        var result = [UInt8](unsafeUninitializedCapacity: expected) { buffer, initialized in
            var done = 0
            while done < expected {
                let n = sysRead(fd, buffer.baseAddress! + done, min(expected - done, 1 << 30))
                if n < 0 {
                    if errno == EINTR { continue }
                    readError = errno
                    break
                }
                if n == 0 { break }  // file shrank
                done += n
            }
            initialized = done
        }
        if readError != 0 { throw FileIOError(path: path, operation: "read", code: readError) }
        // The file may have grown (or st_size may be 0 for special files): read to EOF.
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { sysRead(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileIOError(path: path, operation: "read", code: errno)
            }
            if n == 0 { break }
            result.append(contentsOf: chunk[0..<n])
        }
        return result
    }

    // MARK: - Helpers

    /// ("dir", "base") with "." for a bare file name and "/" for files in the root.
    static func split(_ path: String) -> (directory: String, base: String) {
        let utf8 = Array(path.utf8)
        guard let slash = utf8.lastIndex(of: 0x2F) else { return (".", path) }
        let dir = slash == 0 ? "/" : String(decoding: utf8[..<slash], as: UTF8.self)
        return (dir, String(decoding: utf8[(slash + 1)...], as: UTF8.self))
    }

    /// `<dir>/.<base>.tmp-<pid>-<random>`; the base is shortened so the name stays under NAME_MAX.
    static func tempName(directory: String, base: String) -> String {
        var shortBase = ""
        var used = 0
        for scalar in base.unicodeScalars {
            used += String(scalar).utf8.count
            if used > 200 { break }
            shortBase.unicodeScalars.append(scalar)
        }
        let random = String(UInt64.random(in: .min ... .max), radix: 16)
        let name = ".\(shortBase).tmp-\(getpid())-\(random)"
        return directory == "/" ? "/" + name : directory + "/" + name
    }
}

// Unambiguous names for the libc calls that `AtomicFile.write`/`read` would otherwise shadow.
@inline(__always) private func sysWrite(_ fd: Int32, _ buf: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buf, count)
}

@inline(__always) private func sysRead(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ count: Int) -> Int {
    read(fd, buf, count)
}

@inline(__always) private func sysOpen(_ path: String, _ flags: Int32) -> Int32 {
    open(path, flags)
}
