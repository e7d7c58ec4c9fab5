// GenerationLoopTests.swift — the one generation loop that `charrnn sample` (runToEnd) and
// `charrnn serve` (BatchEngine) drive: K streams give the step-level Sampler's text; stream i is the
// same whatever K is and whatever else runs; a sample equals the completion of the same request;
// and driving it allocates nothing, rows joining and leaving included.

import XCTest
@testable import CharRNN

final class GenerationLoopTests: XCTestCase {
    typealias E = BatchEngineTests

    /// `charrnn sample --num-samples K`'s path: K rows of one prompt and seed, run to their ends.
    static func sample(_ m: CharRNNModel, vocabulary: Vocabulary = E.vocabulary, _ r: GenerationRequest, streams: Range<Int>? = nil) -> [String] {
        let streams = streams ?? 0..<r.choices
        let loop = GenerationLoop(model: m, vocabulary: vocabulary, maxStreams: streams.count)
        for i in streams {
            loop.join(prompt: r.prompt, seed: r.seed, stream: i, options: r.options, maxTokens: r.maxTokens, stop: StopFilter(stops: r.stop))
        }
        var out = [[UInt8]](repeating: [], count: streams.upperBound)
        loop.runToEnd { i, text in
            XCTAssertFalse(text.isEmpty)
            out[i] += Array(text)
        }
        XCTAssertEqual(loop.rows, 0); XCTAssertEqual(loop.running, 0)
        return out[streams].map { String(decoding: $0, as: UTF8.self) }
    }

    /// The loop run as `charrnn sample` gives the Sampler's text (prompt or start token, stream seeds,
    /// the draw, stop strings), sample i whatever K, and the server's completion of the same request.
    func testSampleIsTheSamplerAndTheCompletion() {
        let configs = [E.config(.lstm, embed: 0, adaptive: false), E.config(.gru, embed: 8, adaptive: true), E.config(.rnn, embed: 0, adaptive: true)]
        for (n, c) in configs.enumerated() {
            let m = E.model(c, seed: 60 + UInt64(n))
            var requests = [
                GenerationRequest(prompt: E.ids("the cat"), choices: 4, seed: 21, options: SamplingOptions(temperature: 0.9), maxTokens: 50),
                GenerationRequest(prompt: [], choices: 3, seed: 22, options: SamplingOptions(temperature: 1, topK: 5, topP: 0.9), maxTokens: 40),
                GenerationRequest(prompt: E.ids("é"), choices: 2, seed: 23, options: SamplingOptions(temperature: 0), maxTokens: 30),
                GenerationRequest(prompt: E.ids("a"), choices: 3, seed: 24, options: SamplingOptions(temperature: 1.3), maxTokens: 0),
            ]
            // stop strings that the streams really generate: two characters of stream 1's free text
            let free = Array(Self.sample(m, requests[0])[1])
            requests[0].stop = [String(free[10..<12]), "zz"]
            let engine = BatchEngine(model: m, vocabulary: E.vocabulary, maxStreams: 12, queueLimit: 8)
            let tickets = requests.map { GenerationTicket($0) }
            for t in tickets { XCTAssertNoThrow(try engine.submit(t)) }
            var completions: [[String]] = []
            E.drain(engine, tickets, texts: &completions)
            for (k, r) in requests.enumerated() {
                let s = Self.sample(m, r)
                XCTAssertEqual(s, E.reference(m, r), "\(c.cell) request \(k): the Sampler's text")
                XCTAssertEqual(s, completions[k], "\(c.cell) request \(k): sample = completion")
                if r.choices > 1 { XCTAssertEqual(Self.sample(m, r, streams: 1..<2), [s[1]], "\(c.cell) request \(k): stream 1 alone") }
            }
            XCTAssertFalse(completions[0][1].contains(requests[0].stop[0]))
            XCTAssertLessThanOrEqual(completions[0][1].count, 10, "stream 1 stopped")
            XCTAssertEqual(tickets[0].progress.finish[1], .stop)
        }
    }

    /// A vocabulary without a newline: the first draw is from the uniform distribution, as the Sampler's.
    func testUniformStartWithoutNewline() {
        let toks = Array(E.tokens.dropFirst())
        let vocab = Vocabulary(unit: .scalar, tokens: toks)
        var c = E.config(.gru, embed: 0, adaptive: false); c.vocabSize = toks.count
        let m = E.model(c)
        let r = GenerationRequest(prompt: [], choices: 3, seed: 12, options: SamplingOptions(temperature: 1), maxTokens: 25, stop: ["k"])
        XCTAssertEqual(Self.sample(m, vocabulary: vocab, r), E.reference(m, vocabulary: vocab, r))
    }

    /// Iterations of the loop driven directly — rows drawing, stop filters holding bytes, rows ending
    /// and new rows joining in their slots — make no heap allocation (filters made beforehand, as
    /// their owners do). Counted with scripts/malloc-count.c preloaded; skipped otherwise.
    func testLoopAllocatesNothing() throws {
        typealias Fn = @convention(c) () -> UInt
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "charrnn_malloc_count_thread") else {
            throw XCTSkip("run with LD_PRELOAD of scripts/malloc-count.c to count allocations")
        }
        let count = unsafeBitCast(sym, to: Fn.self)
        let m = E.model(E.config(.lstm, embed: 8, adaptive: true))
        let loop = GenerationLoop(model: m, vocabulary: E.vocabulary, maxStreams: 6)
        let prompt = E.ids("the ")
        var filters = (0..<400).map { i in StopFilter(stops: i % 2 == 0 ? ["ab#", "e e#"] : []) }   // prefixes match (held), never complete
        var joined = 0, bytes = 0
        func fill() {
            while loop.running < loop.maxStreams {
                var f = StopFilter()
                swap(&f, &filters[joined])
                loop.join(prompt: prompt, seed: UInt64(joined), stream: joined % 3, options: SamplingOptions(temperature: 1, topK: joined % 4, topP: 0.95),
                          maxTokens: 5 + joined % 17, stop: f)
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
        XCTAssertEqual(allocations, 0, "heap allocations in 150 iterations")
    }
}
