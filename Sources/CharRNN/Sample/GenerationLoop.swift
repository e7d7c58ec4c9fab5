// Sample/GenerationLoop.swift — the one generation loop. `charrnn sample` (K samples) and
// `charrnn serve` (through BatchEngine) both drive it, so a completion equals `charrnn sample` with
// the same prompt, seed and options by construction.
//
// Legend: R rows in the batch, V vocabulary.
// A row is one stream of text. It joins with a prompt (token ids), a seed and its stream index i,
// sampling options, a token budget and a stop filter. It then feeds its prompt, one token per step
// (an empty prompt feeds the vocabulary's start token, a newline; a vocabulary without one draws the
// first token from the uniform distribution), and afterwards per step draws a token from its row
// of log p with its own generator, `Xoshiro256(seed: GenerationLoop.streamSeed(seed, stream: i))`, and feeds it.
// The drawn token's UTF-8 goes through the row's `StopFilter`; what the filter releases is the
// row's text. A row ends when a stop string was generated (`stop`, the text ends before it), when it
// drew its budget (`length`, the filter's held bytes are released), or when its driver ends it.
//
// One iteration, driven by the caller on one thread (the loop is not thread-safe):
//   `advance()` — every running row feeds its next prompt token or draws;
//   `join(…)`   — rows may join (they feed their first prompt token in the coming step);
//   `withReleased(r)`, `ended(r)` — the driver takes each row's released text and end;
//   `step()`    — ended rows leave, one batched `CharRNNModel.step` of the R remaining rows.
// `runToEnd` is that iteration without joins, until every row ended.
// Rows are kept contiguous: a leaving row's slot takes the last row's state (`copyStream`, one row
// of h and c per layer), and the step runs on the first R streams of one preallocated state of
// maxStreams (`CharRNNModel.step(rows:)`), which gives a row the same bits whatever R is. So a
// row's text does not depend on the other rows, and stream i of a seed is the same whatever K is.
// Nothing is allocated per iteration: the state, tokens, log-probs, the drawer and 2·maxStreams row
// slots with their text buffers are allocated at init; a join reuses a slot (it only grows a slot's
// text buffer when the row's stop strings are longer than any before). A row with penalties counts
// the tokens it generates in its slot's counts (Penalties.swift; allocated at the first such join,
// zeroed at every join; a slot's window ring grows only when its window is longer than any before).
// Log-probabilities (`logprobs`) and `echo`: the section at the end of this file.

/// Why a stream of generated text ended.
public enum FinishReason: String, Sendable, Equatable {
    /// max tokens were drawn.
    case length
    /// A stop string was generated (the text ends before it).
    case stop
    /// The request was cancelled (client gone).
    case cancelled
    /// The reader fell behind by more than the ticket's buffer.
    case overflow
    /// The engine shut down first.
    case shutdown
}

/// Runs rows of generation in one batch (see the file header). One thread at a time.
public final class GenerationLoop {
    package let model: CharRNNModel
    /// The tokens the model reads and writes.
    public let vocabulary: Vocabulary
    /// Rows running together at most.
    public let maxStreams: Int

    private struct Row {
        var owner: AnyObject? = nil        // the driver's (BatchEngine: the ticket)
        var stream = 0                     // index i of the row's generator seed
        var feed: [Int32] = []             // the prompt, or the start token
        var options = SamplingOptions()
        var maxTokens = 0
        var rng = Xoshiro256(seed: 0)
        var filter = StopFilter()
        var fed = 0                        // feed tokens fed
        var drawn = 0                      // tokens drawn
        var next: Int32 = 0                // the token the coming step feeds
        var end: FinishReason? = nil       // set when the row ended; it leaves at `step`
        var fresh = true                   // joined since the last step: state not reset yet
        var lp = RowLogprobs()             // logprobs / echo (the section at the end of this file)
        var penaltySlot = 0                // the row's counts in `penalties` (travels with the row)
    }
    private var slots: [Row]                   // (2·maxStreams) rows 0..<rows are in the batch
    private var released: [[UInt8]]            // (2·maxStreams) per slot: text released since the last step
    /// Rows in the batch, those that ended since the last `step` included.
    public private(set) var rows = 0
    /// Rows that have not ended.
    public private(set) var running = 0

