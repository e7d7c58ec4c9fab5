// Train/RunEstimate.swift — the estimated wall time of a training session, measured on its first
// iterations: the time per iteration (validation excluded) times the iterations the session runs,
// plus the validations it will run times the time one took, once one has been seen.
//
// Contract: fed `Trainer.run`'s events in order (`iteration`, `validation`), it answers once, after
// `minIterations` iterations or `minSeconds` of this session (whichever comes first; the session's
// first iteration, which pays for page faults and first-touch allocation, is not measured), and never
// at or after the last iteration. `iteration` and `validation` do arithmetic only: no allocation, so
// they may be called from the training loop's report closure at every step. The numbers only: the
// command-line tool words them (charrnn/Progress.swift).

/// Measures a session's first iterations and estimates how long the whole session takes.
package struct RunEstimate: Sendable {
    /// Iterations measured (after the first) before the estimate is given, unless `minSeconds` pass first.
    package static let minIterations = 20
    /// Seconds measured before the estimate is given, unless `minIterations` come first.
    package static let minSeconds = 10.0

    /// The iteration the session starts from (0 for a fresh run) and the run's last one.
    let start: Int, total: Int
    /// Validations from `start` (exclusive) to `total` (inclusive), as `Trainer.run` schedules them.
    let validations: Int
    /// The first iteration event of the session, where the measurement starts.
    var referenceIteration = -1
    var referenceElapsed = 0.0
    /// Validation time seen since the reference (not counted in the time per iteration).
    var validationSeconds = 0.0, validationCount = 0
    /// The estimate was given.
    package private(set) var given = false

    /// - Parameters:
    ///   - startIteration: the run's iteration when this session starts.
    ///   - totalIterations: the run's last iteration.
    ///   - evalEvery, batchesPerEpoch: the run validates at every multiple of either and at its last iteration.
    package init(startIteration: Int, totalIterations: Int, evalEvery: Int, batchesPerEpoch: Int) {
        start = startIteration; total = totalIterations
        validations = Self.validations(after: startIteration, through: totalIterations, every: max(1, evalEvery), epoch: max(1, batchesPerEpoch))
    }

    /// The number of iterations i in (a, b] with i % e == 0, i % n == 0, or i == b.
    static func validations(after a: Int, through b: Int, every e: Int, epoch n: Int) -> Int {
        guard b > a else { return 0 }
        let g = gcd(e, n)
        let (l, overflow) = (e / g).multipliedReportingOverflow(by: n)
        let both = overflow ? 0 : b / l - a / l
        return (b / e - a / e) + (b / n - a / n) - both + (b % e != 0 && b % n != 0 ? 1 : 0)
    }

    static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

    /// An iteration event (`TrainEvent.iteration`): the estimate, the one time it is due, else nil.
    package mutating func iteration(_ it: Int, elapsed: Double) -> Figures? {
        guard !given else { return nil }
        guard referenceIteration >= 0 else {
            referenceIteration = it; referenceElapsed = elapsed; validationSeconds = 0; validationCount = 0
            return nil
        }
        let n = it - referenceIteration, seconds = elapsed - referenceElapsed
        guard n >= 1, it < total, n >= Self.minIterations || seconds >= Self.minSeconds else { return nil }
        given = true
        let perIteration = max(0, seconds - validationSeconds) / Double(n)
        return Figures(iterations: total - start, of: total, secondsPerIteration: perIteration, validations: validations,
                        secondsPerValidation: validationCount > 0 ? validationSeconds / Double(validationCount) : nil)
    }

    /// A validation event (`TrainEvent.validation`) and the seconds it took.
    package mutating func validation(seconds: Double) {
        guard !given, referenceIteration >= 0 else { return }
        validationSeconds += seconds; validationCount += 1
    }

    /// How long a training session is expected to take, and from what.
    package struct Figures: Sendable, Equatable {
        /// Iterations the session runs (the whole run when it starts from 0) of the run's `total`.
        package var iterations: Int, total: Int
        package var secondsPerIteration: Double
        /// Validations the session runs, and the time one took (nil: none measured yet).
        package var validations: Int
        package var secondsPerValidation: Double?

        package init(iterations: Int, of total: Int, secondsPerIteration: Double, validations: Int, secondsPerValidation: Double?) {
            self.iterations = iterations; self.total = total; self.secondsPerIteration = secondsPerIteration
            self.validations = validations; self.secondsPerValidation = secondsPerValidation
        }

        /// Seconds for the session: iterations, and validations when one has been timed.
        package var seconds: Double { Double(iterations) * secondsPerIteration + Double(validations) * (secondsPerValidation ?? 0) }
    }
}
