/// Planar float32 conversion: the layout of one image inside an NCHW batch, values in [0, 1].
extension PixelImage {
    /// Floats in the planar form: channels × height × width.
    public var planarCount: Int { layout.channelCount * width * height }

    /// Writes every channel (alpha included, if present; see ``splittingAlpha()``) as planar
    /// float32, value / 255, channel-major: channel 0's rows, then channel 1's, … This is the
    /// C×H×W block of one image in an NCHW batch. `destination.count` must be ``planarCount``.
    public func writePlanar(into destination: UnsafeMutableBufferPointer<Float>) {
        precondition(destination.count == planarCount, "planar buffer has the wrong size")
        let channels = layout.channelCount
        let plane = width * height
        guard let planes = destination.baseAddress else { return }
        pixels.withUnsafeBufferPointer { input in
            // One pass per channel plane; a division (not a multiplication by 1/255) so that
            // the values are exactly PyTorch's `to_tensor`, `x.float().div(255)`.
            for channel in 0..<channels {
                let target = planes + channel * plane
                var source = channel
                for index in 0..<plane {
                    target[index] = Float(input[source]) / 255
                    source &+= channels
                }
            }
        }
    }

    /// The image as planar float32 values in [0, 1]; see ``writePlanar(into:)``.
    public func planarFloats() -> [Float] {
        [Float](unsafeUninitializedCapacity: planarCount) { buffer, initialized in
            writePlanar(into: buffer)
            initialized = planarCount
        }
    }

    /// An image from planar float32 values (C×H×W, C = `layout.channelCount`), the inverse of
    /// ``writePlanar(into:)``: each value is clamped to [0, 1], scaled by 255 and rounded to
    /// the nearest integer, halves up (as torchvision's `save_image`); NaN becomes 0.
    /// `planar.count` must be C × height × width.
    public init(planar: UnsafeBufferPointer<Float>, width: Int, height: Int,
                layout: ChannelLayout) {
        let channels = layout.channelCount
        let plane = width * height
        precondition(planar.count == channels * plane, "planar buffer has the wrong size")
        self.init(width: width, height: height, layout: layout) { output in
            for channel in 0..<channels {
                var target = channel
                for index in (channel * plane)..<((channel + 1) * plane) {
                    // Clamp first (`>` is false for NaN, so NaN ends up at 0), then round.
                    let value = planar[index]
                    let clamped = value > 0 ? min(value, 1) : 0
                    output[target] = UInt8(clamped * 255 + 0.5)
                    target &+= channels
                }
            }
        }
    }

    /// An image from planar float32 values; see ``init(planar:width:height:layout:)``.
    public init(planar: [Float], width: Int, height: Int, layout: ChannelLayout) {
        self = planar.withUnsafeBufferPointer {
            PixelImage(planar: $0, width: width, height: height, layout: layout)
        }
    }
}
