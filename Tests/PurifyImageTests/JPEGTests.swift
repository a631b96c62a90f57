import PurifyImage
import Testing

struct JPEGTests {
    @Test(arguments: [ChannelLayout.rgb, .gray])
    func roundTripStaysWithinTolerance(_ layout: ChannelLayout) throws {
        let original = smoothImage(width: 40, height: 24, layout: layout)
        let bytes = try ImageEncoder().encode(original, as: .jpeg)
        let decoded = try ImageDecoder().decode(bytes)
        #expect(decoded.layout == layout)
        #expect(decoded.sourceFormat == .jpeg)
        #expect(decoded.width == 40 && decoded.height == 24)
        #expect(maxDifference(original, decoded) <= 4)
    }

    @Test func lowerQualityGivesSmallerFilesAndLargerErrors() throws {
        let original = patternImage(width: 64, height: 64, layout: .rgb)
        let high = try ImageEncoder(options: EncodeOptions(jpegQuality: 95)).encode(original, as: .jpeg)
        let low = try ImageEncoder(options: EncodeOptions(jpegQuality: 20)).encode(original, as: .jpeg)
        #expect(low.count < high.count)
        let highError = maxDifference(original, try ImageDecoder().decode(high))
        let lowError = maxDifference(original, try ImageDecoder().decode(low))
        #expect(highError < lowError)
    }

    @Test func encodesAndDecodesProgressive() throws {
        let original = smoothImage(width: 48, height: 40, layout: .rgb)
        let options = EncodeOptions(jpegQuality: 95, jpegSubsamplesChroma: true, jpegProgressive: true)
        let bytes = try ImageEncoder(options: options).encode(original, as: .jpeg)
        #expect(containsMarker(bytes, 0xC2))  // SOF2: progressive
        #expect(!containsMarker(bytes, 0xC0))
        #expect(maxDifference(original, try ImageDecoder().decode(bytes)) <= 6)
    }

    @Test func decodesPillowProgressiveJPEG() throws {
        let bytes = try Fixtures.bytes("progressive.jpg")
        #expect(containsMarker(bytes, 0xC2))
        let decoded = try ImageDecoder().decode(bytes)
        let reference = try ImageDecoder().decode(try Fixtures.bytes("progressive_reference.png"))
        #expect(decoded.layout == .rgb && reference.layout == .rgb)
        #expect(maxDifference(decoded, reference) <= 4)
    }

    /// The same libjpeg arithmetic and CMYK formula as Pillow: bit-identical pixels.
    @Test(arguments: [("progressive.jpg", "progressive_pillow.png"), ("cmyk.jpg", "cmyk_pillow.png")])
    func decodesExactlyAsPillow(file: String, pillowDecode: String) throws {
        var decoded = try ImageDecoder().decode(try Fixtures.bytes(file))
        var reference = try ImageDecoder().decode(try Fixtures.bytes(pillowDecode))
        decoded.sourceFormat = nil
        reference.sourceFormat = nil
        #expect(decoded == reference)
    }

    /// Pillow's CMYK JPEG (Adobe APP14, inverted samples) converted the way Pillow's
    /// `convert("RGB")` does it: cyan, magenta, yellow + 25% black, 50% black.
    @Test func convertsCMYKToRGB() throws {
        let bytes = try Fixtures.bytes("cmyk.jpg")
        let image = try ImageDecoder().decode(bytes)
        #expect(image.layout == .rgb)
        let expected: [(x: Int, y: Int, rgb: [Int])] = [
            (8, 8, [0, 255, 255]), (24, 8, [255, 0, 255]), (8, 24, [191, 191, 0]), (24, 24, [127, 127, 127]),
        ]
        for point in expected {
            for channel in 0..<3 {
                #expect(abs(Int(image[point.x, point.y, channel]) - point.rgb[channel]) <= 3,
                        "pixel (\(point.x), \(point.y)) channel \(channel)")
            }
        }
    }

    @Test(arguments: ExifOrientation.allCases, [false, true])
    func appliesExifOrientation(_ orientation: ExifOrientation, bigEndian: Bool) throws {
        let stored = patternImage(width: 24, height: 16, layout: .rgb)
        let plain = try ImageEncoder(options: EncodeOptions(jpegQuality: 100)).encode(stored, as: .jpeg)
        let tagged = insertingExifOrientation(orientation.rawValue, into: plain, bigEndian: bigEndian)

        let header = try ImageDecoder().readHeader(tagged)
        #expect(header.orientation == orientation)
        #expect(header.width == (orientation.swapsDimensions ? 16 : 24))
        let expected = try ImageDecoder().decode(plain).oriented(orientation)
        let decoded = try ImageDecoder().decode(tagged)
        #expect(decoded == expected)

        let unrotated = try ImageDecoder(appliesOrientation: false).decode(tagged)
        #expect(unrotated == (try ImageDecoder().decode(plain)))
        #expect(try ImageDecoder(appliesOrientation: false).readHeader(tagged).width == 24)
    }

    @Test func ignoresUnreadableExif() throws {
        let plain = try ImageEncoder().encode(patternImage(width: 8, height: 8, layout: .rgb), as: .jpeg)
        var tagged = insertingExifOrientation(6, into: plain, bigEndian: true)
        tagged[12] = 0x58  // "MM" -> "MX": not a TIFF header
        #expect(try ImageDecoder().readHeader(tagged).orientation == .identity)
        let invalid = insertingExifOrientation(9, into: plain, bigEndian: false)
        #expect(try ImageDecoder().readHeader(invalid).orientation == .identity)
    }
}

/// Whether a JPEG contains the marker 0xFF `code` (before the first scan).
func containsMarker(_ jpeg: [UInt8], _ code: UInt8) -> Bool {
    var offset = 2
    while offset + 4 <= jpeg.count, jpeg[offset] == 0xFF {
        let marker = jpeg[offset + 1]
        if marker == code { return true }
        if marker == 0xDA { return false }
        offset += 2 + (Int(jpeg[offset + 2]) << 8 | Int(jpeg[offset + 3]))
    }
    return false
}
