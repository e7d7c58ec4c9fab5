// PenaltyTests.swift — frequency, presence and repetition penalties and logit bias (Penalties.swift):
// each against a distribution computed by hand from a known row of probabilities and counts fed to
// the drawer; bans are exact (never drawn, also at T = 0 and with top-k); how a bias key names a
// token; the option checks; the generation loop's counts (window, reset at join, slot reuse in the
// engine) against an independent step-level reference; and the penalised loop allocates nothing.

import XCTest
@testable import CharRNN

final class PenaltyTests: XCTestCase {
    typealias E = BatchEngineTests

    // MARK: - The drawer on a hand-made row

    static let p: [Double] = [0.4, 0.3, 0.15, 0.1, 0.05]   // the model's distribution over 5 tokens

    /// The drawer's distribution after one draw from log `p` with `options` (plain draw: no top-k/p).
    func distribution(_ o: SamplingOptions, counts: [Int32] = [0, 0, 0, 0, 0], recent: [Int32]? = nil) -> [Double] {
        let d = TokenDrawer(vocabSize: 5, unknownID: nil)
        let z = Self.p.map { Float(log($0)) }
        var rng = Xoshiro256(seed: 1)
        z.withUnsafeBufferPointer { zb in
            counts.withUnsafeBufferPointer { cb in
                let row = recent.map { r in r.withUnsafeBufferPointer { d.shape(zb.baseAddress!, options: o, counts: cb.baseAddress, recent: $0.baseAddress) } }
                    ?? d.shape(zb.baseAddress!, options: o, counts: cb.baseAddress, recent: nil)
                _ = d.draw(row, options: o, rng: &rng)
            }
        }
        let q = (0..<5).map { Double(d.probs.ptr[$0]) }
        let s = q.reduce(0, +)
        return q.map { $0 / s }
    }

