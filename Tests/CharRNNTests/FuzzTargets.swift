// FuzzTargets.swift — the fuzz entry points, shared by the libFuzzer harness (Fuzz/Harness.swift,
// built by scripts/fuzz.sh) and by FuzzRegressionTests, which replays Fuzz/regressions/<target>/.
//
// Each target takes arbitrary bytes and drives one reader the way the tool does. A crash (trap,
// precondition, ASan report) is a finding; so is a broken invariant, reported by throwing
// `FuzzViolation` (the harness turns it into a crash, the tests into a failure). Invariants checked:
// - every error is one line (what the CLI prints after "error: ");
// - corpus: success ⇔ the text is valid UTF-8 (Swift's own validator as the oracle) and not empty;
//   the error offset is the first invalid byte; the tokens, joined, give back the text (no NFC); ids
//   are in range; NFC by the quick-check path equals NFC by utf8proc alone (in small chunks);
//   `Vocabulary.encode` of the text gives the corpus' ids;
// - safetensors: a file that parses re-serialises to a file that parses to the same tensors and
//   metadata; `Checkpoint.load(bytes:)` either throws or gives a checkpoint the generation loop can run;
// - csv: the loss-log reader, the chart builder and both renderers never crash; LossLog's resume
//   cut is a prefix of its input (a legacy log's, once the event column it adds is taken out);
// - prime: `Vocabulary.encode` + the generation loop fed that prime on a tiny model: ids in range,
//   unknown tokens are distinct and really unknown, known tokens joined give back the text; the
//   sampled text is valid UTF-8.
// - request: `charrnn serve`'s body decoders (CompletionRequest, ScoreRequest): an input is accepted
//   only if it is valid UTF-8, nested at most 64 deep (counted here by an independent scan) and
//   every field is within the limits (logit_bias keys resolved against the engine's vocabulary); a
//   refusal is a 400 APIError with a one-line message that names no Swift decoding internals and a
//   well-formed error object; an accepted completion runs through
//   the BatchEngine (a few tokens): ids in range, text valid UTF-8 without its stop strings, and
//   its hand-written streamed event equal to the encoded Codable chunk.
//
// The first input byte selects options (unit, normalization, chart flags, sampling controls); the
// rest is the payload.

import Foundation
#if !CHARRNN_FUZZ
@testable import CharRNN
import CharRNNAPI
#endif

struct FuzzViolation: Error, CustomStringConvertible {
    let target: String
    let message: String
    var description: String { "fuzz target \(target): invariant violated: \(message)" }
}

enum FuzzTarget: String, CaseIterable {
    case corpus, safetensors, csv, prime, request

    /// Runs the target on one input. Throws `FuzzViolation` when an invariant breaks.
    func run(_ data: [UInt8]) throws {
        switch self {
        case .corpus: try FuzzTarget.corpus(data)
        case .safetensors: try FuzzTarget.safetensors(data)
        case .csv: try FuzzTarget.csv(data)
        case .prime: try FuzzTarget.prime(data)
        case .request: try FuzzTarget.request(data)
        }
    }

    // MARK: - Helpers

    static func check(_ ok: Bool, _ target: FuzzTarget, _ message: @autoclosure () -> String) throws {
        if !ok { throw FuzzViolation(target: target.rawValue, message: message()) }
    }

    static func oneLine(_ error: Any, _ target: FuzzTarget) throws {
        let d = "\(error)"
        try check(!d.isEmpty && !d.contains("\n") && !d.contains("\r"), target, "error message is not one line: \(d.debugDescription)")
    }

    static func split(_ data: [UInt8]) -> (mode: UInt8, payload: [UInt8]) {
        guard let m = data.first else { return (0, []) }
        return (m, Array(data.dropFirst()))
    }

    // MARK: - corpus

