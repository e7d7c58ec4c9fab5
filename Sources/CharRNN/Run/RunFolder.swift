// Run/RunFolder.swift — the on-disk contract of a training run: the folder `<out>/<run>/` holds
// best.safetensors (lowest validation loss), latest.safetensors (where the run stopped) and loss.csv;
// `<out>/.cache/` holds the token cache shared by the runs under `<out>`. Every name of that contract
// lives here, with the look-ups `sample`, `eval`, `info` and `train --resume` do on it, and the lock
// a writer holds: `.lock` in the run folder, write-locked (fcntl F_SETLK, whole file) by the one
// process that writes the run and holding its pid. The kernel drops the lock when that process exits,
// however it exits (kill -9 included), so a lock is never stale; the file itself stays (removing it
// would let two processes lock two different inodes of the same name).
//
// Ownership: a run writes only files it owns. The lock is opened with O_NOFOLLOW and must be a regular
// file with one name (a symbolic or hard link into another run or to any other file is refused, never
// truncated); the checkpoints and loss.csv are replaced by rename, so nothing is written through a link
// (`AtomicFile`); and a resume refuses a folder whose run files are symbolic links (`checkOwnedFiles`,
// e.g. a `cp -as` copy of another run), naming the link and what to do. A folder with no checkpoint is
// not a run: a new run reclaims it (its lock free, its leftover loss.csv removed).

import Foundation
import Synchronization

/// A run folder and the files in it.
public struct RunFolder: Sendable, Equatable {
    /// Which of a run's two checkpoints.
    public enum Checkpoint: Sendable {
        case best, latest
        /// Its file name inside the run folder.
        public var fileName: String { self == .best ? RunFolder.bestName : RunFolder.latestName }
        var other: Checkpoint { self == .best ? .latest : .best }
    }

    package static let bestName = "best.safetensors"
    package static let latestName = "latest.safetensors"
    package static let lossLogName = "loss.csv"
    /// The token-cache folder's name inside the folder that holds the runs.
    package static let cacheDirName = ".cache"
    /// The writer's lock file (see `RunLock`).
    package static let lockName = ".lock"

    /// The run folder itself.
    public let path: String

    /// The run folder at `path` (nothing is read or created).
    public init(_ path: String) { self.path = path }

    /// best.safetensors: the checkpoint with the lowest validation loss so far.
    public var best: String { file(RunFolder.bestName) }
    /// latest.safetensors: where the run last saved (every validation, and on interrupt).
    public var latest: String { file(RunFolder.latestName) }
    /// loss.csv (see `LossLog`).
    public var lossLog: String { file(RunFolder.lossLogName) }

    /// `which` of this run's checkpoints.
    package func checkpoint(_ which: Checkpoint) -> String { file(which.fileName) }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// The default token-cache folder for the runs under `out` (`<out>/.cache`).
    package static func cacheDir(under out: String) -> String { (out as NSString).appendingPathComponent(cacheDirName) }

    /// Whether the folder holds a run: a checkpoint (best or latest; a dangling link counts). A loss log
    /// alone is what a run stopped before its first save leaves, and a new run reclaims it.
    package var holdsRun: Bool { [best, latest].contains(where: RunFolder.exists) }

