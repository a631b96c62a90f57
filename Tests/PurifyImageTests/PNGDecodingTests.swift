import PurifyImage
import Testing

/// Each PNG color type and bit depth, decoded and checked pixel by pixel against the formula
/// that Fixtures/make_fixtures.py wrote it with.
struct PNGDecodingTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let file: String
        let layout: ChannelLayout
        /// Largest accepted difference (16-bit files are scaled to 8 bits).
        let tolerance: Int
        let expected: @Sendable (_ x: Int, _ y: Int, _ channel: Int) -> Int

        var testDescription: String { file }
    }

    static func scaled16(_ value: Int) -> Int { (value * 255 + 32767) / 65535 }

    static let cases: [Case] = [
        Case(file: "gray1.png", layout: .gray, tolerance: 0) { x, y, _ in (x + y) % 2 * 255 },
        Case(file: "gray4.png", layout: .gray, tolerance: 0) { x, y, _ in (x + 2 * y) % 16 * 17 },
        Case(file: "gray8.png", layout: .gray, tolerance: 0) { x, y, _ in
            Int(Fixtures.sample8(x, y, 0))
        },
        Case(file: "gray16.png", layout: .gray, tolerance: 1) { x, y, _ in
            scaled16(Fixtures.sample16(x, y, 0))
        },
        Case(file: "gray8_trns.png", layout: .grayAlpha, tolerance: 0) { x, y, c in
            let value = Fixtures.sample8(x, y, 0)
            return c == 0 ? Int(value) : (value == Fixtures.sample8(2, 3, 0) ? 0 : 255)
        },
        Case(file: "graya8.png", layout: .grayAlpha, tolerance: 0) { x, y, c in
            Int(Fixtures.sample8(x, y, c))
        },
        Case(file: "graya16.png", layout: .grayAlpha, tolerance: 1) { x, y, c in
            scaled16(Fixtures.sample16(x, y, c))
        },
        Case(file: "rgb8.png", layout: .rgb, tolerance: 0) { x, y, c in
            Int(Fixtures.sample8(x, y, c))
        },
        Case(file: "rgb16.png", layout: .rgb, tolerance: 1) { x, y, c in
            scaled16(Fixtures.sample16(x, y, c))
        },
        Case(file: "rgb8_trns.png", layout: .rgba, tolerance: 0) { x, y, c in
            if c < 3 { return Int(Fixtures.sample8(x, y, c)) }
            let isKey = (0..<3).allSatisfy { Fixtures.sample8(x, y, $0) == Fixtures.sample8(4, 5, $0) }
            return isKey ? 0 : 255
        },
        Case(file: "rgba8.png", layout: .rgba, tolerance: 0) { x, y, c in
            Int(Fixtures.sample8(x, y, c))
        },
        Case(file: "rgba16.png", layout: .rgba, tolerance: 1) { x, y, c in
            scaled16(Fixtures.sample16(x, y, c))
        },
        Case(file: "palette8.png", layout: .rgb, tolerance: 0) { x, y, c in
            Int(Fixtures.paletteEntry(Fixtures.paletteIndex(x, y))[c])
        },
        Case(file: "palette4_trns.png", layout: .rgba, tolerance: 0) { x, y, c in
            let index = Fixtures.paletteIndex(x, y)
            return c < 3 ? Int(Fixtures.paletteEntry(index)[c]) : index * 17
        },
        Case(file: "gray8_gamma1.png", layout: .gray, tolerance: 0) { x, y, _ in
            Int(Fixtures.sample8(x, y, 0))
        },
        Case(file: "rgb16_gamma_chrm.png", layout: .rgb, tolerance: 1) { x, y, c in
            scaled16(Fixtures.sample16(x, y, c))
        },
        Case(file: "rgb8_interlaced.png", layout: .rgb, tolerance: 0) { x, y, c in
            Int(Fixtures.sample8(x, y, c))
        },
    ]

    @Test(arguments: cases)
    func decodesEveryPixel(_ testCase: Case) throws {
        let bytes = try Fixtures.bytes(testCase.file)
        let image = try ImageDecoder().decode(bytes)
        #expect(image.width == Fixtures.width)
        #expect(image.height == Fixtures.height)
        #expect(image.layout == testCase.layout)
        #expect(image.sourceFormat == .png)
        var worst = 0
        for y in 0..<image.height {
            for x in 0..<image.width {
                for c in 0..<image.layout.channelCount {
                    worst = max(worst, abs(Int(image[x, y, c]) - testCase.expected(x, y, c)))
                }
            }
        }
        #expect(worst <= testCase.tolerance)

        let header = try ImageDecoder().readHeader(bytes)
        #expect(header == ImageHeader(format: .png, width: Fixtures.width, height: Fixtures.height,
                                      layout: testCase.layout, orientation: .identity))
    }

    @Test func appliesExifOrientationFromEXIfChunk() throws {
        let bytes = try Fixtures.bytes("rgb8_exif6.png")
        let header = try ImageDecoder().readHeader(bytes)
        #expect(header.orientation == .rotate90)
        #expect(header.width == Fixtures.height && header.height == Fixtures.width)
        let plain = try ImageDecoder().decode(try Fixtures.bytes("rgb8.png"))
        #expect(try ImageDecoder().decode(bytes) == plain.oriented(.rotate90))
        #expect(try ImageDecoder(appliesOrientation: false).decode(bytes) == plain)
    }
}