    /// Collects the decoder's tokens as byte strings (for comparing two decoding paths).
    struct CollectingSink: TokenSink {
        var tokens: [[UInt8]] = []
        mutating func willScan(byteCount: Int) {}
        mutating func scalar(_ value: UInt32, bytes: UnsafePointer<UInt8>, length: Int) {
            tokens.append(Array(UnsafeBufferPointer(start: bytes, count: length)))
        }
        mutating func cluster(bytes: UnsafePointer<UInt8>, length: Int) {
            tokens.append(Array(UnsafeBufferPointer(start: bytes, count: length)))
        }
    }

    static func corpus(_ data: [UInt8]) throws {
        let (mode, text) = split(data)
        let unit: TokenUnit = mode & 1 == 0 ? .scalar : .grapheme
        let normalize: Normalization = mode & 2 == 0 ? .none : .nfc
        let t = FuzzTarget.corpus
        let bom = text.count >= 3 && text[0] == 0xEF && text[1] == 0xBB && text[2] == 0xBF ? 3 : 0
        let body = Array(text[bom...])
        let valid = String(validating: text, as: UTF8.self) != nil
        do {
            let c = try Corpus(bytes: text, name: "fuzz.txt", unit: unit, normalize: normalize)
            try check(valid, t, "accepted invalid UTF-8")
            try check(c.count >= 1 && (normalize == .nfc || c.count <= body.count), t, "token count \(c.count) for \(body.count) bytes")
            let V = c.vocabulary.count
            try check(V >= 1 && c.vocabulary.isSortedInCodePointOrder, t, "vocabulary not sorted/distinct")
            var ids = [Int32](repeating: 0, count: c.count)
            ids.withUnsafeMutableBufferPointer { c.copyTokens(from: 0, count: c.count, into: $0.baseAddress!) }
            try check(ids.allSatisfy { $0 >= 0 && Int($0) < V }, t, "token id out of range")
            let tokenBytes = c.vocabulary.tokens.map { Array($0.utf8) }
            if normalize == .none {
                var joined: [UInt8] = []
                joined.reserveCapacity(body.count)
                for id in ids { joined += tokenBytes[Int(id)] }
                try check(joined == body, t, "tokens joined differ from the text")
                if unit == .scalar {
                    try check(c.count == String(decoding: body, as: UTF8.self).unicodeScalars.count, t, "scalar count differs")
                }
            } else {
                // NFC: the quick-check path must equal sending everything through utf8proc, in tiny chunks.
                var a = CollectingSink(), b = CollectingSink()
                try text.withUnsafeBufferPointer { buf in
                    do {
                        try UTF8Decoder.tokenize(buf, unit: unit, normalize: .nfc, into: &a, quickCheck: true)
                        try UTF8Decoder.tokenize(buf, unit: unit, normalize: .nfc, into: &b, quickCheck: false, chunkBytes: 7)
                    } catch {
                        throw FuzzViolation(target: t.rawValue, message: "tokenize failed after Corpus succeeded: \(error)")
                    }
                }
                try check(a.tokens == b.tokens, t, "NFC quick-check path differs from utf8proc-only path")
                try check(a.tokens.map { Int(c.vocabulary.id(of: String(decoding: $0, as: UTF8.self)) ?? -1) } == ids.map { Int($0) },
                          t, "vocabulary lookup differs from corpus ids")
            }
            // The prime/sample path tokenizes with Vocabulary.encode: same ids, nothing unknown.
            let (encoded, unknown) = c.vocabulary.encode(String(decoding: text, as: UTF8.self), normalize: normalize)
            try check(unknown.isEmpty && encoded == ids, t, "Vocabulary.encode differs from the corpus (\(unknown.count) unknown)")
        } catch let e as TextError {
            try oneLine(e, t)
            switch e {
            case let .invalidUTF8(_, line, column, offset, bytes):
                try check(!valid, t, "rejected valid UTF-8 at byte \(offset)")
                try check(offset >= bom && offset < text.count, t, "error offset \(offset) outside the text")
                try check(String(validating: text[..<offset], as: UTF8.self) != nil, t, "bytes before the error offset \(offset) are not valid")
                try check(line >= 1 && column >= 1 && !bytes.isEmpty && bytes[0] == text[offset], t, "bad location/bytes")
            case .empty:
                try check(body.isEmpty, t, "non-empty text reported empty")
            case .normalizationFailed:
                throw FuzzViolation(target: t.rawValue, message: "normalization failed: \(e)")
            default:
                throw FuzzViolation(target: t.rawValue, message: "unexpected error \(e)")
            }
        }
    }

