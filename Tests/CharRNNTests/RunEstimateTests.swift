// RunEstimateTests.swift — the training session's time estimate: the validations it counts are the
// ones Trainer.run schedules, it answers once from the measured iterations with validation time
// taken apart, and never at the end of the run.

import XCTest
@testable import CharRNN

final class RunEstimateTests: XCTestCase {
    func testValidationCountIsTrainersSchedule() {
        for (a, b, e, n) in [(0, 100, 10, 30), (0, 97, 10, 30), (40, 97, 7, 13), (0, 1, 5, 5), (5, 5, 3, 4), (0, 60, 20, 1000),
                             (3, 1000, 1000, 1), (0, 12, Int.max / 2, Int.max / 3)] {
            let brute = b > a ? ((a + 1)...b).filter { $0 % e == 0 || $0 % n == 0 || $0 == b }.count : 0
            XCTAssertEqual(RunEstimate.validations(after: a, through: b, every: e, epoch: n), brute, "\((a, b, e, n))")
        }
    }

    func testAnswersOnceAfterTheMeasuredIterationsWithoutValidationTime() throws {
        var r = RunEstimate(startIteration: 0, totalIterations: 1000, evalEvery: 10, batchesPerEpoch: 500)
        // iteration 1 (warm-up, 5 s) is the reference; then 0.1 s per iteration and a 2 s validation at 10 and 20
        XCTAssertNil(r.iteration(1, elapsed: 5))
        var t = 5.0, answer: RunEstimate.Figures? = nil
        for it in 2...100 {
            t += 0.1
            if let f = r.iteration(it, elapsed: t) { XCTAssertNil(answer, "answered twice"); answer = f; XCTAssertEqual(it, 1 + RunEstimate.minIterations) }
            if it % 10 == 0 { r.validation(seconds: 2); t += 2 }
        }
        let f = try XCTUnwrap(answer)
        XCTAssertEqual(f.secondsPerIteration, 0.1, accuracy: 1e-12)
        XCTAssertEqual(f.secondsPerValidation!, 2, accuracy: 1e-12)
        XCTAssertEqual(f.validations, 100)   // 10, 20, …, 1000 (the epoch ends 500 and 1000 among them)
        XCTAssertEqual(f.iterations, 1000); XCTAssertEqual(f.total, 1000)
        XCTAssertEqual(f.seconds, 1000 * 0.1 + 100 * 2, accuracy: 1e-9)
    }

    func testSlowIterationsAnswerAfterTheMinimumTimeAndNeverAtTheEnd() {
        // a resumed session, 15 s per iteration: answered at the second iteration, validation not yet timed
        var r = RunEstimate(startIteration: 400, totalIterations: 1000, evalEvery: 1000, batchesPerEpoch: 10_000)
        XCTAssertNil(r.iteration(401, elapsed: 100))
        let f = r.iteration(402, elapsed: 115)
        XCTAssertEqual(f, RunEstimate.Figures(iterations: 600, of: 1000, secondsPerIteration: 15, validations: 1, secondsPerValidation: nil))
        // a session that reaches its last iteration before the measurement is done says nothing
        var short = RunEstimate(startIteration: 0, totalIterations: 5, evalEvery: 5, batchesPerEpoch: 100)
        for it in 1...5 { XCTAssertNil(short.iteration(it, elapsed: Double(it) * 0.01)) }
        var two = RunEstimate(startIteration: 0, totalIterations: 2, evalEvery: 5, batchesPerEpoch: 100)
        XCTAssertNil(two.iteration(1, elapsed: 100)); XCTAssertNil(two.iteration(2, elapsed: 200))
    }
}
