extension PixelImage {
    /// The image resampled to `width × height` by bilinear interpolation at half-pixel
    /// centers (align_corners = false). When downscaling, the triangle filter is widened by the
    /// scale factor so that every source pixel contributes (antialiasing): the method of
    /// Pillow's `resize(size, Image.BILINEAR)` and of PyTorch's
    /// `F.interpolate(mode="bilinear", antialias=True, align_corners=False)`. Results agree
    /// with Pillow within ±1 (Pillow rounds to 8 bits between its two passes; this keeps
    /// floats). Each channel, alpha included, is filtered on its own (no premultiplication).
    public func resized(width: Int, height: Int) -> PixelImage {
        precondition(width > 0 && height > 0, "resize to an empty image")
        if width == self.width && height == self.height { return self }
        let channels = layout.channelCount
        let columns = ResampleWeights(inputSize: self.width, outputSize: width)
        let rows = ResampleWeights(inputSize: self.height, outputSize: height)
        // Horizontal pass into floats (input rows × output columns), then the vertical pass.
        var horizontal = [Float](repeating: 0, count: self.height * width * channels)
        pixels.withUnsafeBufferPointer { input in
            horizontal.withUnsafeMutableBufferPointer { output in
                for y in 0..<self.height {
                    let inRow = y * self.width * channels
                    let outRow = y * width * channels
                    for x in 0..<width {
                        let (start, weights) = columns[x]
                        for channel in 0..<channels {
                            var sum: Float = 0
                            var source = inRow + start * channels + channel
                            for weight in weights {
                                sum += weight * Float(input[source])
                                source += channels
                            }
                            output[outRow + x * channels + channel] = sum
                        }
                    }
                }
            }
        }
        let rowLength = width * channels
        return PixelImage(width: width, height: height, layout: layout,
                          sourceFormat: sourceFormat) { output in
            horizontal.withUnsafeBufferPointer { input in
                for y in 0..<height {
                    let (start, weights) = rows[y]
                    for index in 0..<rowLength {
                        var sum: Float = 0
                        var source = start * rowLength + index
                        for weight in weights {
                            sum += weight * input[source]
                            source += rowLength
                        }
                        output[y * rowLength + index] =
                            UInt8(min(max(sum, 0), 255).rounded(.toNearestOrAwayFromZero))
                    }
                }
            }
        }
    }
}

/// Per output position along one axis: the first input index and the normalised triangle
/// filter weights of the inputs from there on (Pillow's `precompute_coeffs`).
struct ResampleWeights {
    private let starts: [Int]
    private let counts: [Int]
    private let weights: [Float]
    private let stride: Int

    init(inputSize: Int, outputSize: Int) {
        let scale = Double(inputSize) / Double(outputSize)
        let filterScale = max(scale, 1)
        let support = filterScale  // the triangle's support, 1, widened when downscaling
        stride = Int(support.rounded(.up)) * 2 + 1
        var starts = [Int](repeating: 0, count: outputSize)
        var counts = [Int](repeating: 0, count: outputSize)
        var weights = [Float](repeating: 0, count: outputSize * stride)
        for output in 0..<outputSize {
            let center = (Double(output) + 0.5) * scale
            let first = max(Int(center - support + 0.5), 0)
            let end = min(Int(center + support + 0.5), inputSize)
            var taps = [Double]()
            taps.reserveCapacity(end - first)
            for input in first..<end {
                taps.append(max(0, 1 - abs((Double(input) - center + 0.5) / filterScale)))
            }
            let total = taps.reduce(0, +)
            for (offset, tap) in taps.enumerated() {
                weights[output * stride + offset] = Float(total > 0 ? tap / total : 0)
            }
            starts[output] = first
            counts[output] = taps.count
        }
        self.starts = starts
        self.counts = counts
        self.weights = weights
    }

    subscript(output: Int) -> (start: Int, weights: ArraySlice<Float>) {
        (starts[output], weights[(output * stride)..<(output * stride + counts[output])])
    }
}
