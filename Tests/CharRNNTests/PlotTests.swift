// PlotTests.swift — loss logs that once broke `charrnn plot`: huge values, non-numeric losses,
// a byte-order mark, millions of rows.

import XCTest
@testable import CharRNN

final class PlotTests: XCTestCase {
    let header = "iteration,epoch,train_loss,val_loss,learning_rate,grad_norm,tokens_per_sec,elapsed_sec\n"

    func testHugeValuesGiveFiniteCoordinates() throws {
        let csv = header + "1,0.1,1e308,,0.002,0.4,1,0.1\n2,0.2,-1e308,1e308,0.002,0.4,1,0.2\n3,0.3,2.5,-1.7e308,0.002,0.4,1,0.3\n"
        let rows = try LossHistory.parse(Array(csv.utf8), file: "x.csv")
        XCTAssertEqual(rows.count, 3)
        for log in [false, true] {
            let chart = Chart.losses([LossHistory(name: "big", rows: rows)], xAxis: .iteration, logY: log, smoothing: 0.5, raw: true)
            XCTAssertTrue(chart.y.lo.isFinite && chart.y.hi.isFinite && (chart.y.hi - chart.y.lo).isFinite)
            for s in chart.series { for p in s.points { XCTAssertTrue(chart.y.fraction(p.y).isFinite, "\(p.y)") } }
            let svg = SVGChart.render(chart)
            XCTAssertFalse(svg.lowercased().contains("nan"), "NaN coordinate in the SVG (log \(log))")
            XCTAssertFalse(svg.contains("inf"), "infinite coordinate in the SVG (log \(log))")
            XCTAssertFalse(TextChart.render(chart, width: 60, height: 16, charset: .ascii, color: false).isEmpty)
        }
    }

    func testNonNumericLossesAndBadLinesAreCounted() throws {
        let csv = header + "1,0.1,4.5,,0.002,0.4,1,0.1\n2,0.2,abc,,0.002,0.4,1,0.2\n3,0.3,4.0,zz,0.002,0.4,1,0.3\ngarbage\n4,0.4,nan,,0.002,0.4,1,0.4\n5,0.5,3.9,,0.002,0.4,1,0.5\n"
        let r = try Array(csv.utf8).withUnsafeBytes { try LossHistory.parseReport($0, file: "x.csv") }
        XCTAssertEqual(r.rows.map(\.iteration), [1, 2, 3, 4, 5])
        XCTAssertEqual(r.rows.compactMap(\.trainLoss), [4.5, 4.0, 3.9])
        XCTAssertEqual(r.nonNumericLosses, 3)     // abc, zz, nan
        XCTAssertEqual(r.unreadableLines, 1)      // garbage
    }

    func testByteOrderMarkBeforeTheHeader() throws {
        let csv = [0xEF, 0xBB, 0xBF] + Array((header + "1,0.1,4.5,,0.002,0.4,1,0.1\n").utf8)
        let rows = try LossHistory.parse(csv, file: "bom.csv")
        XCTAssertEqual(rows, [LossRow(iteration: 1, epoch: 0.1, trainLoss: 4.5, valLoss: nil)])
    }

    func testParsesWhatTheOldReaderParsed() throws {
        // spaces around fields, CRLF line ends, signs, a huge iteration
        let csv = "iteration , train_loss,val_loss\r\n 7 , 3.5 ,\r\n+8,3.25,4\r\n99999999999999999999,1,\r\n-3,2,\r\n"
        let rows = try LossHistory.parse(Array(csv.utf8), file: "y.csv")
        XCTAssertEqual(rows.map(\.iteration), [7, 8, -3])
        XCTAssertEqual(rows.map(\.trainLoss), [3.5, 3.25, 2])
        XCTAssertEqual(rows[1].valLoss, 4)
    }

    /// Many rows: all parsed, the drawing downsampled (speed is measured by hand, not asserted here:
    /// 10 M rows plot in about 7 s in a release build).
    func testManyRowsAreDownsampledForDrawing() throws {
        var bytes = Array(header.utf8)
        for i in 1...200_000 { bytes += Array("\(i),0.5,\(Double(i % 97) / 10),\(i % 50 == 0 ? "3" : ""),0.002,0.4,1,0.1\n".utf8) }
        let rows = try LossHistory.parse(bytes, file: "big.csv")
        XCTAssertEqual(rows.count, 200_000)
        let chart = Chart.losses([LossHistory(name: "big", rows: rows)], xAxis: .iteration, logY: false, smoothing: 0.9, raw: true)
        XCTAssertLessThanOrEqual(chart.series.map(\.points.count).max()!, 3001, "drawing is downsampled")
        XCTAssertEqual(chart.series.first { $0.style == .line }!.points.last!.x, 200_000, "the last point is kept")
    }
}