    private let V: Int
    private let state: InferenceState          // (maxStreams) streams 0..<R are the rows
    private let tokens: IntStorage             // (maxStreams)
    private let logProbs: Storage              // (maxStreams, V)
    private let zeroRow: Storage               // (V) the uniform start
    private let drawer: TokenDrawer
    private let tokenBytes: [UInt8]            // every token's UTF-8, concatenated
    private let tokenOffsets: [Int]            // (V + 1) token v is tokenBytes[offsets[v]..<offsets[v+1]]
    /// Bytes of the longest token's UTF-8.
    package let longestToken: Int
    private let startFeed: [Int32]             // [start token], or [] (uniform first draw)
    private let tokenScalars: [Int32]          // (V) Unicode scalars of each token's text
    private var penalties: PenaltyCounts?      // (2·maxStreams, V) counts of generated tokens, once a row has penalties

    /// - Parameters:
    ///   - model: the weights (any workspace size); from now on used only by the loop's thread.
    ///   - maxStreams: rows stepped together at most.
    package init(model: CharRNNModel, vocabulary: Vocabulary, maxStreams: Int) {
        precondition(vocabulary.count == model.config.vocabSize && maxStreams >= 1)
        self.model = model; self.vocabulary = vocabulary; self.maxStreams = maxStreams
        V = model.config.vocabSize
        state = InferenceState(config: model.config, streams: maxStreams)
        tokens = IntStorage(count: maxStreams)
        logProbs = Storage(count: maxStreams * V)
        zeroRow = Storage(count: V)
        drawer = TokenDrawer(vocabSize: V, unknownID: vocabulary.unknownID)
        var bytes: [UInt8] = [], offsets = [0], longest = 0
        for t in vocabulary.tokens { bytes += Array(t.utf8); offsets.append(bytes.count); longest = max(longest, t.utf8.count) }
        tokenBytes = bytes; tokenOffsets = offsets; longestToken = longest
        tokenScalars = vocabulary.tokens.map { Int32($0.unicodeScalars.count) }
        startFeed = vocabulary.startID.map { [Int32($0)] } ?? []
        // ended rows keep their slot until `step` while as many new ones join
        slots = Array(repeating: Row(), count: 2 * maxStreams)
        for k in slots.indices { slots[k].penaltySlot = k }
        released = (0..<2 * maxStreams).map { _ in var a = [UInt8](); a.reserveCapacity(longest + 64); return a }
        for i in slots.indices { slots[i].lp.reserve(RowLogprobs.initialCapacity) }
    }

    /// Loads a checkpoint for generation with `maxStreams` rows.
    public convenience init(checkpoint: Checkpoint.Loaded, maxStreams: Int, weights: WeightPrecision = .fp32) throws {
        let model = CharRNNModel(config: checkpoint.meta.model, maxT: 1, maxB: maxStreams)
        try Checkpoint.restore(checkpoint, model: model)
        model.inferencePrecision = weights
        self.init(model: model, vocabulary: checkpoint.meta.vocabulary, maxStreams: maxStreams)
    }

    // MARK: - Joining

    /// The seed of stream i's generator: the seed itself for stream 0 (as a single sample has always
    /// been), a SplitMix64 step away for the others, so sample i is the same whatever K is.
    public static func streamSeed(_ seed: UInt64, stream i: Int) -> UInt64 {
        guard i > 0 else { return seed }
        var z = seed &+ UInt64(i - 1) &* 0x9E37_79B9_7F4A_7C15   // i steps from the seed
        return Xoshiro256.splitmix(&z)
    }

