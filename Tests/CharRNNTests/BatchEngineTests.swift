// BatchEngineTests.swift — the continuous-batching engine of `charrnn serve` (a driver of the
// GenerationLoop that `charrnn sample` runs) against the step-level Sampler, an independent
// reference that feeds and draws token by token: the same text for the same prompt, seed and
// options while other requests join and leave; rows freed on cancel within one step; stop strings;
// n > 1; queue and buffer limits; the threaded engine. (The request decoder and the streamed events:
// Tests/CharRNNAPITests.)

import XCTest
@testable import CharRNN

final class BatchEngineTests: XCTestCase {
    static let tokens = ["\n", " ", "a", "b", "c", "d", "e", "f", "g", "h", "i", "k", "l", "m", "n", "o", "r", "s", "t", "u", "y", "é", "😀"]
    static var V: Int { tokens.count }
    static let vocabulary = Vocabulary(unit: .scalar, tokens: tokens)

    static func config(_ cell: CellKind, embed: Int, adaptive: Bool) -> ModelConfig {
        var c = ModelConfig(cell: cell, layers: 2, hidden: 21, embed: embed, vocabSize: V)
        if adaptive { c.adaptive = AdaptiveSoftmaxConfig(cutoffs: [8, 15], divValue: 2, order: Array((0..<V).reversed())) }
        return c
    }

    static func model(_ c: ModelConfig, seed: UInt64 = 5) -> CharRNNModel {
        let m = CharRNNModel(config: c, maxT: 1, maxB: 1)
        var rng = Xoshiro256(seed: seed)
        for i in 0..<m.layout.count { m.params.ptr[i] = (rng.nextFloat() * 2 - 1) * 0.5 }
        m.parametersChanged()
        return m
    }

    /// What `charrnn sample --prime P --seed S --num-samples n --length L` with `--stop`s must draw,
    /// computed with the step-level Sampler: sample i's generated text (after the prime), cut before
    /// the first stop string.
    static func reference(_ m: CharRNNModel, vocabulary: Vocabulary = vocabulary, _ r: GenerationRequest) -> [String] {
        let s = Sampler(model: m, vocabulary: vocabulary, options: r.options, seed: r.seed, streams: r.choices)
        if r.prompt.isEmpty { s.start() } else { for t in r.prompt { s.feed(Int(t)) } }
        var drawn = [[Int32]](repeating: [], count: r.choices)
        let step = IntStorage(count: r.choices)
        for _ in 0..<r.maxTokens {
            s.next(into: step.ptr)
            for i in 0..<r.choices { drawn[i].append(step.ptr[i]) }
        }
        return drawn.map { ids in
            var f = StopFilter(stops: r.stop), out: [UInt8] = []
            for id in ids {
                let b = Array(vocabulary.tokens[Int(id)].utf8)
                if b.withUnsafeBufferPointer({ f.feed($0) { out += $0 } }) { break }
            }
            f.flush { out += $0 }
            return String(decoding: out, as: UTF8.self)
        }
    }

    static func ids(_ s: String) -> [Int32] { vocabulary.encode(s, normalize: .none).ids }

    /// Iterates a manually driven engine until every ticket is done (bounded), collecting text.
    static func drain(_ e: BatchEngine, _ tickets: [GenerationTicket], texts: inout [[String]], limit: Int = 10_000) {
        for _ in 0..<limit {
            collect(tickets, into: &texts)
            if tickets.allSatisfy({ $0.isFinished }) { return }
            e.iterate()
        }
        XCTFail("engine did not finish within \(limit) iterations")
    }

    static func collect(_ tickets: [GenerationTicket], into texts: inout [[String]]) {
        if texts.count < tickets.count { texts += Array(repeating: [], count: tickets.count - texts.count) }
        for (k, t) in tickets.enumerated() {
            if texts[k].isEmpty { texts[k] = Array(repeating: "", count: t.request.choices) }
            if let u = t.take() { for i in u.text.indices { texts[k][i] += String(decoding: u.text[i], as: UTF8.self) } }
        }
    }

    // MARK: - Determinism