    /// Whether something (of any type, a dangling link included) has the name `path`.
    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// Refuses a run folder whose run files (lock, checkpoints, loss log) are not its own: a symbolic
    /// link (a `cp -as` copy of another run, or a link to any file), a lock with other hard links (a
    /// `cp -al` copy), or anything but a regular file. A run only ever replaces those names (and writes
    /// its lock in place), but a link someone made says the file lives elsewhere, so it is reported,
    /// all of them in one line, not replaced.
    /// - Throws: `CheckpointError` naming the files and what to do.
    package func checkOwnedFiles() throws {
        var links: [String] = [], others: [String] = []
        for name in [RunFolder.lockName, RunFolder.lossLogName, RunFolder.bestName, RunFolder.latestName] {
            let f = file(name)
            var st = stat()
            guard lstat(f, &st) == 0 else { continue }
            if st.st_mode & S_IFMT == S_IFLNK {
                links.append(name + RunFolder.linkTarget(f))
            } else if st.st_mode & S_IFMT != S_IFREG {
                others.append("\(name) is not a regular file")
            } else if name == RunFolder.lockName && st.st_nlink != 1 {
                others.append("\(name) is a hard link (\(st.st_nlink) names for one file)")
            }
        }
        guard !links.isEmpty || !others.isEmpty else { return }
        var what = others
        if !links.isEmpty { what.insert(links.joined(separator: ", ") + (links.count == 1 ? " is a symbolic link" : " are symbolic links"), at: 0) }
        throw CheckpointError(file: path, message: what.joined(separator: "; ") + "; a run writes only files it owns, never through a link: copy a run with cp -a (not cp -s or cp -l), or replace each of these with a copy of its own (cp --remove-destination)")
    }