    /// Adds a row to the batch; it feeds `prompt[0]` in the coming `step`. With `maxTokens` 0 it
    /// ends at once (`length`); with an empty prompt and no start token it draws its first token now.
    /// - Parameters:
    ///   - prompt: token ids, each in 0..<V (empty: the start token).
    ///   - seed: with `stream`, the row's generator: `Xoshiro256(seed: GenerationLoop.streamSeed(seed, stream: stream))`.
    ///   - maxTokens: tokens to draw at most (≥ 0).
    ///   - stop: the row's stop filter (moved in: a copy would share its buffer and allocate at the first token).
    ///   - owner: the driver's object for the row (`owner(_:)`), kept until the row leaves.
    ///   - logprobs: nil, or record each token's log p and its `logprobs` (0...5) likeliest alternatives
    ///     (`withReleasedLogprobs`).
    ///   - echo: release the prompt's text (and, with `logprobs`, its scores) before the completion;
    ///     with `maxTokens` 0 the prompt is fed (scored) and nothing is drawn.
    public func join(prompt: [Int32], seed: UInt64, stream: Int, options: SamplingOptions, maxTokens: Int,
                     stop: consuming StopFilter, owner: AnyObject? = nil, logprobs: Int? = nil, echo: Bool = false) {
        precondition(running < maxStreams && rows < slots.count, "no free row")
        precondition(maxTokens >= 0 && stream >= 0)
        let i = rows
        rows += 1; running += 1
        slots[i].owner = owner
        slots[i].stream = stream
        slots[i].feed = prompt.isEmpty ? startFeed : prompt
        slots[i].options = options
        slots[i].maxTokens = maxTokens
        slots[i].rng = Xoshiro256(seed: GenerationLoop.streamSeed(seed, stream: stream))
        slots[i].filter = stop
        slots[i].fed = 0; slots[i].drawn = 0; slots[i].end = nil; slots[i].fresh = true
        startCounting(i)
        released[i].removeAll(keepingCapacity: true)
        // one draw releases at most what the filter held (< the longest stop) and the token
        released[i].reserveCapacity(slots[i].filter.longestStop + longestToken)
        joinLogprobs(i, logprobs: logprobs, echo: echo && !prompt.isEmpty)
        if slots[i].lp.echo {
            precondition(prompt.allSatisfy { $0 >= 0 && Int($0) < V }, "prompt token outside the vocabulary")
            slots[i].next = prompt[0]
            slots[i].fed = 1
            echoPrompt(i, from: nil)
        } else if maxTokens == 0 {
            end(i, .length)
        } else if slots[i].feed.isEmpty {
            generate(i, from: UnsafePointer(zeroRow.ptr))
        } else {
            precondition(slots[i].feed.allSatisfy { $0 >= 0 && Int($0) < V }, "prompt token outside the vocabulary")
            slots[i].next = slots[i].feed[0]
            slots[i].fed = 1
        }
    }

    // MARK: - One iteration

    /// Every running row feeds its next prompt token or, its prompt fed, draws its next token (rows
    /// that joined since the last `step` wait for it: their first token is set).
    public func advance() {
        for i in 0..<rows where slots[i].end == nil && !slots[i].fresh {
            if slots[i].fed < slots[i].feed.count {
                slots[i].next = slots[i].feed[slots[i].fed]
                slots[i].fed += 1
                if slots[i].lp.echo { echoPrompt(i, from: UnsafePointer(logProbs.ptr + i * V)) }
            } else {
                generate(i, from: UnsafePointer(logProbs.ptr + i * V))
            }
        }
    }

    /// Ends row `r` (it leaves at `step`); its released text stays readable until then. Replaces an
    /// end the row already had (an overflow found while delivering its last text).
    public func end(_ r: Int, _ reason: FinishReason) {
        precondition(r >= 0 && r < rows)
        if slots[r].end == nil { running -= 1 }
        slots[r].end = reason
    }