    func assertClose(_ a: [Double], _ b: [Double], _ what: String, accuracy: Double = 2e-6) {
        XCTAssertEqual(a.count, b.count, what)
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy, "\(what): \(a) vs \(b)") }
    }

    func normalized(_ w: [Double]) -> [Double] { let s = w.reduce(0, +); return w.map { $0 / s } }

    /// Frequency: p'(c) ∝ p(c)·e^(−F·n(c)); presence: p'(c) ∝ p(c)·e^(−P·[n(c)>0]); both at once; and
    /// with temperature T: p'(c) ∝ (p(c)·e^(−F·n(c)))^(1/T).
    func testFrequencyAndPresenceAgainstHandComputedDistribution() {
        let p = Self.p, n: [Int32] = [2, 0, 1, 0, 3]
        var o = SamplingOptions(temperature: 1)
        o.frequencyPenalty = 0.5
        assertClose(distribution(o, counts: n), normalized([p[0] * exp(-1.0), p[1], p[2] * exp(-0.5), p[3], p[4] * exp(-1.5)]), "frequency")
        o.frequencyPenalty = 0; o.presencePenalty = 0.7
        assertClose(distribution(o, counts: n), normalized([p[0] * exp(-0.7), p[1], p[2] * exp(-0.7), p[3], p[4] * exp(-0.7)]), "presence")
        o.frequencyPenalty = -0.25   // negative values encourage repetition
        let fp = [p[0] * exp(0.5 - 0.7), p[1], p[2] * exp(0.25 - 0.7), p[3], p[4] * exp(0.75 - 0.7)]
        assertClose(distribution(o, counts: n), normalized(fp), "frequency and presence")
        o.temperature = 0.5
        assertClose(distribution(o, counts: n), normalized(fp.map { $0 * $0 }), "penalties before temperature")
        o = SamplingOptions(temperature: 1); o.presencePenalty = 1.5
        assertClose(distribution(o, counts: [0, 0, 0, 0, 0]), p, "nothing generated yet: no penalty")
    }

    /// Repetition R on log p ≤ 0 multiplies it by R: p'(c) ∝ p(c)^R for the tokens in the window
    /// (`recent`), not for tokens generated only before it; a positive score is divided by R.
    func testRepetitionPenaltyAgainstHandComputedDistribution() {
        let p = Self.p
        var o = SamplingOptions(temperature: 1)
        o.repetitionPenalty = 2
        // generated: tokens 0, 3 and 4, but only 0 and 3 among the last N
        assertClose(distribution(o, counts: [1, 0, 0, 2, 1], recent: [1, 0, 0, 1, 0]), normalized([p[0] * p[0], p[1], p[2], p[3] * p[3], p[4]]), "R = 2, window")
        assertClose(distribution(o, counts: [1, 0, 0, 2, 1]), normalized([p[0] * p[0], p[1], p[2], p[3] * p[3], p[4] * p[4]]), "R = 2, all generated")
        o.repetitionPenalty = 0.5   // R < 1 encourages: p^(1/2)
        assertClose(distribution(o, counts: [0, 1, 0, 0, 0]), normalized([p[0], p[1].squareRoot(), p[2], p[3], p[4]]), "R = 0.5")
        // positive scores (possible for any row of scores) are divided by R, negative ones multiplied
        let d = TokenDrawer(vocabSize: 3, unknownID: nil)
        o.repetitionPenalty = 4
        let z: [Float] = [2, -1, 3], n: [Int32] = [1, 1, 0]
        let out = z.withUnsafeBufferPointer { zb in n.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: d.shape(zb.baseAddress!, options: o, counts: $0.baseAddress, recent: nil), count: 3)) } }
        XCTAssertEqual(out, [0.5, -4, 3])
    }

    /// Bias b: p'(c) ∝ p(c)·e^b; −100 bans exactly (probability 0, never drawn: plain, T = 0, top-k).
    func testLogitBiasAndExactBan() {
        let p = Self.p
        var o = SamplingOptions(temperature: 1)
        o.logitBias = [LogitBias(id: 1, bias: -100), LogitBias(id: 3, bias: Float(log(2.0)))]
        let q = distribution(o)
        XCTAssertEqual(q[1], 0, "banned: exactly 0")
        assertClose(q, normalized([p[0], 0, p[2], p[3] * 2, p[4]]), "bias ln 2 doubles, −100 bans")
        // bias after the penalties: a frequency-penalised token can be boosted back
        o.logitBias = [LogitBias(id: 0, bias: 1)]; o.frequencyPenalty = 1
        assertClose(distribution(o, counts: [1, 0, 0, 0, 0]), p, "−F·1 + 1 cancel")
        // draws: the banned likeliest token is never drawn; frequencies follow the shaped distribution
        let d = TokenDrawer(vocabSize: 5, unknownID: nil)
        let z = p.map { Float(log($0)) }
        var ban = SamplingOptions(temperature: 1)
        ban.logitBias = [LogitBias(id: 0, bias: -100), LogitBias(id: 4, bias: 100)]
        var rng = Xoshiro256(seed: 3), hist = [0, 0, 0, 0, 0]
        let N = 20000
        z.withUnsafeBufferPointer { zb in
            for _ in 0..<N { hist[d.draw(d.shape(zb.baseAddress!, options: ban, counts: nil, recent: nil), options: ban, rng: &rng)] += 1 }
        }
        XCTAssertEqual(hist[0], 0, "banned token drawn")
        let want = normalized([0, p[1], p[2], p[3], p[4] * exp(100)])
        for c in 0..<5 { XCTAssertEqual(Double(hist[c]) / Double(N), want[c], accuracy: 0.01) }
        // T = 0: the argmax skips the banned likeliest token; top-k = 2 draws among the two likeliest allowed
        for (t, k) in [(Float(0), 0), (1, 2), (1, 1), (0.7, 5)] {
            var o2 = SamplingOptions(temperature: t, topK: k, topP: t == 0.7 ? 0.999 : 1)
            o2.logitBias = [LogitBias(id: 0, bias: -100)]
            var seen = Set<Int>()
            z.withUnsafeBufferPointer { zb in
                for _ in 0..<2000 { seen.insert(d.draw(d.shape(zb.baseAddress!, options: o2, counts: nil, recent: nil), options: o2, rng: &rng)) }
            }
            XCTAssertFalse(seen.contains(0), "T \(t) top-k \(k): banned token drawn")
            if t == 0 || k == 1 { XCTAssertEqual(seen, [1], "T \(t) top-k \(k)") }
            if k == 2 { XCTAssertEqual(seen, [1, 2], "top-k 2 among the allowed") }
        }
    }

    // MARK: - Keys, values and checks

    func testBiasKeysNameTokens() throws {
        let v = Vocabulary(unit: .scalar, tokens: ["\n", " ", "1", "=", "a", "é"] + (0..<10).map { String(UnicodeScalar(UInt8(0x41 + $0))) })
        func tok(_ k: String, _ n: Normalization = .none) -> Int? { LogitBias.token(k, in: v, normalize: n) }
        XCTAssertEqual(tok("\n"), 0); XCTAssertEqual(tok("="), 3); XCTAssertEqual(tok("é"), 5)
        XCTAssertEqual(tok("1"), 2, "a digit that is a token is the character")
        XCTAssertEqual(tok("0"), 0, "a digit that is not a token is an id")
        XCTAssertEqual(tok("15"), 15); XCTAssertNil(tok("16"), "id past the vocabulary")
        XCTAssertNil(tok("01")); XCTAssertNil(tok("-1")); XCTAssertNil(tok("+2")); XCTAssertNil(tok("ab")); XCTAssertNil(tok(""))
        XCTAssertNil(tok("99999999999999999999999"))
        XCTAssertNil(tok("e\u{301}"), "decomposed é without NFC")
        XCTAssertEqual(tok("e\u{301}", .nfc), 5, "normalized as a prompt is")
        let b = try LogitBias.resolve([(key: "a", bias: 5), (key: "0", bias: -100)], vocabulary: v, normalize: .none)
        XCTAssertEqual(b, [LogitBias(id: 0, bias: -100), LogitBias(id: 4, bias: 5)], "sorted by id")
        XCTAssertThrowsError(try LogitBias.resolve([(key: "\n", bias: 1), (key: "0", bias: 2)], vocabulary: v, normalize: .none)) {
            XCTAssertEqual($0 as? LogitBias.Problem, .duplicate(key: "0", other: "\n"))
        }
        XCTAssertThrowsError(try LogitBias.resolve([(key: "zz", bias: 1)], vocabulary: v, normalize: .none)) {
            XCTAssertEqual($0 as? LogitBias.Problem, .notAToken(key: "zz", vocabularySize: 16))
            XCTAssertTrue("\($0)".contains("\"zz\"") && !"\($0)".contains("\n"))
        }
        for bad: Float in [-100.5, 101, .nan, .infinity] {
            XCTAssertThrowsError(try LogitBias.resolve([(key: "a", bias: bad)], vocabulary: v, normalize: .none), "\(bad)")
        }
        let all = v.tokens.map { (key: $0, bias: Float(-100)) }
        XCTAssertThrowsError(try LogitBias.resolve(all, vocabulary: v, normalize: .none)) { XCTAssertEqual($0 as? LogitBias.Problem, .bansEverything) }
        XCTAssertNoThrow(try LogitBias.resolve(Array(all.dropLast()), vocabulary: v, normalize: .none), "one token left")
        // with an unknown token: it cannot be biased, and banning every other token bans everything
        let u = Vocabulary(unit: .scalar, tokens: ["", "a", "b"], unknownID: 0)
        XCTAssertThrowsError(try LogitBias.resolve([(key: "0", bias: 1)], vocabulary: u, normalize: .none)) { XCTAssertEqual($0 as? LogitBias.Problem, .unknownToken(key: "0")) }
        XCTAssertThrowsError(try LogitBias.resolve([(key: "a", bias: -100), (key: "b", bias: -100)], vocabulary: u, normalize: .none))
        var o = SamplingOptions(); o.logitBias = [LogitBias(id: 1, bias: -100), LogitBias(id: 2, bias: -100)]
        XCTAssertNotNil(o.problem(vocabulary: u)); XCTAssertNil(o.problem)
    }

    func testOptionChecks() {
        func problem(_ f: (inout SamplingOptions) -> Void) -> String? { var o = SamplingOptions(); f(&o); return o.problem }
        XCTAssertNil(problem { $0.frequencyPenalty = 2; $0.presencePenalty = -2; $0.repetitionPenalty = 0.1; $0.repeatWindow = 0 })
        XCTAssertEqual(problem { $0.frequencyPenalty = 2.01 }, "--frequency-penalty must be in -2...2")
        XCTAssertEqual(problem { $0.presencePenalty = .nan }, "--presence-penalty must be in -2...2")
        XCTAssertEqual(problem { $0.repetitionPenalty = 0 }, "--repetition-penalty must be in (0, 100] (1 = off)")
        XCTAssertNotNil(problem { $0.repetitionPenalty = .infinity })
        XCTAssertNotNil(problem { $0.repeatWindow = -1 })
        XCTAssertNotNil(problem { $0.logitBias = [LogitBias(id: 2, bias: 1), LogitBias(id: 2, bias: 1)] })
        XCTAssertNotNil(problem { $0.logitBias = [LogitBias(id: 0, bias: -101)] })
        var o = SamplingOptions(); o.logitBias = [LogitBias(id: 99, bias: 1)]
        XCTAssertNotNil(o.problem(vocabulary: E.vocabulary))
    }

    /// The ring of the last N tokens: r(c) counts exactly the last N recorded, across regrowth of
    /// the shared ring block while other slots are mid-window.
    func testCountsAndWindow() {
        let c = PenaltyCounts(slots: 3, vocabSize: 4)
        c.reset(1, window: 2)
        let seq = [0, 1, 1, 3, 2, 2, 2, 0]
        for (k, t) in seq.enumerated() {
            if k == 4 { c.reset(2, window: 5) }   // a longer window regrows the block; slot 1 keeps its ring
            c.record(1, t)
            let last = seq[max(0, k - 1)...k]
            for v in 0..<4 {
                XCTAssertEqual(Int(c.all(1)[v]), seq[0...k].filter { $0 == v }.count)
                XCTAssertEqual(Int(c.recent(1)![v]), last.filter { $0 == v }.count, "after \(k + 1) tokens, token \(v)")
            }
        }
        c.reset(0, window: 0)
        c.record(0, 3)
        XCTAssertNil(c.recent(0)); XCTAssertEqual(c.all(0)[3], 1)
        c.reset(1, window: 2)
        XCTAssertEqual((0..<4).map { c.all(1)[$0] + c.recent(1)![$0] }, [0, 0, 0, 0], "reset zeroes")
    }

    // MARK: - The generation loop

    /// What the loop must draw with penalties: the step-level Sampler, with the counts kept here
    /// (plain arrays) and the shaped row computed here, drawn through the same drawer.
    static func reference(_ m: CharRNNModel, _ r: GenerationRequest) -> [String] {
        let o = r.options, V = E.V
        let s = Sampler(model: m, vocabulary: E.vocabulary, options: o, seed: r.seed, streams: r.choices)
        if r.prompt.isEmpty { s.start() } else { for t in r.prompt { s.feed(Int(t)) } }
        var drawn = [[Int]](repeating: [], count: r.choices)
        let step = IntStorage(count: r.choices)
        let window = o.repeatWindow == 0 || o.repeatWindow >= r.maxTokens ? Int.max : o.repeatWindow
        for _ in 0..<r.maxTokens {
            for i in 0..<r.choices {
                var z = s.currentLogProbs(stream: i)
                let recent = drawn[i].suffix(window)
                for c in 0..<V {
                    let n = drawn[i].filter { $0 == c }.count
                    if o.repetitionPenalty != 1 && recent.contains(c) { z[c] = z[c] > 0 ? z[c] / o.repetitionPenalty : z[c] * o.repetitionPenalty }
                    if n > 0 && (o.frequencyPenalty != 0 || o.presencePenalty != 0) { z[c] -= o.frequencyPenalty * Float(n) + o.presencePenalty }
                }
                for b in o.logitBias { z[b.id] = b.bias == -100 ? -.infinity : z[b.id] + b.bias }
                let t = z.withUnsafeBufferPointer { s.drawer.draw($0.baseAddress!, options: o, rng: &s.rngs[i]) }
                drawn[i].append(t); step.ptr[i] = Int32(t)
            }
            s.model.step(tokens: step.ptr, state: s.state, logProbs: s.logProbs.ptr)
        }
        return drawn.map { ids in
            var f = StopFilter(stops: r.stop), out: [UInt8] = []
            for id in ids where Array(E.vocabulary.tokens[id].utf8).withUnsafeBufferPointer({ f.feed($0) { out += $0 } }) { break }
            f.flush { out += $0 }
            return String(decoding: out, as: UTF8.self)
        }
    }

    static func options(_ t: Float, f: Float = 0, p: Float = 0, r: Float = 1, window: Int = 0, bias: [LogitBias] = [], topK: Int = 0) -> SamplingOptions {
        var o = SamplingOptions(temperature: t, topK: topK)
        o.frequencyPenalty = f; o.presencePenalty = p; o.repetitionPenalty = r; o.repeatWindow = window; o.logitBias = bias
        return o
    }

    static let nl = LogitBias(id: 0, bias: -100)   // "\n" banned

    static let requests = [
        GenerationRequest(prompt: E.ids("the cat"), choices: 3, seed: 31, options: options(0.9, f: 0.8, p: 0.4), maxTokens: 60),
        GenerationRequest(prompt: [], choices: 2, seed: 32, options: options(1, r: 1.6, window: 6, bias: [nl, LogitBias(id: 2, bias: 3)]), maxTokens: 70),
        GenerationRequest(prompt: E.ids("a"), choices: 2, seed: 33, options: options(0, f: 2, r: 1.3), maxTokens: 50, stop: ["ee"]),
        GenerationRequest(prompt: E.ids("é"), choices: 1, seed: 34, options: options(1.2, f: -1, p: 2, r: 0.7, window: 200, bias: [nl], topK: 4), maxTokens: 40),
        GenerationRequest(prompt: E.ids("b"), choices: 2, seed: 35, options: options(0.8, bias: [LogitBias(id: 1, bias: -2), LogitBias(id: 6, bias: 1.5)]), maxTokens: 45),
    ]

    /// `sample`'s path and the server's (an engine of 2 streams: slots reused, counts reset at each
    /// join) both draw what the reference draws; the penalties change the text; bans hold.
    func testLoopAndEngineEqualTheReference() {
        let m = E.model(E.config(.lstm, embed: 0, adaptive: false), seed: 71)
        let engine = BatchEngine(model: m, vocabulary: E.vocabulary, maxStreams: 3, queueLimit: 8)
        let tickets = Self.requests.map { GenerationTicket($0) }
        for t in tickets { XCTAssertNoThrow(try engine.submit(t)) }
        var completions: [[String]] = []
        E.drain(engine, tickets, texts: &completions)
        for (k, r) in Self.requests.enumerated() {
            let want = Self.reference(m, r)
            let s = GenerationLoopTests.sample(m, r)
            XCTAssertEqual(s, want, "request \(k): sample = reference")
            XCTAssertEqual(completions[k], want, "request \(k): completion = reference")
            var plain = r; plain.options = SamplingOptions(temperature: r.options.temperature, topK: r.options.topK)
            XCTAssertNotEqual(GenerationLoopTests.sample(m, plain), s, "request \(k): the penalties change the text")
            if r.options.logitBias.contains(Self.nl) { XCTAssertFalse(s.contains { $0.contains("\n") }, "request \(k): newline banned") }
        }
    }

    /// A presence penalty of 2 at T = 0 on a model that loops: fewer repeats than plain argmax.
    func testPenaltiesBreakArgmaxLoops() {
        let m = E.model(E.config(.gru, embed: 0, adaptive: false), seed: 9)
        let plain = GenerationRequest(prompt: E.ids("a"), seed: 1, options: SamplingOptions(temperature: 0), maxTokens: 200)
        var pen = plain; pen.options.presencePenalty = 2; pen.options.frequencyPenalty = 1
        let a = GenerationLoopTests.sample(m, plain)[0], b = GenerationLoopTests.sample(m, pen)[0]
        XCTAssertGreaterThan(Set(b).count, Set(a).count, "penalised argmax uses more distinct characters: \(a.debugDescription) vs \(b.debugDescription)")
    }

    /// Rows with penalties, windows and bans drawing, ending and joining (and an engine in steady
    /// state with them) make no heap allocation once the longest window has joined. Counted with
    /// scripts/malloc-count.c preloaded (.ci/run); skipped otherwise.
    func testPenalisedLoopAllocatesNothing() throws {
        typealias Fn = @convention(c) () -> UInt
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "charrnn_malloc_count_thread") else {
            throw XCTSkip("run with LD_PRELOAD of scripts/malloc-count.c to count allocations")
        }
        let count = unsafeBitCast(sym, to: Fn.self)
        let m = E.model(E.config(.lstm, embed: 8, adaptive: true))
        let loop = GenerationLoop(model: m, vocabulary: E.vocabulary, maxStreams: 6)
        let prompt = E.ids("the ")
        let opts = (0..<4).map { k in Self.options(1, f: 0.5, p: k % 2 == 0 ? 0.3 : 0, r: 1.2, window: [0, 3, 8, 2][k], bias: k == 3 ? [] : [Self.nl, LogitBias(id: 5, bias: 2)], topK: k) }
        var filters = (0..<400).map { i in StopFilter(stops: i % 2 == 0 ? ["ab#", "e e#"] : []) }
        var joined = 0, bytes = 0
        func fill() {
            while loop.running < loop.maxStreams {
                var f = StopFilter()
                swap(&f, &filters[joined])
                loop.join(prompt: prompt, seed: UInt64(joined), stream: joined % 3, options: opts[joined % 4], maxTokens: 10 + joined % 17, stop: f)
                joined += 1
            }
        }
        func round() {
            loop.advance()
            fill()
            for r in 0..<loop.rows { bytes += loop.withReleased(r) { $0.count } }
            loop.step()
        }
        fill()
        for _ in 0..<30 { round() }
        let start = count(), joinedBefore = joined
        for _ in 0..<150 { round() }
        let allocations = count() - start
        XCTAssertGreaterThan(joined - joinedBefore, 20, "rows left and joined")
        XCTAssertGreaterThan(bytes, 0)
        XCTAssertEqual(allocations, 0, "heap allocations in 150 iterations of penalised rows")

        let e = BatchEngine(model: m, vocabulary: E.vocabulary, maxStreams: 8, queueLimit: 4)
        let tickets = (0..<4).map { i in
            GenerationTicket(GenerationRequest(prompt: prompt, choices: 2, seed: UInt64(i), options: opts[i], maxTokens: 1000, stop: i % 2 == 0 ? ["ab#"] : []))
        }
        for t in tickets { try e.submit(t) }
        var updates = tickets.map { $0.makeUpdate() }
        func engineRound() { e.iterate(); for k in tickets.indices { _ = tickets[k].take(into: &updates[k]) } }
        for _ in 0..<20 { engineRound() }
        let before = count()
        for _ in 0..<200 { engineRound() }
        XCTAssertEqual(e.active, 8)
        XCTAssertEqual(count() - before, 0, "heap allocations in 200 steady-state engine iterations with penalties")
    }
}
