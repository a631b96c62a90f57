import PurifyImage
import Testing

/// The flow PurifyImage.docc describes, with an identity "model": every step must be undone
/// exactly, for every layout, whether the model wants gray or RGB.
struct DocumentedFlowTests {
    @Test(arguments: ChannelLayout.allCases, [1, 3])
    func identityModelRestoresTheImage(_ layout: ChannelLayout, modelChannels: Int) throws {
        var original = patternImage(width: 29, height: 19, layout: layout)
        if modelChannels == 1 {
            // Colors a gray model cannot carry: start from gray values for the exact check.
            original = original.converted(to: .gray).converted(to: layout)
        }
        let file = try ImageEncoder().encode(original)
        let image = try ImageDecoder().decode(file)

        let (color, alpha) = image.splittingAlpha()
        let input = color.converted(to: modelChannels == 1 ? .gray : .rgb)
        let padding = Padding.centered(width: input.width, height: input.height, toMultipleOf: 16)
        let padded = input.reflectPadded(padding)
        #expect(padded.width == 32 && padded.height == 32)

        // A batch of two, this image second; the identity model copies input to output.
        var batch = [Float](repeating: 0, count: 2 * padded.planarCount)
        batch.withUnsafeMutableBufferPointer { buffer in
            padded.writePlanar(into: UnsafeMutableBufferPointer(rebasing: buffer[padded.planarCount...]))
        }
        let output = batch
        var purified = output.withUnsafeBufferPointer { buffer in
            PixelImage(planar: UnsafeBufferPointer(rebasing: buffer[padded.planarCount...]),
                       width: padded.width, height: padded.height, layout: input.layout)
        }
        .cropped(removing: padding)
        .converted(to: color.layout)
        if let alpha { purified = purified.addingAlpha(alpha) }
        purified.sourceFormat = image.sourceFormat

        let bytes = try ImageEncoder().encode(purified)
        #expect(try ImageDecoder().decode(bytes) == image)
    }
}
