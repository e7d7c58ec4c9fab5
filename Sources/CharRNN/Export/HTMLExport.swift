// Export/HTMLExport.swift — a checkpoint as one self-contained HTML page that runs the model in a
// browser, offline: the weights (base64, float32 or bfloat16), the vocabulary and tokenizer facts
// (ExportMetadata), PageStyle's stylesheet and a plain-JavaScript inference step (PageScript.js).
// Nothing is fetched: a Content-Security-Policy of default-src 'none' forbids every request, and
// there are no external scripts, fonts or images; the file works opened from disk.
//
// Embedded weights: every parameter of the checkpoint under its state_dict name, concatenated in
// NetworkSpec order into one little-endian buffer; the manifest lists (name, shape, offset in
// elements). --weights bf16 stores each float32 rounded to the nearest bfloat16 (ties to even; the
// top 16 bits): half the bytes; the page widens them back to float32, so the arithmetic is the same
// and only the weights' rounding (relative error ≤ 2⁻⁹) moves the log-probabilities.

import Foundation

/// Builds the exported page.
package enum HTMLExport {
    /// The float32 value's nearest bfloat16 (round to nearest, ties to even), as its 16 bits.
    /// Finite inputs only (a checkpoint's values are checked finite on restore).
    package static func bfloat16Bits(_ f: Float) -> UInt16 {
        let b = f.bitPattern
        let rounded = b &+ 0x7FFF &+ ((b >> 16) & 1)
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }

    /// The weights buffer: every parameter in spec order, float32 or bfloat16, little-endian.
    static func weightBytes(_ source: ExportSource, weights: WeightPrecision) -> (bytes: [UInt8], manifest: String) {
        var bytes: [UInt8] = []
        var entries: [String] = []
        var offset = 0
        let width = weights == .bf16 ? 2 : 4
        bytes.reserveCapacity(source.spec.parameterCount * width)
        for t in source.spec.parameters {
            let values = source.tensor(t.name)
            for v in values {
                if weights == .bf16 {
                    let b = bfloat16Bits(v)
                    bytes.append(UInt8(b & 0xff)); bytes.append(UInt8(b >> 8))
                } else {
                    let b = v.bitPattern
                    bytes.append(UInt8(b & 0xff)); bytes.append(UInt8((b >> 8) & 0xff))
                    bytes.append(UInt8((b >> 16) & 0xff)); bytes.append(UInt8(b >> 24))
                }
            }
            entries.append("{\"name\":\"\(t.name)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"offset\":\(offset)}")
            offset += values.count
        }
        return (bytes, "[" + entries.joined(separator: ",") + "]")
    }

    /// The adaptive softmax's layout for the page (nil for a full softmax).
    static func adaptiveJSON(_ c: ModelConfig) -> String {
        guard let a = c.adaptive else { return "null" }
        let widths = (0..<a.clusters).map { String(a.tailWidth($0, hidden: c.hidden)) }
        return "{\"bounds\":[\(a.bounds.map(String.init).joined(separator: ","))],\"widths\":[\(widths.joined(separator: ","))],"
            + "\"order\":[\(a.order.map(String.init).joined(separator: ","))]}"
    }

    /// Escapes text for HTML element content.
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    /// The page.
    /// - Parameters:
    ///   - source: the restored checkpoint.
    ///   - weights: precision of the embedded weights (.fp32 or .bf16).
    ///   - version: charrnn's version, shown on the page.
    package static func page(_ source: ExportSource, weights: WeightPrecision, version: String) -> String {
        let (bytes, manifest) = weightBytes(source, weights: weights)
        let c = source.config
        let model = "{\"meta\":\(source.metadata.json(asciiOnly: true)),\"dtype\":\"\(weights == .bf16 ? "bf16" : "fp32")\","
            + "\"tensors\":\(manifest),\"adaptive\":\(adaptiveJSON(c)),\"version\":\"\(version)\"}"
        let title = "charrnn · " + escape(source.meta.corpus.name)
        var html = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'">
        <title>\(title)</title>
        <style>
        \(PageStyle.css)  .controls.second { margin-top: 10px; }
          input[type=text] { width: 170px; }
        </style>
        </head>
        <body>
        <main>
          <h1>\(title)</h1>
          <p id="model">loading model…</p>
          <textarea id="prompt" placeholder="Type the start of the text (or leave empty)…" aria-label="prompt"></textarea>
          <div class="controls">
            <label>temperature <input id="temperature" type="range" min="0" max="2" step="0.05" value="0.8"><output id="temperatureValue">0.80</output></label>
            <label>top-p <input id="topP" type="range" min="0.05" max="1" step="0.05" value="1"><output id="topPValue">1.00</output></label>
            <label>top-k <input id="topK" type="number" min="0" value="0" title="0 = all characters"></label>
            <label>length <input id="length" type="number" min="1" max="100000" value="500"></label>
          </div>
          <div class="controls second">
            <label>seed <input id="seed" type="text" placeholder="random" inputmode="numeric" title="the same seed gives the same text"></label>
            <button id="start" disabled>Generate</button>
            <button id="stop" disabled>Stop</button>
            <span id="status"></span>
          </div>
          <div id="output" aria-live="polite"></div>
        </main>
        <script type="application/json" id="charrnn-model">\(model)</script>
        <script type="text/plain" id="charrnn-weights">
        """
        html += Data(bytes).base64EncodedString()
        html += "</script>\n<script>\n" + PageScript.source + "</script>\n</body>\n</html>\n"
        return html
    }
}
