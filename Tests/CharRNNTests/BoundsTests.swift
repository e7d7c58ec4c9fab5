// BoundsTests.swift — the bounds table: synthetic vocabulary characters skip the surrogates.

import Foundation
import XCTest
@testable import CharRNN

final class BoundsTests: XCTestCase {
    func testSyntheticCharactersSkipTheSurrogates() {
        let chars = (0..<Bounds.maxSyntheticVocab).lazy.map(Bounds.syntheticCharacter)
        XCTAssertEqual(chars[35327], "\u{D7FF}")
        XCTAssertEqual(chars[35328], "\u{10000}")
        XCTAssertEqual(chars[Bounds.maxSyntheticVocab - 1], "\u{10FFFF}")
        XCTAssertEqual(Set((35000..<36000).map(Bounds.syntheticCharacter)).count, 1000)
    }
}
