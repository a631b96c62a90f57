extension PixelImage {
    /// The image resampled to `width × height` by bilinear interpolation at half-pixel
    /// centers (align_corners = false). When downscaling, the triangle filter is widened by the
    /// scale factor so that every source pixel contributes (antialiasing).
    ///
    /// This is Pillow's `Image.resize(size, Image.BILINEAR)` arithmetic, reproduced exactly
    /// (22-bit fixed-point weights, a horizontal then a vertical pass, 8-bit rounding between
    /// them), so gray and RGB results are bit-identical to Pillow's; PyTorch's
    /// `F.interpolate(mode="bilinear", antialias=True, align_corners=False)` computes the same
    /// filter in floats. Each channel, alpha included, is filtered on its own: unlike Pillow,
    /// no premultiplication by alpha (split alpha off first where that matters).
    public func resized(width: Int, height: Int) -> PixelImage {
        precondition(width > 0 && height > 0, "resize to an empty image")
        precondition(self.width > 0 && self.height > 0, "resize of an empty image")
        var image = self
        if width != self.width {
            image = image.resampled(along: .horizontal, to: width)
        }
        if height != self.height {
            image = image.resampled(along: .vertical, to: height)
        }
        return image
    }

    private enum Axis {
        case horizontal, vertical
    }

    /// One separable pass: resamples the rows (horizontal) or the columns (vertical).
    private func resampled(along axis: Axis, to size: Int) -> PixelImage {
        let channels = layout.channelCount
        let (outWidth, outHeight) = axis == .horizontal ? (size, height) : (width, size)
        let weights = ResampleWeights(inputSize: axis == .horizontal ? width : height,
                                      outputSize: size)
        // Step between the inputs of one output sample: the next pixel, or the next row.
        let step = axis == .horizontal ? channels : width * channels
        return PixelImage(width: outWidth, height: outHeight, layout: layout,
                          sourceFormat: sourceFormat) { output in
            pixels.withUnsafeBufferPointer { input in
                weights.withUnsafeBuffers { starts, counts, coefficients, stride in
                    var target = 0
                    for y in 0..<outHeight {
                        for x in 0..<outWidth {
                            let position = axis == .horizontal ? x : y
                            let first = starts[position]
                            let taps = coefficients.baseAddress! + position * stride
                            let base = axis == .horizontal
                                ? (y * width + first) * channels : (first * width + x) * channels
                            for channel in 0..<channels {
                                var sum = ResampleWeights.rounding
                                var source = base + channel
                                for tap in 0..<counts[position] {
                                    sum &+= Int32(input[source]) &* taps[tap]
                                    source &+= step
                                }
                                output[target] = ResampleWeights.clip(sum)
                                target &+= 1
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Per output position along one axis: the first input index and the triangle filter's
/// weights for the inputs from there on, normalised and in fixed point (Pillow's
/// `precompute_coeffs` and `normalize_coeffs_8bpc`).
struct ResampleWeights {
    static let precisionBits: Int32 = 32 - 8 - 2
    /// Half of one unit, added before truncating.
    static let rounding: Int32 = 1 << (precisionBits - 1)

    private let starts: [Int]
    private let counts: [Int]
    private let coefficients: [Int32]
    private let stride: Int

    init(inputSize: Int, outputSize: Int) {
        let scale = Double(inputSize) / Double(outputSize)
        let filterScale = max(scale, 1)
        let support = filterScale  // the triangle's support, 1, widened when downscaling
        stride = Int(support.rounded(.up)) * 2 + 1
        var starts = [Int](repeating: 0, count: outputSize)
        var counts = [Int](repeating: 0, count: outputSize)
        var coefficients = [Int32](repeating: 0, count: outputSize * stride)
        var taps = [Double](repeating: 0, count: stride)
        let unit = Double(1 << Self.precisionBits)
        for output in 0..<outputSize {
            let center = (Double(output) + 0.5) * scale
            // Int(_:) truncates toward zero, like C's (int) cast in Pillow.
            let first = max(Int(center - support + 0.5), 0)
            let count = min(Int(center + support + 0.5), inputSize) - first
            var total = 0.0
            for tap in 0..<count {
                let distance = abs((Double(tap + first) - center + 0.5) / filterScale)
                taps[tap] = distance < 1 ? 1 - distance : 0
                total += taps[tap]
            }
            for tap in 0..<count {
                let weight = total != 0 ? taps[tap] / total : taps[tap]
                coefficients[output * stride + tap] =
                    Int32(weight < 0 ? -0.5 + weight * unit : 0.5 + weight * unit)
            }
            starts[output] = first
            counts[output] = count
        }
        self.starts = starts
        self.counts = counts
        self.coefficients = coefficients
    }

    func withUnsafeBuffers<R>(
        _ body: (UnsafeBufferPointer<Int>, UnsafeBufferPointer<Int>, UnsafeBufferPointer<Int32>, Int) -> R
    ) -> R {
        starts.withUnsafeBufferPointer { starts in
            counts.withUnsafeBufferPointer { counts in
                coefficients.withUnsafeBufferPointer { coefficients in
                    body(starts, counts, coefficients, stride)
                }
            }
        }
    }

    /// A fixed-point sum back to 0...255.
    @inline(__always)
    static func clip(_ sum: Int32) -> UInt8 {
        if sum <= 0 { return 0 }
        if sum >= (1 << precisionBits) << 8 { return 255 }
        return UInt8(truncatingIfNeeded: sum >> precisionBits)
    }
}