    /// " (to TARGET)" for a symbolic link, else "".
    static func linkTarget(_ path: String) -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buf, buf.count - 1)
        guard n > 0 else { return "" }
        return " (to \(String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self).debugDescription))"
    }

    // MARK: - Names

    /// Checks that `name` is one path component that names a folder inside `--out`.
    /// - Throws: `CheckpointError` for "", ".", "..", a name with "/" or a control character (NUL,
    ///   newline, …: legal in a file name, but every printed command would break on it), or a
    ///   bidirectional control (U+202E …: the printed `--resume` command would not read as it runs).
    package static func checkName(_ name: String) throws {
        let why: String? = name.isEmpty ? "is empty" : name == "." || name == ".." ? "is \"\(name)\"" :
            name.contains("/") ? "contains \"/\"" :
            name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) ? "contains a control character" :
            name.unicodeScalars.contains(where: isBidiControl) ? "contains a bidirectional control character (it would reorder the printed commands)" : nil
        if let why { throw CheckpointError(file: "\(Setting.name) \(name.debugDescription)", message: "a run name must be one folder name inside \(Setting.out); this one \(why)") }
    }

    /// The default run name's stem made from a corpus name, which may be any file name: control and
    /// bidirectional-control characters and "/" become "_" (`checkName` would refuse them as a
    /// --name), at most 200 bytes (whole characters), so that the stem and the 16-byte timestamp fit
    /// NAME_MAX (255); "corpus" when nothing is left.
    package static func defaultStem(corpusName: String) -> String {
        var stem = ""
        for c in corpusName {
            let bad = c.unicodeScalars.contains { $0 == "/" || $0.properties.generalCategory == .control || isBidiControl($0) }
            let piece = bad ? "_" : String(c)
            if stem.utf8.count + piece.utf8.count > 200 { break }
            stem += piece
        }
        return stem.isEmpty ? "corpus" : stem
    }

    /// U+061C, U+200E/F, U+202A…E, U+2066…9: invisible characters that reorder the text around them.
    static func isBidiControl(_ c: Unicode.Scalar) -> Bool {
        c.value == 0x061C || c.value == 0x200E || c.value == 0x200F || (0x202A...0x202E).contains(c.value) || (0x2066...0x2069).contains(c.value)
    }

    // MARK: - Writing a run

    /// Creates `path` (and its parents) and takes its writer lock.
    /// - Parameters:
    ///   - replacing: the folder may already hold a run, whose checkpoints and loss log are then
    ///     removed (`--overwrite`); otherwise such a folder is refused.
    ///   - protecting: a checkpoint that must survive (the `--init-from` source): a folder holding it is
    ///     refused even when `replacing`.
    /// - Throws: `CheckpointError` (cannot create, locked by another process, holds a run).
    package static func claimNew(_ path: String, replacing: Bool, protecting: String? = nil) throws -> RunLock {
        // a new run makes its own folder: a link there would put it (and --overwrite's removals) elsewhere
        var st = stat()
        if lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFLNK {
            throw CheckpointError(file: path, message: "is a symbolic link\(linkTarget(path)); a new run makes its own folder and never writes through a link: choose another \(Setting.name), or remove the link")
        }
        if let protecting, sameFile(parentPath(protecting), path) {
            throw CheckpointError(file: path, message: "is the folder of the \(Setting.initFrom) checkpoint \(protecting); a fine-tuning run cannot replace its own source (choose another \(Setting.name))")
        }
        // the folders this claim creates, innermost first: a refused run removes them again
        var created: [String] = []
        var p = path
        while !p.isEmpty && p != "/" && !FileManager.default.fileExists(atPath: p) {
            created.append(p)
            p = parentPath(p)
        }
        do { try makeFolders(path) } catch let e as FileIOError {
            throw CheckpointError(file: path, message: "cannot create run directory: \(String(cString: strerror(e.code)))")
        }
        // a folder this process is writing right now (a library caller): opening and closing its
        // lock here would drop this process's lock on it, so it is refused before the lock is touched
        if RunLock.heldHere(runDir: path) {
            throw CheckpointError(file: path, message: "this process is already writing a run in this folder; choose another \(Setting.name)")
        }
        let lock = try RunLock(runDir: path)
        lock.created = created
        let run = RunFolder(path)
        if run.holdsRun && !replacing {
            throw CheckpointError(file: path, message: "already holds a run; resume it with \(Setting.resume) \(shellQuoted(path)), choose another \(Setting.name), or pass \(Setting.overwrite) to replace it")
        }
        // --overwrite, or a folder without a checkpoint (a run stopped before its first save: not a
        // run, reclaimed): the names are removed, never followed (unlink removes a link, not its
        // target) and never recursively (a folder of that name is refused)
        for f in [run.best, run.latest, run.lossLog] where exists(f) {
            if unlink(f) != 0 {
                let code = errno
                throw CheckpointError(file: f, message: "cannot remove it to \(run.holdsRun ? "replace the run" : "reclaim the folder"): \(String(cString: strerror(code)))")
            }
        }
        RunContinuation.removeStaleTempFiles(runDir: path)
        return lock
    }

    /// Claims `path` for a run with a default name, or, when a run or another writer already holds it
    /// (two runs started in the same second), the first of `path-2`, `path-3`, … that nobody holds.
    /// - Returns: the folder claimed and its lock.
    /// - Throws: what `claimNew` throws.
    static func claimUnused(_ path: String) throws -> (String, RunLock) {
        for k in 1...1000 {
            let p = k == 1 ? path : "\(path)-\(k)"
            if exists(p) && (RunFolder(p).holdsRun || RunLock.isHeld(runDir: p)) { continue }
            return (p, try claimNew(p, replacing: false))
        }
        return (path, try claimNew(path, replacing: false))
    }

    /// Whether two paths name the same existing file or folder (device and inode).
    static func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }

    // MARK: - Locating checkpoints

    /// Resolves a run folder or checkpoint file: a file is taken as is; a folder gives its `preferred`
    /// checkpoint, else the other one.
    /// - Throws: `CheckpointError` when the path does not exist or the folder holds neither checkpoint.
    public static func resolve(_ path: String, preferring preferred: Checkpoint = .best) throws -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw CheckpointError(file: path, message: "no such checkpoint file or run directory")
        }
        if !isDir.boolValue { return path }
        let run = RunFolder(path)
        for which in [preferred, preferred.other] {
            let p = run.checkpoint(which)
            if FileManager.default.fileExists(atPath: p) { return p }
        }
        let stopped = exists(run.lossLog) || exists(run.file(lockName))
        throw CheckpointError(file: path, message: "run directory has no \(bestName) or \(latestName)"
                              + (stopped ? " (the run stopped before its first checkpoint, so there is nothing to resume: start it again with the same \(Setting.name); the folder is reclaimed)" : ""))
    }

    /// The most recently modified run folder under `root` that holds a checkpoint.
    /// - Throws: `CheckpointError` when `root` is missing or holds no run with a checkpoint.
    public static func latestRun(under root: String) throws -> String {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: root) else {
            throw CheckpointError(file: root, message: "no checkpoints folder; train a model first (charrnn train CORPUS) or pass \(Setting.checkpoint)")
        }
        var newest: (String, Date)? = nil
        for n in names {
            let run = RunFolder((root as NSString).appendingPathComponent(n))
            for p in [run.best, run.latest] {
                if let d = (try? fm.attributesOfItem(atPath: p))?[.modificationDate] as? Date {
                    if newest == nil || d > newest!.1 { newest = (run.path, d) }
                }
            }
        }
        guard let newest else {
            throw CheckpointError(file: root, message: "no run with a checkpoint found; train a model first (charrnn train CORPUS) or pass \(Setting.checkpoint)")
        }
        return newest.0
    }
}

