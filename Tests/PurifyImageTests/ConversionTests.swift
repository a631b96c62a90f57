import PurifyImage
import Testing

struct ChannelConversionTests {
    @Test func grayToRGBRepeatsAndBackIsExact() {
        let gray = patternImage(width: 5, height: 3, layout: .gray)
        let rgb = gray.converted(to: .rgb)
        #expect(rgb.layout == .rgb)
        #expect(rgb[4, 2, 0] == gray[4, 2, 0] && rgb[4, 2, 1] == gray[4, 2, 0] && rgb[4, 2, 2] == gray[4, 2, 0])
        #expect(rgb.converted(to: .gray) == gray)
    }

    /// BT.601 luma as Pillow computes it (values from Pillow 13's `convert("L")`).
    @Test func rgbToGrayUsesBT601Luma() {
        let rgb = PixelImage(width: 4, height: 1, layout: .rgb,
                             pixels: [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 200, 30])
        #expect(rgb.converted(to: .gray).pixels == [76, 150, 29, 124])
    }

    @Test func alphaIsSplitAndReattached() {
        for layout in [ChannelLayout.grayAlpha, .rgba] {
            let image = patternImage(width: 6, height: 4, layout: layout)
            let (color, alpha) = image.splittingAlpha()
            #expect(color.layout == layout.withoutAlpha)
            let unwrapped = alpha!
            #expect(unwrapped.layout == .gray)
            #expect(unwrapped[5, 3, 0] == image[5, 3, layout.channelCount - 1])
            #expect(color.addingAlpha(unwrapped) == image)
        }
        let opaque = patternImage(width: 6, height: 4, layout: .rgb)
        #expect(opaque.splittingAlpha().alpha == nil)
        #expect(opaque.converted(to: .rgba).splittingAlpha().alpha?.pixels.allSatisfy { $0 == 255 } == true)
    }

    @Test func flattenCompositesOntoBackground() {
        let image = PixelImage(width: 3, height: 1, layout: .grayAlpha, pixels: [0, 0, 0, 255, 100, 128])
        #expect(image.flattened().pixels == [255, 0, 177])  // (100·128 + 255·127) / 255 = 177.2
        #expect(image.flattened(onto: 0).pixels == [0, 0, 50])
    }
}

struct TensorConversionTests {
    @Test(arguments: ChannelLayout.allCases)
    func planarRoundTripIsExact(_ layout: ChannelLayout) {
        let image = patternImage(width: 7, height: 5, layout: layout)
        let planar = image.planarFloats()
        #expect(planar.count == image.planarCount)
        #expect(planar.allSatisfy { $0 >= 0 && $0 <= 1 })
        #expect(PixelImage(planar: planar, width: 7, height: 5, layout: layout) == image)
    }

    @Test func layoutIsChannelMajor() {
        // 2×1 RGB: pixels (10, 20, 30) and (40, 50, 60) -> R plane, G plane, B plane.
        let image = PixelImage(width: 2, height: 1, layout: .rgb, pixels: [10, 20, 30, 40, 50, 60])
        let expected: [Float] = [10, 40, 20, 50, 30, 60].map { $0 / 255 }
        #expect(image.planarFloats() == expected)
        var batch = [Float](repeating: -1, count: 2 * image.planarCount)
        batch.withUnsafeMutableBufferPointer { buffer in
            image.writePlanar(into: UnsafeMutableBufferPointer(rebasing: buffer[image.planarCount...]))
        }
        #expect(Array(batch[..<6]) == [Float](repeating: -1, count: 6))
        #expect(Array(batch[6...]) == expected)
    }

    @Test func outOfRangeValuesAreClampedAndRounded() {
        let values: [Float] = [-0.5, 1.5, .nan, 0.5, 0.499 / 255, 0.5 / 255, .infinity, 128.4 / 255]
        let image = PixelImage(planar: values, width: 8, height: 1, layout: .gray)
        #expect(image.pixels == [0, 255, 0, 128, 0, 1, 255, 128])
    }
}

struct GeometryTests {
    static let sample = PixelImage(width: 3, height: 2, layout: .gray, pixels: [10, 20, 30, 40, 50, 60])