    /// Ended rows leave (their slots taken by the last rows), rows that joined start from zero
    /// state, and the remaining rows run one batched step. Released text is cleared.
    /// - Returns: the rows stepped.
    @discardableResult
    public func step() -> Int {
        var i = 0
        while i < rows {
            if slots[i].end != nil {
                let last = rows - 1
                if i != last {
                    if !slots[last].fresh { state.copyStream(last, of: state, to: i) }
                    slots.swapAt(i, last); released.swapAt(i, last)
                }
                slots[last].owner = nil; slots[last].feed = []
                rows -= 1
            } else { i += 1 }
        }
        for r in 0..<rows { released[r].removeAll(keepingCapacity: true) }
        clearLogprobs()
        let R = rows
        guard R > 0 else { return 0 }
        for r in 0..<R where slots[r].fresh { state.reset(stream: r); slots[r].fresh = false }
        for r in 0..<R { tokens.ptr[r] = slots[r].next }
        model.step(tokens: tokens.ptr, state: state, rows: R, logProbs: logProbs.ptr)
        return R
    }

    /// Runs the rows in the batch to their ends, none joining (`charrnn sample`): after every draw,
    /// `deliver` gets the row's stream index and the text it released (not called for empty text).
    public func runToEnd(_ deliver: (_ stream: Int, _ text: UnsafeBufferPointer<UInt8>) throws -> Void) rethrows {
        while rows > 0 {
            advance()
            for r in 0..<rows {
                let i = slots[r].stream
                try released[r].withUnsafeBufferPointer { if !$0.isEmpty { try deliver(i, $0) } }
            }
            step()
        }
    }

    // MARK: - What a row did (between `advance`/`join` and `step`)

    /// The driver's object of row r.
    package func owner(_ r: Int) -> AnyObject? { slots[r].owner }
    /// The stream index row r joined with.
    public func stream(_ r: Int) -> Int { slots[r].stream }
    /// Why row r ended, nil while it runs.
    public func ended(_ r: Int) -> FinishReason? { slots[r].end }
    /// Tokens row r drew.
    public func drawn(_ r: Int) -> Int { slots[r].drawn }
    /// Calls `body` with the text row r released since the last `step` (whole UTF-8 scalars; may be empty).
    package func withReleased<T>(_ r: Int, _ body: (UnsafeBufferPointer<UInt8>) throws -> T) rethrows -> T {
        precondition(r >= 0 && r < rows)
        return try released[r].withUnsafeBufferPointer(body)
    }

    // MARK: - The draw

    /// Draws row i's next token from `z`, releases its text, and ends the row when it is done.
    private func generate(_ i: Int, from z: UnsafePointer<Float>) {
        let tok = slots[i].options.shapesLogits ? drawShaped(i, from: z)
            : drawer.draw(z, options: slots[i].options, rng: &slots[i].rng)
        slots[i].drawn += 1
        let before = released[i].count
        if slots[i].lp.top >= 0 { logprobsDrawn(i, token: tok, z: z) }
        defer { if slots[i].lp.top >= 0 { logprobsReleased(i, bytes: released[i].count - before, stopped: slots[i].end == .stop) } }
        let hitStop = tokenBytes.withUnsafeBufferPointer { all -> Bool in
            let b = UnsafeBufferPointer(rebasing: all[tokenOffsets[tok]..<tokenOffsets[tok + 1]])
            return slots[i].filter.feed(b) { released[i].append(contentsOf: $0) }
        }
        if hitStop {
            end(i, .stop)
        } else if slots[i].drawn >= slots[i].maxTokens {
            slots[i].filter.flush { released[i].append(contentsOf: $0) }
            end(i, .length)
        } else {
            slots[i].next = Int32(tok)
        }
    }
}

// MARK: - Log-probabilities and echo
//
// A row joined with `logprobs: N` records, for each token it gives out, a `TokenLogprob` (its log p
// under the model and the N likeliest alternatives); with `echo` it first gives out its prompt, text
// and (with logprobs) scores, one token per step as the prompt is fed.
// Which drawn tokens appear, and where (the mapping through the stop filter): token j's UTF-8 covers
// bytes [s_j, e_j) of the generated bytes; the filter releases a prefix of them. A token is given out
// (with the text released in the same iteration or before) once all its bytes are released. When a
// stop string ends the row, a token that was partly released (a multi-scalar token the stop cuts
// inside) is given out with `bytes` = its released part, and the tokens whose text was withheld are
// dropped. So the entries' texts, joined, are exactly the row's text, and `offset` counts the row's
// scalars before each entry. The first prompt token has no log p (NaN: nothing predicts it, as in
// `charrnn eval`, which scores tokens 1…n−1); prompt token k ≥ 1 is scored from the model's row after
// tokens 0…k−1. With `maxTokens` 0 and echo, the row ends when its last prompt token is given out.
// Buffers: a slot's entry arrays keep their capacity; a join reserves what the row's stop strings
// need, so recording allocates nothing per step.