/// The exclusive writer lock of a run folder: a POSIX write lock (`fcntl(F_SETLK)`) on `<run>/.lock`,
/// which then holds the writer's pid. Held while the value lives (the descriptor is closed in
/// `deinit`) and dropped by the kernel when the process ends, so a crashed run never leaves a stale
/// lock. POSIX locks belong to the process, not to the descriptor (unlike `flock`): another process is
/// refused, with the holder's pid from F_GETLK, while this process may continue a run it wrote
/// itself (a library caller that trains, then resumes). Within one process, two `RunLock`s on one
/// folder share the lock, and closing either releases it.
package final class RunLock: @unchecked Sendable {
    package let path: String
    let fd: Int32
    /// The lock file's device and inode, counted in `live` while this value lives.
    private let id: FileID

    struct FileID: Hashable { var dev: UInt64; var ino: UInt64 }
    /// The lock files this process holds through a live `RunLock` (with how many): POSIX locks do not
    /// show to their own process, so this is how `isHeld` and `claimNew` see them without opening
    /// (and, on close, dropping) them.
    private static let live = Mutex<[FileID: Int]>([:])
    /// Folders created to hold the run, innermost first (`RunFolder.claimNew`).
    var created: [String] = []

    /// Takes the lock of `runDir`, which must exist.
    /// - Throws: `CheckpointError` naming the holder's pid when another process writes the run.
    public init(runDir: String) throws {
        path = (runDir as NSString).appendingPathComponent(RunFolder.lockName)
        // never followed, never a FIFO or device that blocks on open
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o644)
        if fd < 0 {
            let code = errno
            if code == ELOOP {
                throw CheckpointError(file: path, message: "is a symbolic link\(RunFolder.linkTarget(path)); charrnn never writes a run's lock through a link: remove it (rm \(shellQuoted(path))) and run again")
            }
            throw CheckpointError(file: path, message: "cannot open the run's lock file: \(String(cString: strerror(code)))")
        }
        // a regular file with one name: a hard link (into another run, or to any file) would be
        // truncated and share its lock with the other name
        var st = stat()
        let why: String? = fstat(fd, &st) != 0 ? String(cString: strerror(errno))
            : st.st_mode & S_IFMT != S_IFREG ? "is not a regular file"
            : st.st_nlink != 1 ? "is a hard link (\(st.st_nlink) names for one file)" : nil
        if let why {
            close(fd)
            throw CheckpointError(file: path, message: "\(why); a run's lock must be its own file: remove it (rm \(shellQuoted(path))) and run again")
        }
        id = FileID(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino))
        var whole = flock()
        whole.l_type = Int16(F_WRLCK); whole.l_whence = Int16(SEEK_SET); whole.l_start = 0; whole.l_len = 0
        if fcntl(fd, F_SETLK, &whole) != 0 {
            let code = errno
            var holder = whole
            let pid = fcntl(fd, F_GETLK, &holder) == 0 && holder.l_type != Int16(F_UNLCK) ? "\(holder.l_pid)" : "?"
            close(fd)
            guard code == EAGAIN || code == EACCES else {
                throw CheckpointError(file: path, message: "cannot lock the run folder: \(String(cString: strerror(code)))")
            }
            throw CheckpointError(file: runDir, message: "another charrnn process (pid \(pid)) is writing this run; wait for it to finish or stop it")
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        RunLock.live.withLock { [id] in $0[id, default: 0] += 1 }
    }

    deinit {
        RunLock.live.withLock { [id] in
            if let n = $0[id], n > 1 { $0[id] = n - 1 } else { $0[id] = nil }
        }
        close(fd)
    }

    /// Whether a live `RunLock` of this process holds the lock of `runDir` (never opens the file).
    static func heldHere(runDir: String) -> Bool {
        var st = stat()
        guard lstat((runDir as NSString).appendingPathComponent(RunFolder.lockName), &st) == 0 else { return false }
        let id = FileID(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino))
        return live.withLock { $0[id] != nil }
    }

    /// Whether this process (a live `RunLock`) or another one (F_GETLK) holds the lock of `runDir`;
    /// never creates the lock file, and never opens one this process holds (closing it would drop the lock).
    static func isHeld(runDir: String) -> Bool {
        if heldHere(runDir: runDir) { return true }
        let fd = open((runDir as NSString).appendingPathComponent(RunFolder.lockName), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var probe = flock()
        probe.l_type = Int16(F_WRLCK); probe.l_whence = Int16(SEEK_SET); probe.l_start = 0; probe.l_len = 0
        return fcntl(fd, F_GETLK, &probe) == 0 && probe.l_type != Int16(F_UNLCK)
    }

    /// Runs `body`; when it throws and the run folder holds nothing but the lock and a loss log (the
    /// run never saved a checkpoint), removes them and the folders this claim made, so a refused run
    /// leaves nothing behind (and never blocks the corrected rerun).
    package func abandoningOnError<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch {
            abandon()
            throw error
        }
    }

    /// `abandoningOnError`'s clean-up: only a folder with no checkpoint and nothing but the lock and
    /// loss.csv is touched (a regular loss.csv: `unlink` removes the name only).
    func abandon() {
        let dir = parentPath(path)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir),
              Set(names).isSubset(of: [RunFolder.lockName, RunFolder.lossLogName]) else { return }
        if names.contains(RunFolder.lossLogName) { unlink(RunFolder(dir).lossLog) }
        unlink(path)
        for d in created where rmdir(d) != 0 { break }   // only the empty folders this run made
    }
}

/// `s` as one shell word: unchanged when it is plain, else in single quotes.
package func shellQuoted(_ s: String) -> String {
    let plain = !s.isEmpty && s.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "-_./,:=+@%".unicodeScalars.contains($0) }
    return plain ? s : "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// `mkdir -p` with the system's reason in the error (FileManager's CocoaError often has none).
/// - Throws: `FileIOError` ("create folder").
func makeFolders(_ path: String) throws {
    var st = stat()
    if stat(path, &st) == 0 {
        if st.st_mode & S_IFMT == S_IFDIR { return }
        throw FileIOError(path: path, operation: "create folder", code: ENOTDIR)
    }
    let parent = parentPath(path)
    if !parent.isEmpty && parent != path { try makeFolders(parent) }
    if mkdir(path, 0o755) != 0 && errno != EEXIST { throw FileIOError(path: path, operation: "create folder", code: errno) }
}

func describe(_ error: Error) -> String {
    let e = error as NSError
    if let u = e.userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(u.code)))
    }
    if e.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(e.code))) }
    return e.localizedDescription
}
