import PurifyImage
import Testing

struct EncodingTests {
    @Test(arguments: ChannelLayout.allCases, [false, true])
    func pngRoundTripIsExact(_ layout: ChannelLayout, fast: Bool) throws {
        let original = patternImage(width: 37, height: 23, layout: layout)
        let bytes = try ImageEncoder(options: EncodeOptions(pngFast: fast)).encode(original)
        #expect(Array(bytes.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        var decoded = try ImageDecoder().decode(bytes)
        #expect(decoded.sourceFormat == .png)
        decoded.sourceFormat = nil
        #expect(decoded == original)
    }

    @Test func defaultFormatIsTheSourceFormat() throws {
        let jpeg = try ImageEncoder().encode(smoothImage(width: 16, height: 16, layout: .rgb), as: .jpeg)
        let fromJPEG = try ImageDecoder().decode(jpeg)
        #expect(Array(try ImageEncoder().encode(fromJPEG).prefix(3)) == [0xFF, 0xD8, 0xFF])
        #expect(Array(try ImageEncoder().encode(fromJPEG, as: .png).prefix(4)) == [0x89, 0x50, 0x4E, 0x47])

        let png = try ImageEncoder().encode(patternImage(width: 16, height: 16, layout: .gray))
        let fromPNG = try ImageDecoder().decode(png)
        #expect(Array(try ImageEncoder().encode(fromPNG).prefix(4)) == [0x89, 0x50, 0x4E, 0x47])
    }

    /// JPEG has no alpha: the image is composited onto white first.
    @Test(arguments: [ChannelLayout.grayAlpha, .rgba])
    func jpegCompositesAlphaOntoWhite(_ layout: ChannelLayout) throws {
        let channels = layout.channelCount
        var pixels = [UInt8](repeating: 0, count: 16 * 16 * channels)
        for index in 0..<(16 * 16) {
            pixels[index * channels + channels - 1] = index < 128 ? 0 : 255  // top half transparent
        }
        let image = PixelImage(width: 16, height: 16, layout: layout, pixels: pixels)
        let decoded = try ImageDecoder().decode(try ImageEncoder().encode(image, as: .jpeg))
        #expect(decoded.layout == layout.withoutAlpha)
        #expect(maxDifference(decoded, image.flattened()) <= 2)
        #expect(decoded[3, 2, 0] >= 253)  // transparent black became white
        #expect(decoded[3, 12, 0] <= 2)  // opaque black stayed black
    }
}