struct RowLogprobs {
    var top = -1                                   // alternatives per token; -1: not recording
    var echo = false                               // the prompt is given out
    var pending: [(start: Int, entry: TokenLogprob)] = []   // drawn, not all bytes released: 0..<pendingCount
    var pendingCount = 0                           // (kept in place: the array keeps its capacity)
    var out: [TokenLogprob] = []                   // given out since the last step
    var drawnBytes = 0                             // generated bytes drawn
    var releasedBytes = 0                          // generated bytes released
    var chars = 0                                  // scalars given out in entries so far

    /// Entries every slot holds from the start (rows with stop strings up to 24 bytes need no more).
    static let initialCapacity = 32
    mutating func reserve(_ n: Int) {
        if pending.capacity < n { pending.reserveCapacity(n) }
        if out.capacity < n { out.reserveCapacity(n) }
    }
}

extension GenerationLoop {
    /// Calls `body` with the entries row r gave out since the last `step` (empty without `logprobs`).
    package func withReleasedLogprobs<T>(_ r: Int, _ body: (UnsafeBufferPointer<TokenLogprob>) throws -> T) rethrows -> T {
        precondition(r >= 0 && r < rows)
        return try slots[r].lp.out.withUnsafeBufferPointer(body)
    }

    /// `runToEnd` with each row's entries (`charrnn sample --logprobs`): `deliver` gets the stream
    /// index, the text and the entries released by one draw (called when either is non-empty).
    public func runToEnd(_ deliver: (_ stream: Int, _ text: UnsafeBufferPointer<UInt8>, _ entries: UnsafeBufferPointer<TokenLogprob>) throws -> Void) rethrows {
        while rows > 0 {
            advance()
            for r in 0..<rows {
                let i = slots[r].stream
                try released[r].withUnsafeBufferPointer { t in
                    try slots[r].lp.out.withUnsafeBufferPointer { e in
                        if !t.isEmpty || !e.isEmpty { try deliver(i, t, e) }
                    }
                }
            }
            step()
        }
    }

    func joinLogprobs(_ i: Int, logprobs: Int?, echo: Bool) {
        precondition(logprobs.map { (0...TokenLogprob.maxTop).contains($0) } ?? true, "logprobs outside 0...5")
        slots[i].lp.top = logprobs ?? -1
        slots[i].lp.echo = echo
        slots[i].lp.pendingCount = 0
        slots[i].lp.out.removeAll(keepingCapacity: true)
        slots[i].lp.drawnBytes = 0; slots[i].lp.releasedBytes = 0; slots[i].lp.chars = 0
        if logprobs != nil {
            slots[i].lp.reserve(slots[i].filter.longestStop + 8)   // pending ≤ held bytes + 1; given out per step ≤ pending + 2
        }
    }

    /// Clears what rows gave out (called by `step` with the released text).
    func clearLogprobs() {
        for r in 0..<rows where !slots[r].lp.out.isEmpty { slots[r].lp.out.removeAll(keepingCapacity: true) }
    }

    /// Gives out the prompt token just fed (`feed[fed − 1]`), scored from `z` (nil: the first).
    func echoPrompt(_ i: Int, from z: UnsafePointer<Float>?) {
        let tok = Int(slots[i].feed[slots[i].fed - 1])
        let lo = tokenOffsets[tok], hi = tokenOffsets[tok + 1]
        tokenBytes.withUnsafeBufferPointer { released[i].append(contentsOf: UnsafeBufferPointer(rebasing: $0[lo..<hi])) }
        if slots[i].lp.top >= 0 {
            var e = TokenLogprob(token: tok, bytes: hi - lo, z: z, V: V, top: slots[i].lp.top, isPrompt: true)
            e.offset = slots[i].lp.chars
            slots[i].lp.chars += Int(tokenScalars[tok])
            slots[i].lp.out.append(e)
        }
        if slots[i].fed == slots[i].feed.count && slots[i].maxTokens == 0 { end(i, .length) }
    }

