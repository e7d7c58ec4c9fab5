// charrnn export — a checkpoint as a standard ONNX model, or as one self-contained HTML page that
// runs the model offline in a browser. The library builds the bytes (CharRNN/Export); this command
// resolves the checkpoint, picks the format and writes the file atomically.

import ArgumentParser
import CharRNN
import Foundation

/// The export formats.
enum ExportFormat: String, CaseIterable, ExpressibleByArgument {
    case onnx, html
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export a checkpoint as an ONNX model or as a single HTML page that runs it offline.",
        discussion: """
        onnx: a standard ONNX model (opset \(ONNXExport.opset)) using ONNX's LSTM/GRU/RNN operators: inputs tokens \
        (int64 [batch, seq]), h (and c for LSTM) [layers, batch, hidden]; outputs log_probs [batch, seq, vocab], \
        h_out (and c_out). The vocabulary and tokenizer are JSON in metadata_props["charrnn"]. \
        html: one file with the weights, the vocabulary and a plain-JavaScript implementation of the \
        network; open it from disk, nothing is fetched. The file is written atomically; an existing \
        file is replaced only with --force.
        """)

    @Argument(help: ArgumentHelp("Run folder or .safetensors file (a folder means its \(RunFolder.bestName)).", valueName: "RUN_DIR_OR_FILE"))
    var checkpoint: String
    @Option(help: "Output format: onnx or html (default: from the -o file's extension, .onnx or .html).")
    var format: ExportFormat?
    @Option(name: .shortAndLong, help: ArgumentHelp("File to write.", valueName: "FILE"))
    var output: String
    @Option(help: "html only: precision of the embedded weights, fp32 or bf16 (half the size; log-probabilities move by about 1e-3).")
    var weights: WeightPrecision = .fp32
    @Flag(help: "Replace the output file if it exists.")
    var force = false

    /// --format, else the one the output's extension names.
    var resolvedFormat: ExportFormat? {
        if let format { return format }
        switch (output as NSString).pathExtension.lowercased() {
        case "onnx": return .onnx
        case "html", "htm": return .html
        default: return nil
        }
    }

    func validate() throws {
        if output.isEmpty { throw ValidationError("-o must name a file") }
        guard let f = resolvedFormat else { throw ValidationError("give --format onnx or --format html (or an -o file ending in .onnx or .html)") }
        if f == .onnx && weights != .fp32 { throw ValidationError("--weights applies to --format html; an ONNX export holds float32 weights") }
    }

    func run() throws { try reportingErrors(export) }

    func export() throws {
        let path = try RunFolder.resolve(checkpoint)
        let loaded = try Checkpoint.load(path: path)
        let source = try ExportSource(checkpoint: loaded)
        let bytes: [UInt8]
        guard let format = resolvedFormat else { throw ValidationError("no --format") }   // validate() checked it
        do {
            switch format {
            case .onnx: bytes = try ONNXExport.model(source, producerVersion: charrnnVersion).serialize()
            case .html: bytes = Array(HTMLExport.page(source, weights: weights, version: charrnnVersion).utf8)
            }
        } catch let e as ExportError where e.path.isEmpty {
            throw ExportError(path: output, message: e.message)
        }
        try ExportFile.write(bytes, to: output, overwrite: force)
        printError("wrote \(output) (\(format.rawValue), \(bytes.count) bytes) from \(path)")
    }
}
