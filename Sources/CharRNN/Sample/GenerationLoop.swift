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
        startFeed = vocabulary.startID.map { [Int32($0)] } ?? []
        // ended rows keep their slot until `step` while as many new ones join
        slots = Array(repeating: Row(), count: 2 * maxStreams)
        for k in slots.indices { slots[k].penaltySlot = k }
        released = (0..<2 * maxStreams).map { _ in var a = [UInt8](); a.reserveCapacity(longest + 64); return a }
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
    public func join(prompt: [Int32], seed: UInt64, stream: Int, options: SamplingOptions, maxTokens: Int,
                     stop: consuming StopFilter, owner: AnyObject? = nil) {
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
        if maxTokens == 0 {
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