    /// Records the token row i just drew from `z` (given out once its text is released).
    func logprobsDrawn(_ i: Int, token: Int, z: UnsafePointer<Float>) {
        let n = tokenOffsets[token + 1] - tokenOffsets[token]
        let e = TokenLogprob(token: token, bytes: n, z: z, V: V, top: slots[i].lp.top, isPrompt: false)
        let k = slots[i].lp.pendingCount
        if k < slots[i].lp.pending.count { slots[i].lp.pending[k] = (slots[i].lp.drawnBytes, e) } else { slots[i].lp.pending.append((slots[i].lp.drawnBytes, e)) }
        slots[i].lp.pendingCount = k + 1
        slots[i].lp.drawnBytes += n
    }

    /// Row i's filter released `bytes` more generated bytes (and stopped, if `stopped`): gives out
    /// the tokens now wholly released (see the section header for a stop).
    func logprobsReleased(_ i: Int, bytes: Int, stopped: Bool) {
        slots[i].lp.releasedBytes += bytes
        let upTo = slots[i].lp.releasedBytes
        var k = 0
        let n = slots[i].lp.pendingCount
        while k < n {
            let (start, e0) = slots[i].lp.pending[k]
            var e = e0
            if start + Int(e.bytes) > upTo {
                guard stopped else { break }
                if start >= upTo { k = n; break }                              // withheld: dropped
                e.bytes = Int32(upTo - start)                                  // cut inside by the stop
            }
            e.offset = slots[i].lp.chars
            slots[i].lp.chars += e.bytes == Int32(tokenOffsets[Int(e.token) + 1] - tokenOffsets[Int(e.token)])
                ? Int(tokenScalars[Int(e.token)]) : scalarCount(token: Int(e.token), bytes: Int(e.bytes))
            slots[i].lp.out.append(e)
            k += 1
        }
        if k > 0 {
            for j in k..<n { slots[i].lp.pending[j - k] = slots[i].lp.pending[j] }
            slots[i].lp.pendingCount = n - k
        }
    }

    private func scalarCount(token: Int, bytes: Int) -> Int {
        var n = 0
        for b in tokenBytes[tokenOffsets[token]..<(tokenOffsets[token] + bytes)] where b & 0xC0 != 0x80 { n += 1 }
        return n
    }
}

// MARK: - Penalties and logit bias (Penalties.swift)

extension GenerationLoop {
    /// Row i (joining) starts with no token generated: its options checked against the vocabulary,
    /// and, with penalties, its slot's counts zeroed.
    private func startCounting(_ i: Int) {
        precondition(slots[i].options.logitBias.allSatisfy { $0.id >= 0 && $0.id < V }, "logit bias id outside the vocabulary")
        guard slots[i].options.countsTokens else { return }
        if penalties == nil { penalties = PenaltyCounts(slots: slots.count, vocabSize: V) }
        penalties!.reset(slots[i].penaltySlot, window: slots[i].options.effectiveWindow(maxTokens: slots[i].maxTokens))
    }

    /// Draws row i's next token from `z` reshaped by its penalties and bias, and counts it.
    private func drawShaped(_ i: Int, from z: UnsafePointer<Float>) -> Int {
        let s = slots[i].penaltySlot
        let counting = slots[i].options.countsTokens
        let row = drawer.shape(z, options: slots[i].options, counts: counting ? penalties!.all(s) : nil,
                               recent: counting ? penalties!.recent(s) : nil)
        let tok = drawer.draw(row, options: slots[i].options, rng: &slots[i].rng)
        if counting { penalties!.record(s, tok) }
        return tok
    }
}