    // MARK: - safetensors / checkpoint

    static func safetensors(_ data: [UInt8]) throws {
        let t = FuzzTarget.safetensors
        // The whole input is the file (no mode byte), so real files are valid seeds as they are.
        do {
            let f = try SafeTensorsFile(bytes: data, path: "fuzz.safetensors")
            var w = SafeTensorsWriter()
            w.metadata = f.metadata
            for name in f.names {
                let info = f.tensors[name]!
                let raw = try f.rawBytes(name)
                try check(raw.count == info.byteCount && info.begin <= info.end, t, "tensor \(name) size mismatch")
                if info.dtype == .F32 { try check(try f.floats(name).count == info.count, t, "floats count") }
                raw.withUnsafeBytes { w.add(name, dtype: info.dtype, shape: info.shape, bytes: $0) }
            }
            let again = try SafeTensorsFile(bytes: w.serialize(), path: "again")
            try check(again.metadata == f.metadata && again.tensors.count == f.tensors.count, t, "round trip changed the header")
            for name in f.names {
                try check(again.tensors[name]?.shape == f.tensors[name]!.shape && (try again.rawBytes(name)) == (try f.rawBytes(name)),
                          t, "round trip changed tensor \(name)")
            }
        } catch let e as SafeTensorsError {
            try oneLine(e, t)
        }
        // The sample command's path: load, build the generation loop, prime, draw.
        do {
            let loaded = try Checkpoint.load(bytes: data, path: "fuzz.safetensors")
            let loop = try GenerationLoop(checkpoint: loaded, maxStreams: 1)
            let (ids, _) = loaded.meta.vocabulary.encode("ab\n", normalize: loaded.meta.train.normalize)
            loop.join(prompt: ids, seed: 1, stream: 0, options: SamplingOptions(temperature: 0.8, topK: 3, topP: 0.9),
                      maxTokens: 4, stop: StopFilter())
            try drawChecked(loop, t)
        } catch let e as FuzzViolation {
            throw e
        } catch {
            try oneLine(error, t)
        }
    }

    /// Runs the loop's rows to their ends; every row's text must be valid UTF-8.
    static func drawChecked(_ loop: GenerationLoop, _ t: FuzzTarget) throws {
        var text: [UInt8] = []
        try loop.runToEnd { _, bytes in text += bytes }
        try check(String(validating: text, as: UTF8.self) != nil, t, "sampled text is not valid UTF-8")
    }

    // MARK: - csv (plot)

    static func csv(_ data: [UInt8]) throws {
        let t = FuzzTarget.csv
        let (mode, text) = split(data)
        do {
            let rows = try LossHistory.parse(text, file: "loss.csv")
            let chart = Chart.losses([LossHistory(name: "fuzz", rows: rows), LossHistory(name: "b", rows: Array(rows.prefix(3)))],
                                     xAxis: mode & 1 == 0 ? .iteration : .epoch, logY: mode & 2 != 0,
                                     smoothing: [0, 0.6, 0.99, 1][Int(mode >> 2) & 3], raw: mode & 16 != 0)
            _ = TextChart.render(chart, width: 20 + Int(mode >> 5) * 9, height: 6 + Int(mode >> 5) * 3,
                                 charset: mode & 32 == 0 ? .braille : .ascii, color: mode & 64 != 0)
            _ = SVGChart.render(chart)
        } catch let e as LossLogError {
            try oneLine(e, t)
        }
        // loss.csv cut on --resume: the header and complete rows up to an iteration — a prefix (of a log
        // written before the event column: a prefix once the header is the old one again and each kept
        // row loses the empty event field the cut added).
        var cut = Array(LossLog.prefix(of: Data(text), through: Int(mode)))
        if Array(text.prefix(LossLog.legacyHeader.utf8.count + 1)) == Array((LossLog.legacyHeader + "\n").utf8), !cut.isEmpty {
            var lines = cut.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast().map(Array.init)
            try check(lines.first == Array(LossLog.header.utf8) && lines.dropFirst().allSatisfy { $0.last == UInt8(ascii: ",") },
                      t, "LossLog.prefix did not add the event column to a legacy log")
            lines = [Array(LossLog.legacyHeader.utf8)] + lines.dropFirst().map { Array($0.dropLast()) }
            cut = lines.flatMap { $0 + [UInt8(ascii: "\n")] }
        }
        try check(cut == Array(text.prefix(cut.count)), t, "LossLog.prefix is not a prefix of its input")
    }