    /// Requests joining at different steps, with different n, options and stop strings, each give
    /// the sampler's text exactly — for every cell, one-hot and embedding input, full and adaptive softmax.
    func testSameTextAsSamplerWithOthersInFlight() {
        let cells: [ModelConfig] = [Self.config(.lstm, embed: 0, adaptive: false), Self.config(.gru, embed: 8, adaptive: true),
                                    Self.config(.rnn, embed: 0, adaptive: true), Self.config(.lstm, embed: 8, adaptive: true)]
        for (n, c) in cells.enumerated() {
            let m = Self.model(c, seed: 40 + UInt64(n))
            let e = BatchEngine(model: m, vocabulary: Self.vocabulary, maxStreams: 9, queueLimit: 8)
            // a stop string that the third request really generates: two characters from its text without stops
            var third = GenerationRequest(prompt: Self.ids("a"), seed: 3, options: SamplingOptions(temperature: 1.2, topP: 0.8), maxTokens: 70)
            let free = Array(Self.reference(m, third)[0])
            third.stop = [String(free[12..<14]), "zz"]
            let requests: [(at: Int, GenerationRequest)] = [
                (0, GenerationRequest(prompt: Self.ids("the cat"), seed: 1, options: SamplingOptions(temperature: 0.9), maxTokens: 60)),
                (0, GenerationRequest(prompt: [], choices: 3, seed: 2, options: SamplingOptions(temperature: 1, topK: 5), maxTokens: 45)),
                (3, third),
                (7, GenerationRequest(prompt: Self.ids("dog é"), choices: 2, seed: 4, options: SamplingOptions(temperature: 0), maxTokens: 30)),
                (20, GenerationRequest(prompt: Self.ids("longer prompt here so it is still feeding"), seed: 5,
                                       options: SamplingOptions(temperature: 0.7, topK: 8, topP: 0.95), maxTokens: 25, stop: ["a b", "ch"])),
                (21, GenerationRequest(prompt: Self.ids("x"), seed: 6, options: SamplingOptions(temperature: 1), maxTokens: 0)),
                (50, GenerationRequest(prompt: Self.ids("late"), choices: 4, seed: 7, options: SamplingOptions(temperature: 1.5), maxTokens: 40)),
            ]
            var tickets: [GenerationTicket] = [], texts: [[String]] = [], peak = 0
            var next = 0
            for step in 0..<10_000 {
                while next < requests.count && requests[next].at <= step {
                    let t = GenerationTicket(requests[next].1)
                    XCTAssertNoThrow(try e.submit(t))
                    tickets.append(t); next += 1
                }
                Self.collect(tickets, into: &texts)
                if next == requests.count && tickets.allSatisfy({ $0.isFinished }) { break }
                peak = max(peak, e.iterate())
            }
            Self.collect(tickets, into: &texts)
            XCTAssertGreaterThan(peak, 4, "requests overlapped")
            XCTAssertEqual(e.active, 0)
            for (k, t) in tickets.enumerated() {
                XCTAssertEqual(texts[k], Self.reference(m, t.request), "\(c.cell) embed \(c.embed) adaptive \(c.adaptive != nil): request \(k)")
                let u = t.progress
                for i in 0..<t.request.choices {
                    XCTAssertTrue(u.finish[i] == .length || (u.finish[i] == .stop && !t.request.stop.isEmpty),
                                  "request \(k) choice \(i) finished \(String(describing: u.finish[i]))")
                    if u.finish[i] == .length { XCTAssertEqual(u.completionTokens[i], t.request.maxTokens) }
                }
            }
            // the stop request really stopped somewhere, the others ran to length
            XCTAssertEqual(tickets[2].progress.finish[0], .stop, "stop string \(third.stop[0].debugDescription) was generated")
            XCTAssertFalse(texts[2][0].contains(third.stop[0]))
            XCTAssertLessThanOrEqual(texts[2][0].count, 12)
        }
    }

    /// An empty prompt with no newline in the vocabulary starts from the uniform distribution, as the sampler does.
    func testUniformStartWithoutNewline() {
        let toks = Array(Self.tokens.dropFirst())
        let vocab = Vocabulary(unit: .scalar, tokens: toks)
        var c = Self.config(.lstm, embed: 0, adaptive: false); c.vocabSize = toks.count
        let m = Self.model(c)
        let e = BatchEngine(model: m, vocabulary: vocab, maxStreams: 4, queueLimit: 4)
        let r = GenerationRequest(prompt: [], choices: 2, seed: 11, options: SamplingOptions(temperature: 1), maxTokens: 20)
        let t = GenerationTicket(r)
        XCTAssertNoThrow(try e.submit(t))
        var texts: [[String]] = []
        Self.drain(e, [t], texts: &texts)
        XCTAssertEqual(texts[0], Self.reference(m, vocabulary: vocab, r))
    }

    // MARK: - Rows joining and leaving

