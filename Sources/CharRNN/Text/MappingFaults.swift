// Text/MappingFaults.swift — a file truncated under a read-only mapping turns into an error, not a
// SIGBUS crash. Touching a mapped page past the file's new end raises SIGBUS, which mmap cannot report
// any other way; a corpus file shortened (or replaced in place, `> corpus.txt`) while it is decoded
// used to kill charrnn there.
//
// Contract
// - A `MappedFile` made with `guarded: true` registers its address range here for as long as it is
//   mapped (at most `slotCount` at once; beyond that a mapping is simply unguarded, as before).
// - The process-wide SIGBUS handler (installed once, on the first guarded mapping, with SA_SIGINFO) looks
//   the faulting address up in the registry. Inside a guarded range it maps one zero-filled anonymous
//   page over the faulting page (MAP_FIXED, read-only), records the first faulting offset in the slot
//   and returns: the read is retried and sees zeros. The reader checks `MappedFile.faultOffset` and
//   reports the file as changed (`TextError.changed`), so the zeros are never used as text.
// - Any other SIGBUS (not in a guarded range) restores the action that was installed before ours and
//   returns, so the retried access gets the default action (or the Swift runtime's crash report), as
//   without this file.
// - The handler only does loads, stores and one mmap(2) system call: no allocation, no locks. The
//   registry is a fixed block allocated before the handler is installed; register/unregister take a
//   mutex (never held by the handler), and write a slot's end before its start and clear its start
//   first, so the handler never sees a half-written range.
//
// Why not the alternatives: reading the corpus with read(2) into memory would add a byte per input
// byte to the 2 bytes per token the loader keeps resident (README "Large corpora": the id buffer plus
// one chunk), and reading chunk by chunk would change every consumer that sees the whole file (error
// line/column, the content hash, the binary check); sigsetjmp/siglongjmp cannot be called from Swift
// (returns-twice functions are unavailable) and jumping over Swift frames would skip their releases.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum MappingFaults {
    static let slotCount = 64
    /// Per slot: start, end (exclusive), first faulting offset + 1 (0 = none).
    nonisolated(unsafe) private static let slots: UnsafeMutablePointer<Int> = {
        let p = UnsafeMutablePointer<Int>.allocate(capacity: slotCount * 3)
        p.initialize(repeating: 0, count: slotCount * 3)
        return p
    }()
    private static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    nonisolated(unsafe) private static let previous = UnsafeMutablePointer<sigaction>.allocate(capacity: 1)
    nonisolated(unsafe) private static let mutex: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(m, nil)
        return m
    }()
    private static let installed: Bool = {
        _ = slots; _ = pageSize
        var action = sigaction()
        #if canImport(Glibc)
        action.__sigaction_handler.sa_sigaction = mappingFaultHandler
        #else
        action.__sigaction_u.__sa_sigaction = mappingFaultHandler
        #endif
        action.sa_flags = SA_SIGINFO | SA_NODEFER
        sigemptyset(&action.sa_mask)
        return sigaction(SIGBUS, &action, previous) == 0
    }()

    /// Registers `[start, start + count)`; returns the slot, or nil when the handler could not be
    /// installed or every slot is taken.
    static func register(_ start: UnsafeRawPointer, count: Int) -> Int? {
        guard count > 0, installed else { return nil }
        pthread_mutex_lock(mutex); defer { pthread_mutex_unlock(mutex) }
        for k in 0..<slotCount where slots[3 * k] == 0 {
            slots[3 * k + 2] = 0
            slots[3 * k + 1] = Int(bitPattern: start) + count
            slots[3 * k] = Int(bitPattern: start)
            return k
        }
        return nil
    }

    /// The first offset at which a read of slot `k` faulted, or nil.
    static func faultOffset(_ k: Int) -> Int? {
        let f = slots[3 * k + 2]
        return f == 0 ? nil : f - 1
    }

    static func unregister(_ k: Int) {
        pthread_mutex_lock(mutex); defer { pthread_mutex_unlock(mutex) }
        slots[3 * k] = 0
        slots[3 * k + 1] = 0
    }

    /// The handler's work; returns whether the fault was in a guarded range (and is now readable).
    fileprivate static func handle(_ address: Int) -> Bool {
        for k in 0..<slotCount {
            let start = slots[3 * k], end = slots[3 * k + 1]
            guard start != 0, address >= start, address < end else { continue }
            let page = address & ~(pageSize - 1)
            let m = mmap(UnsafeMutableRawPointer(bitPattern: page), pageSize, PROT_READ,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
            if m == MAP_FAILED { return false }
            if slots[3 * k + 2] == 0 { slots[3 * k + 2] = address - start + 1 }
            return true
        }
        return false
    }

    fileprivate static func giveUp() {
        _ = sigaction(SIGBUS, previous, nil)
    }
}

private func mappingFaultHandler(_ signal: Int32, _ info: UnsafeMutablePointer<siginfo_t>?, _ context: UnsafeMutableRawPointer?) {
    #if canImport(Glibc)
    let address = info.map { Int(bitPattern: $0.pointee._sifields._sigfault.si_addr) } ?? 0
    #else
    let address = info.map { Int(bitPattern: $0.pointee.si_addr) } ?? 0
    #endif
    if address != 0 && MappingFaults.handle(address) { return }
    MappingFaults.giveUp()
}
