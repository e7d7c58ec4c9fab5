// charrnn/TrainNotes.swift — what `train` tells the user about a run beyond its progress lines: that a
// resumed run had already reached its stopping point, and how to move that point. Pure text; the
// command decides when to print it.

import CharRNN
import Foundation

extension TrainCommand {
    /// The hint after "done" when a resume found nothing left to train: the run stopped at `iteration`
    /// because of its --max-iters (or its --epochs, `epochs` of them); a larger one continues it.
    static func finishedRunHint(runDir: String, iteration: Int, maxIters: Int?, epochs: Double) -> String {
        let stop = maxIters.map { "--max-iters \($0)" } ?? "--epochs \(Bounds.show(epochs))"
        let more = maxIters != nil ? "--max-iters \(iteration * 2)" : "--epochs \(Bounds.show(epochs * 2))"
        return "the run had already reached its stopping point (\(stop)) at iteration \(iteration): nothing was trained; "
            + "to train further, raise --max-iters or --epochs, e.g. charrnn train --resume \(shellQuoted(runDir)) \(more)"
    }
}