    /// A cancelled request's rows are free after the next iteration; the other request is unaffected.
    func testCancelFreesRowsWithinOneStep() {
        let m = Self.model(Self.config(.lstm, embed: 0, adaptive: false))
        let e = BatchEngine(model: m, vocabulary: Self.vocabulary, maxStreams: 8, queueLimit: 2)
        let keep = GenerationTicket(GenerationRequest(prompt: Self.ids("abc"), choices: 2, seed: 9, options: SamplingOptions(), maxTokens: 80))
        let drop = GenerationTicket(GenerationRequest(prompt: Self.ids("abc"), choices: 3, seed: 10, options: SamplingOptions(), maxTokens: 1000))
        XCTAssertNoThrow(try e.submit(keep)); XCTAssertNoThrow(try e.submit(drop))
        for _ in 0..<10 { e.iterate() }
        XCTAssertEqual(e.active, 5)
        drop.cancel()
        XCTAssertEqual(e.iterate(), 2, "the cancelled rows are not stepped")
        XCTAssertEqual(e.active, 2)
        XCTAssertEqual(drop.progress.finish, [.cancelled, .cancelled, .cancelled])
        XCTAssertTrue(drop.isFinished)
        var texts: [[String]] = []
        Self.drain(e, [keep], texts: &texts)
        XCTAssertEqual(texts[0], Self.reference(m, keep.request))
    }

    /// Requests wait for rows (first come, first served) in a bounded queue; beyond it `submit`
    /// refuses; n larger than the engine and shutting down are refused too.
    func testQueueLimitAndRefusals() {
        let m = Self.model(Self.config(.gru, embed: 0, adaptive: false))
        let e = BatchEngine(model: m, vocabulary: Self.vocabulary, maxStreams: 2, queueLimit: 1)
        let a = GenerationTicket(GenerationRequest(prompt: Self.ids("a"), choices: 2, seed: 1, options: SamplingOptions(), maxTokens: 30))
        XCTAssertNoThrow(try e.submit(a))
        e.iterate()
        XCTAssertEqual(e.active, 2)
        let b = GenerationTicket(GenerationRequest(prompt: Self.ids("b"), seed: 2, options: SamplingOptions(), maxTokens: 10))
        XCTAssertNoThrow(try e.submit(b))
        XCTAssertEqual(e.queued, 1)
        let c = GenerationTicket(GenerationRequest(prompt: Self.ids("c"), seed: 3, options: SamplingOptions(), maxTokens: 10))
        XCTAssertThrowsError(try e.submit(c)) { XCTAssertEqual($0 as? BatchEngine.Refusal, .queueFull(limit: 1)) }
        let big = GenerationTicket(GenerationRequest(prompt: [], choices: 3, seed: 3, options: SamplingOptions(), maxTokens: 10))
        XCTAssertThrowsError(try e.submit(big)) { XCTAssertEqual($0 as? BatchEngine.Refusal, .tooManyChoices(requested: 3, max: 2)) }
        let bad = GenerationTicket(GenerationRequest(prompt: [99], seed: 3, options: SamplingOptions(), maxTokens: 10))
        XCTAssertThrowsError(try e.submit(bad)) { XCTAssertEqual($0 as? BatchEngine.Refusal, .tokenOutOfRange(99)) }
        // b waits until a's rows are free, then gets the sampler's text
        var texts: [[String]] = []
        Self.drain(e, [a, b], texts: &texts)
        XCTAssertEqual(texts[1], Self.reference(m, b.request))
        XCTAssertEqual(texts[0], Self.reference(m, a.request))
        // shutting down: waiting requests end at once, new ones are refused
        let d = GenerationTicket(GenerationRequest(prompt: Self.ids("d"), choices: 2, seed: 4, options: SamplingOptions(), maxTokens: 500))
        let w = GenerationTicket(GenerationRequest(prompt: Self.ids("w"), seed: 5, options: SamplingOptions(), maxTokens: 5))
        XCTAssertNoThrow(try e.submit(d)); e.iterate(); XCTAssertNoThrow(try e.submit(w))
        e.shutdown(grace: 0)
        XCTAssertEqual(w.progress.finish, [.shutdown])
        XCTAssertThrowsError(try e.submit(GenerationTicket(w.request))) { XCTAssertEqual($0 as? BatchEngine.Refusal, .shuttingDown) }
        e.iterate()
        XCTAssertEqual(d.progress.finish, [.shutdown, .shutdown], "grace 0 cuts the running rows at the next iteration")
        XCTAssertEqual(e.active, 0)
    }