    @Test func centeredPaddingFollowsTheTrainingConvention() {
        #expect(Padding.centered(width: 28, height: 28, toMultipleOf: 8)
                == Padding(top: 2, bottom: 2, left: 2, right: 2))
        #expect(Padding.centered(width: 30, height: 29, toMultipleOf: 16)
                == Padding(top: 1, bottom: 2, left: 1, right: 1))
        #expect(Padding.centered(width: 32, height: 32, toMultipleOf: 16).isZero)
        #expect(Padding.centered(width: 3, height: 2, toMultipleOf: 4)
                == Padding(top: 1, bottom: 1, left: 0, right: 1))
    }

    /// Expected values from numpy.pad(mode="reflect").
    @Test func reflectPaddingMatchesNumpy() {
        let padded = Self.sample.reflectPadded(Padding.centered(width: 3, height: 2, toMultipleOf: 4))
        #expect(padded.width == 4 && padded.height == 4)
        #expect(padded.pixels == [40, 50, 60, 50, 10, 20, 30, 20, 40, 50, 60, 50, 10, 20, 30, 20])

        // Wider than the image: keeps reflecting.
        let wide = Self.sample.reflectPadded(Padding(top: 5, bottom: 4, left: 6, right: 7))
        #expect(wide.width == 16 && wide.height == 11)
        let even: [UInt8] = [60, 50, 40, 50, 60, 50, 40, 50, 60, 50, 40, 50, 60, 50, 40, 50]
        let odd: [UInt8] = [30, 20, 10, 20, 30, 20, 10, 20, 30, 20, 10, 20, 30, 20, 10, 20]
        #expect(wide.pixels == (0..<11).flatMap { $0 % 2 == 0 ? even : odd })
    }

    @Test func cropRemovesPadding() {
        for layout in ChannelLayout.allCases {
            let image = patternImage(width: 13, height: 7, layout: layout)
            let padding = Padding.centered(width: 13, height: 7, toMultipleOf: 8)
            let padded = image.reflectPadded(padding)
            #expect(padded.width == 16 && padded.height == 8)
            #expect(padded[padding.left, padding.top, 0] == image[0, 0, 0])
            #expect(padded.cropped(removing: padding) == image)
        }
        #expect(Self.sample.cropped(x: 1, y: 1, width: 2, height: 1).pixels == [50, 60])
        let single = PixelImage(width: 1, height: 1, layout: .rgb, pixels: [1, 2, 3])
        #expect(single.reflectPadded(Padding(top: 1, bottom: 0, left: 0, right: 1)).pixels
                == [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3])
    }

    /// Expected values from Pillow 13, `Image.resize(size, Image.BILINEAR)` on the 6×4 gray
    /// image with pixel (x, y) = 10 (6y + x).
    @Test(arguments: [
        (4, 3, [22, 36, 50, 64, 94, 108, 122, 136, 166, 180, 194, 208]),
        (9, 5, [0, 5, 12, 18, 25, 32, 38, 45, 50, 42, 47, 54, 60, 67, 74, 80, 87, 92,
                90, 95, 102, 108, 115, 122, 128, 135, 140, 138, 143, 150, 156, 163, 170, 176,
                183, 188, 180, 185, 192, 198, 205, 212, 218, 225, 230]),
        (2, 2, [56, 81, 150, 175]),
    ])
    func bilinearResizeMatchesPillow(width: Int, height: Int, expected: [Int]) {
        let source = PixelImage(width: 6, height: 4, layout: .gray,
                                pixels: (0..<24).map { UInt8($0 * 10) })
        let resized = source.resized(width: width, height: height)
        #expect(resized.width == width && resized.height == height)
        #expect(resized.pixels.map(Int.init) == expected)
    }

    @Test(arguments: [(23, 17, "noisy_23x17_pillow.png"), (150, 101, "noisy_150x101_pillow.png")])
    func bilinearResizeIsBitIdenticalToPillow(width: Int, height: Int, reference: String) throws {
        let source = try ImageDecoder().decode(try Fixtures.bytes("noisy.png"))
        let expected = try ImageDecoder().decode(try Fixtures.bytes(reference))
        #expect(source.resized(width: width, height: height) == expected)
    }

    @Test func resizeKeepsFlatImagesFlatAndChannelsApart() {
        let flat = PixelImage(width: 9, height: 7, layout: .rgba,
                              pixels: Array(repeating: [12, 34, 56, 78], count: 63).flatMap { $0 })
        for (width, height) in [(32, 32), (3, 2), (9, 7), (1, 1)] {
            let resized = flat.resized(width: width, height: height)
            #expect(resized.pixels == Array(repeating: [12, 34, 56, 78], count: width * height).flatMap { $0 })
        }
    }

    /// Expected values from Pillow 13's `ImageOps.exif_transpose` on the 3×2 image 1…6.
    @Test func orientationsMatchPillow() {
        let stored = PixelImage(width: 3, height: 2, layout: .gray, pixels: [1, 2, 3, 4, 5, 6])
        let expected: [ExifOrientation: [UInt8]] = [
            .identity: [1, 2, 3, 4, 5, 6], .flipHorizontal: [3, 2, 1, 6, 5, 4],
            .rotate180: [6, 5, 4, 3, 2, 1], .flipVertical: [4, 5, 6, 1, 2, 3],
            .transpose: [1, 4, 2, 5, 3, 6], .rotate90: [4, 1, 5, 2, 6, 3],
            .transverse: [6, 3, 5, 2, 4, 1], .rotate270: [3, 6, 2, 5, 1, 4],
        ]
        for orientation in ExifOrientation.allCases {
            let oriented = stored.oriented(orientation)
            #expect(oriented.pixels == expected[orientation], "\(orientation)")
            #expect(oriented.width == (orientation.swapsDimensions ? 2 : 3))
        }
        let rgb = patternImage(width: 5, height: 3, layout: .rgb)
        #expect(rgb.oriented(.rotate90).oriented(.rotate270) == rgb)
    }
}