    // MARK: - prime (sample --prime)

    /// Tiny models (LSTM 1×8, GRU 2×4 with an embedding) whose vocabularies mix ASCII, Latin with
    /// and without combining marks, CJK, an astral emoji, a ZWJ sequence and CR LF.
    final class PrimeModels: @unchecked Sendable {
        let loops: [GenerationLoop]
        init() {
            let text = "To be, or not to be: café cafe\u{301} 床前明月光 🦊 👩‍💻 \r\nline\n\u{1F1EB}\u{1F1F7}"
            var s: [GenerationLoop] = []
            for (k, unit) in [TokenUnit.scalar, .grapheme].enumerated() {
                let corpus = try! Corpus(bytes: Array(text.utf8), name: "prime.txt", unit: unit)
                let cfg = k == 0 ? ModelConfig(cell: .lstm, layers: 1, hidden: 8, vocabSize: corpus.vocabulary.count)
                                 : ModelConfig(cell: .gru, layers: 2, hidden: 4, embed: 3, vocabSize: corpus.vocabulary.count)
                let model = CharRNNModel(config: cfg, maxT: 1, maxB: 1)
                var rng = Xoshiro256(seed: 7)
                model.initialize(rng: &rng)
                s.append(GenerationLoop(model: model, vocabulary: corpus.vocabulary, maxStreams: 1))
            }
            loops = s
        }
    }
    nonisolated(unsafe) static var primeModels: PrimeModels?

    static func prime(_ data: [UInt8]) throws {
        let t = FuzzTarget.prime
        let (mode, payload) = split(data)
        if primeModels == nil { primeModels = PrimeModels() }
        let loop = primeModels!.loops[Int(mode & 1)]
        let normalize: Normalization = mode & 2 == 0 ? .none : .nfc
        let options = SamplingOptions(temperature: [0, 0.8, 1e-4, 50][Int(mode >> 2) & 3],
                                      topK: [0, 1, 2, 1000][Int(mode >> 4) & 3], topP: [1, 0.5, 1e-6, 0.9][Int(mode >> 6) & 3])
        let vocab = loop.vocabulary
        // argv arrives as a Swift String: invalid UTF-8 is repaired with U+FFFD, as here.
        let text = String(decoding: payload, as: UTF8.self)
        let (ids, unknown) = vocab.encode(text, normalize: normalize)
        try check(ids.allSatisfy { $0 >= 0 && Int($0) < vocab.count }, t, "encoded id out of range")
        // Distinct by UTF-8 bytes (as the vocabulary identifies tokens), not by String equality, which
        // treats canonically equivalent clusters ("e" + U+0301 and "é") as equal.
        try check(Set(unknown.map { Array($0.utf8) }).count == unknown.count, t, "unknown tokens are not distinct")
        try check(unknown.allSatisfy { vocab.id(of: $0) == nil }, t, "a reported unknown token is in the vocabulary")
        if unknown.isEmpty && normalize == .none {
            var s = text
            if s.unicodeScalars.first == "\u{FEFF}" { s.unicodeScalars.removeFirst() }
            let joined = ids.map { vocab.tokens[Int($0)] }.joined()
            try check(Array(joined.utf8) == Array(s.utf8), t, "known tokens joined differ from the prime text")
        }
        // the prime fed, then three draws (what `sample --prime` runs)
        loop.join(prompt: ids, seed: 3, stream: 0, options: options, maxTokens: 3, stop: StopFilter())
        try drawChecked(loop, t)
    }