    /// A reader that takes nothing overflows its bounded buffer; the request is dropped and its row freed.
    func testSlowReaderOverflowDropsTheRequest() {
        let m = Self.model(Self.config(.lstm, embed: 8, adaptive: false))
        let e = BatchEngine(model: m, vocabulary: Self.vocabulary, maxStreams: 4, queueLimit: 2)
        let slow = GenerationTicket(GenerationRequest(prompt: [], seed: 1, options: SamplingOptions(temperature: 1), maxTokens: 4000), bufferLimit: 64)
        let fast = GenerationTicket(GenerationRequest(prompt: [], seed: 2, options: SamplingOptions(temperature: 1), maxTokens: 300))
        XCTAssertNoThrow(try e.submit(slow)); XCTAssertNoThrow(try e.submit(fast))
        var texts: [[String]] = []
        for _ in 0..<400 {
            if let u = fast.take() { texts = [[(texts.first?.first ?? "") + String(decoding: u.text[0], as: UTF8.self)]] }
            if slow.isFinished && fast.isFinished { break }
            e.iterate()
        }
        if let u = fast.take() { texts = [[(texts.first?.first ?? "") + String(decoding: u.text[0], as: UTF8.self)]] }
        XCTAssertEqual(slow.progress.finish, [.overflow])
        XCTAssertLessThan(slow.progress.completionTokens[0], 70, "dropped once 64 bytes were waiting")
        XCTAssertEqual(texts.first, Self.reference(m, fast.request))
        XCTAssertEqual(e.active, 0)
    }

    /// Steady-state iterations (rows drawing and feeding, stop filters holding bytes, no join or
    /// leave) make no heap allocation. Counted with scripts/malloc-count.c preloaded (.ci/run does);
    /// skipped otherwise.
    func testStepLoopAllocatesNothing() throws {
        // this thread's allocations only (XCTest and Dispatch threads allocate on their own)
        typealias Fn = @convention(c) () -> UInt
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "charrnn_malloc_count_thread") else {
            throw XCTSkip("run with LD_PRELOAD of scripts/malloc-count.c to count allocations")
        }
        let count = unsafeBitCast(sym, to: Fn.self)
        let m = Self.model(Self.config(.lstm, embed: 8, adaptive: true))
        let e = BatchEngine(model: m, vocabulary: Self.vocabulary, maxStreams: 12, queueLimit: 8)
        let tickets = (0..<4).map { i in
            GenerationTicket(GenerationRequest(prompt: Self.ids("the "), choices: 2, seed: UInt64(i), options: SamplingOptions(temperature: 1, topK: i, topP: 0.95),
                                               maxTokens: 1000, stop: i % 2 == 0 ? ["ab#", "e e#"] : []))   // prefixes match (held), never complete
        }
        for t in tickets { try e.submit(t) }
        // a consumer taking each ticket's text between steps (as a server's writer does) allocates nothing either
        var updates = tickets.map { $0.makeUpdate() }
        var taken = 0
        func round() {
            e.iterate()
            for k in tickets.indices where tickets[k].take(into: &updates[k]) { taken += updates[k].text[0].count + updates[k].text[1].count }
        }
        for _ in 0..<20 { round() }
        XCTAssertEqual(e.active, 8)
        let start = count()
        for _ in 0..<200 { round() }
        let allocations = count() - start
        XCTAssertGreaterThan(taken, 0, "text was taken")
        XCTAssertEqual(e.active, 8)
        XCTAssertEqual(allocations, 0, "heap allocations in 200 steady-state iterations")
        let probe = count()
        let a = [UInt8](repeating: 1, count: 1000 + e.active)
        XCTAssertGreaterThan(count() - probe, 0, "the counter counts (\(a.count) bytes allocated)")
    }

    /// `take(into:)` hands over exactly the released text (concatenated, the sampler's), each
    /// choice's finish and count, and reports when nothing is new.
    func testTakeIntoGivesTheTextOnce() {
        let m = Self.model(Self.config(.gru, embed: 0, adaptive: false))
        let e = BatchEngine(model: m, vocabulary: Self.vocabulary, maxStreams: 4, queueLimit: 2)
        let t = GenerationTicket(GenerationRequest(prompt: Self.ids("ab"), choices: 2, seed: 3, options: SamplingOptions(), maxTokens: 50, stop: ["e a#"]))   // held, never complete
        XCTAssertNoThrow(try e.submit(t))
        var u = t.makeUpdate(), texts = ["", ""], updates = 0
        for _ in 0..<200 {
            e.iterate()
            if t.take(into: &u) {
                updates += 1
                for i in 0..<2 { texts[i] += String(decoding: u.text[i], as: UTF8.self) }
                if u.isDone { break }
            }
            XCTAssertFalse(t.take(into: &u), "a second take without a step has nothing")
            XCTAssertEqual(u.text, [[], []], "an empty take leaves no text behind")
        }
        XCTAssertTrue(u.isDone)
        XCTAssertGreaterThanOrEqual(updates, 40, "about one update per step")
        XCTAssertEqual(texts, Self.reference(m, t.request))
        XCTAssertEqual(u.completionTokens, t.progress.completionTokens)
        XCTAssertEqual(u.finish, t.progress.finish)
    }

    // MARK: - Threaded

    /// The engine thread serves concurrent submitters; each gets the sampler's text; jobs run between
    /// steps; shutdown lets running requests finish within the grace time.
    func testThreadedEngineMatchesSampler() async {
        let m = Self.model(Self.config(.lstm, embed: 0, adaptive: true))
        let e = BatchEngine(model: m, vocabulary: Self.vocabulary, maxStreams: 6, queueLimit: 16)
        e.start()
        let requests = (0..<10).map { i in
            GenerationRequest(prompt: Self.ids(["", "a", "the ", "cd"][i % 4]), choices: 1 + i % 3, seed: UInt64(100 + i),
                              options: SamplingOptions(temperature: [0.5, 1, 0][i % 3], topK: i % 2 == 0 ? 0 : 6), maxTokens: 20 + 7 * i,
                              stop: i % 4 == 3 ? ["a"] : [])
        }
        let results = await withTaskGroup(of: (Int, [String]).self) { g in
            for (i, r) in requests.enumerated() {
                g.addTask {
                    let t = GenerationTicket(r)
                    do { try e.submit(t) } catch { return (i, ["refused: \(error)"]) }
                    let u = await t.collect()
                    return (i, u.text.map { String(decoding: $0, as: UTF8.self) })
                }
            }
            var out = [[String]](repeating: [], count: requests.count)
            for await (i, s) in g { out[i] = s }
            return out
        }
        let viaJob = await e.run { 6 * 7 }
        XCTAssertEqual(viaJob, 42)
        e.shutdown(grace: 1)
        e.waitUntilStopped()
        for (i, r) in requests.enumerated() { XCTAssertEqual(results[i], Self.reference(m, r), "request \(i)") }
        XCTAssertGreaterThan(e.steps, 0)
    }

    // MARK: - Stop strings

    func testStopFilter() {
        func run(_ stops: [String], _ pieces: [String]) -> (String, Bool, Int) {
            var f = StopFilter(stops: stops), out: [UInt8] = [], hit = false, maxHeld = 0
            for p in pieces {
                let b = Array(p.utf8)
                if b.withUnsafeBufferPointer({ f.feed($0) { out += $0 } }) { hit = true; break }
                maxHeld = max(maxHeld, f.heldCount)
            }
            if !hit { f.flush { out += $0 } }
            return (String(decoding: out, as: UTF8.self), hit, maxHeld)
        }
        XCTAssertEqual(run([], ["a", "b"]).0, "ab")
        XCTAssertEqual(run(["\n\n"], ["a", "\n", "b", "\n", "\n", "c"]).0, "a\nb")
        XCTAssertTrue(run(["\n\n"], ["a", "\n", "\n"]).1)
        XCTAssertEqual(run(["abc"], ["x", "a", "b", "x", "a", "b"]).0, "xabxab", "a partial match at the end is released by flush")
        XCTAssertEqual(run(["abc", "b"], ["a", "b", "c"]).0, "a", "ends as soon as any stop string is complete")
        XCTAssertEqual(run(["bc", "abcd"], ["a", "b", "c", "d"]).0, "a")
        XCTAssertEqual(run(["é"], ["c", "a", "f", "é", "!"]).0, "caf")
        XCTAssertEqual(run(["aa"], ["a", "a", "a"]).0, "")
        XCTAssertEqual(run(["END"], ["E", "N", "x", "E", "N", "D"]).0, "ENx")
        XCTAssertLessThanOrEqual(run(["abcdef"], Array(repeating: "a", count: 50).map { $0 }).2, 5, "held bytes are bounded by the stop length")
    }
}

extension GenerationTicket {
    /// Every choice ended.
    var isFinished: Bool { progress.isDone }
}