    // MARK: - request (charrnn serve's body decoder)

    final class RequestEngine: @unchecked Sendable {
        let engine: BatchEngine
        init() {
            let vocab = Vocabulary(unit: .scalar, tokens: ["\n", " ", "a", "b", "c", "é", "🦊"])
            let m = CharRNNModel(config: ModelConfig(cell: .gru, layers: 1, hidden: 8, vocabSize: vocab.count), maxT: 1, maxB: 1)
            var rng = Xoshiro256(seed: 1)
            for i in 0..<m.layout.count { m.params.ptr[i] = (rng.nextFloat() * 2 - 1) * 0.5 }
            m.parametersChanged()
            engine = BatchEngine(model: m, vocabulary: vocab, maxStreams: 8, queueLimit: 4)
        }
    }

    nonisolated(unsafe) static var requestEngine: RequestEngine?

    static func request(_ data: [UInt8]) throws {
        let t = FuzzTarget.request
        let limits = RequestLimits(maxTokens: 64, maxPromptBytes: 4096, maxChoices: 4)
        let valid = String(validating: data, as: UTF8.self) != nil
        func refused(_ e: APIError) throws {
            try oneLine(e, t)
            try check(e.status == 400 && !e.message.isEmpty, t, "refusal is not a 400 with a message: \(e)")
            let o = try? JSONSerialization.jsonObject(with: Data(e.json)) as? [String: Any]
            let err = o?["error"] as? [String: Any]
            try check(err?["message"] as? String == e.message && err?["type"] as? String != nil, t, "error object malformed: \(e.json)")
            try check(!e.message.contains("typeMismatch") && !e.message.contains("Dictionary<"), t, "decoder internals in \(e.message)")
        }
        let depth = nestingDepth(data)
        do {
            let r = try CompletionRequest(body: data, limits: limits)
            try check(valid, t, "accepted a body that is not UTF-8")
            try check(depth <= 64, t, "accepted a body nested \(depth) deep")
            try check((0...limits.maxTokens).contains(r.maxTokens) && (1...limits.maxChoices).contains(r.n), t, "max_tokens/n outside the limits")
            try check(r.temperature.isFinite && r.temperature >= 0 && r.topP > 0 && r.topP <= 1 && r.topK >= 0, t, "sampling options out of range")
            try check(r.options.problem == nil, t, "accepted options the sampler rejects: \(r.options.problem ?? "")")
            try check(r.prompt.utf8.count <= limits.maxPromptBytes, t, "prompt over the limit")
            try check(r.stop.count <= limits.maxStops && r.stop.allSatisfy { !$0.isEmpty && $0.utf8.count <= limits.maxStopBytes }, t, "stop strings outside the limits")
            // run it: a few tokens through the engine
            if requestEngine == nil { requestEngine = RequestEngine() }
            let e = requestEngine!.engine
            let ids = e.vocabulary.encode(r.prompt, normalize: .none).ids
            let options = try r.samplingOptions(vocabulary: e.vocabulary, normalize: .none)
            try check(options.problem(vocabulary: e.vocabulary) == nil, t, "accepted a logit_bias the sampler rejects")
            var g = GenerationRequest(prompt: Array(ids.prefix(64)), choices: r.candidates, seed: r.seed ?? 0, options: options,
                                      maxTokens: min(r.maxTokens, 8), stop: r.stop)
            g.logprobs = r.engineLogprobs; g.echo = r.echo
            let ticket = GenerationTicket(g)
            do { try e.submit(ticket) } catch { throw FuzzViolation(target: t.rawValue, message: "engine refused a valid request: \(error)") }
            var text = [[UInt8]](repeating: [], count: r.candidates), entries = [[TokenLogprob]](repeating: [], count: r.candidates)
            for _ in 0..<200 {
                e.iterate()
                if let u = ticket.take() { for i in 0..<r.candidates { text[i] += u.text[i]; if !u.logprobs.isEmpty { entries[i] += u.logprobs[i] } } }
                if ticket.progress.isDone { break }
            }
            // logprobs: the entries' texts join to the returned text (echoed prompt included), offsets count its scalars
            let echoed = r.echo ? Array(ids.prefix(64).map { e.vocabulary.tokens[Int($0)] }.joined().utf8) : []
            for i in 0..<r.candidates where g.logprobs != nil {
                try check(entries[i].map { e.vocabulary.text(of: $0) }.joined().utf8.elementsEqual(text[i]), t, "logprobs tokens do not join to the text")
                var off = 0
                for x in entries[i] { try check(x.offset == off, t, "text_offset"); off += e.vocabulary.text(of: x).unicodeScalars.count }
                try check(Array(text[i].prefix(echoed.count)) == echoed, t, "echo is not the prompt")
            }
            if r.echo { for i in 0..<r.candidates { text[i].removeFirst(echoed.count) } }
            let p = ticket.progress
            try check(p.isDone && e.active == 0, t, "the request did not finish")
            for i in 0..<r.candidates {
                try check(p.finish[i] == .length || p.finish[i] == .stop, t, "finish \(String(describing: p.finish[i]))")
                try check(p.completionTokens[i] <= min(r.maxTokens, 8), t, "drew more than max_tokens")
                guard let s = String(validating: text[i], as: UTF8.self) else { throw FuzzViolation(target: t.rawValue, message: "text not UTF-8") }
                try check(!r.stop.contains { containsBytes(text[i], Array($0.utf8)) }, t, "text contains a stop string")
                // the hand-written streamed event is the Codable chunk, byte for byte (fuzzed strings as model and fingerprint)
                let model = r.model ?? r.prompt, fingerprint = r.stop.first ?? "charrnn"
                var event: [UInt8] = []
                CompletionEvents(id: "cmpl-1", created: 1, model: model, fingerprint: fingerprint).append(index: i, text: text[i], finish: p.finish[i], to: &event)
                let chunk = CompletionChunk(id: "cmpl-1", created: 1, model: model, systemFingerprint: fingerprint,
                                            choices: [CompletionChoice(index: i, text: s, finishReason: p.finish[i]?.rawValue)])
                try check(event == Array("data: ".utf8) + APIJSON.encode(chunk) + Array("\n\n".utf8), t,
                          "streamed event \(String(decoding: event, as: UTF8.self).debugDescription) is not the encoded chunk")
            }
        } catch let e as APIError {
            try refused(e)
        }
        do {
            let s = try ScoreRequest(body: data, limits: limits)
            try check(depth <= 64, t, "accepted a score body nested \(depth) deep")
            try check(valid && !s.input.isEmpty && s.input.count <= limits.maxScoreInputs, t, "score request outside the limits")
        } catch let e as APIError {
            try refused(e)
        }
    }

    /// The deepest nesting of arrays and objects in `b` outside strings (the oracle of the
    /// decoder's depth bound; it ignores everything else about the JSON).
    static func nestingDepth(_ b: [UInt8]) -> Int {
        var depth = 0, deepest = 0, inString = false, escaped = false
        for c in b {
            if inString {
                if escaped { escaped = false } else if c == UInt8(ascii: "\\") { escaped = true } else if c == UInt8(ascii: "\"") { inString = false }
            } else if c == UInt8(ascii: "\"") {
                inString = true
            } else if c == UInt8(ascii: "[") || c == UInt8(ascii: "{") {
                depth += 1; deepest = max(deepest, depth)
            } else if c == UInt8(ascii: "]") || c == UInt8(ascii: "}") {
                depth -= 1
            }
        }
        return deepest
    }

    static func containsBytes(_ h: [UInt8], _ n: [UInt8]) -> Bool {
        guard !n.isEmpty, h.count >= n.count else { return false }
        for i in 0...(h.count - n.count) where h[i..<(i + n.count)].elementsEqual(n) { return true }
        return false
    }
}
