extension PixelImage {
    /// The image in another channel layout.
    ///
    /// Gray becomes RGB by repetition; RGB becomes gray by ITU-R BT.601 luma,
    /// Y = 0.299 R + 0.587 G + 0.114 B, in the 16-bit fixed point Pillow's `convert("L")` uses
    /// (so results match Pillow exactly). Alpha that the target lacks is dropped (see
    /// ``flattened(onto:)`` to composite instead); alpha the source lacks is opaque (255).
    public func converted(to target: ChannelLayout) -> PixelImage {
        if target == layout { return self }
        let count = width * height
        let (sourceChannels, targetChannels) = (layout.channelCount, target.channelCount)
        let sourceIsGray = layout.colorChannelCount == 1
        let targetIsGray = target.colorChannelCount == 1
        let (sourceHasAlpha, targetHasAlpha) = (layout.hasAlpha, target.hasAlpha)
        return PixelImage(width: width, height: height, layout: target,
                          sourceFormat: sourceFormat) { output in
            pixels.withUnsafeBufferPointer { input in
                var (s, t) = (0, 0)
                for _ in 0..<count {
                    switch (sourceIsGray, targetIsGray) {
                    case (true, true):
                        output[t] = input[s]
                    case (true, false):
                        output[t] = input[s]
                        output[t + 1] = input[s]
                        output[t + 2] = input[s]
                    case (false, true):
                        output[t] = luma(input[s], input[s + 1], input[s + 2])
                    case (false, false):
                        output[t] = input[s]
                        output[t + 1] = input[s + 1]
                        output[t + 2] = input[s + 2]
                    }
                    if targetHasAlpha {
                        output[t + targetChannels - 1] =
                            sourceHasAlpha ? input[s + sourceChannels - 1] : 255
                    }
                    s += sourceChannels
                    t += targetChannels
                }
            }
        }
    }

    /// The color channels and, if the image has one, the alpha channel as a `.gray` image.
    /// ``addingAlpha(_:)`` puts them back together.
    public func splittingAlpha() -> (color: PixelImage, alpha: PixelImage?) {
        guard layout.hasAlpha else { return (self, nil) }
        let alphaOffset = layout.channelCount - 1
        let alpha = PixelImage(width: width, height: height, layout: .gray) { output in
            pixels.withUnsafeBufferPointer { input in
                for index in 0..<output.count {
                    output[index] = input[index * layout.channelCount + alphaOffset]
                }
            }
        }
        return (converted(to: layout.withoutAlpha), alpha)
    }

    /// This image (`.gray` or `.rgb`) with `alpha` (a `.gray` image of the same size) attached
    /// as its alpha channel.
    public func addingAlpha(_ alpha: PixelImage) -> PixelImage {
        precondition(!layout.hasAlpha, "the image already has alpha")
        precondition(alpha.layout == .gray && alpha.width == width && alpha.height == height,
                     "alpha must be a gray image of the same size")
        let colorChannels = layout.channelCount
        return PixelImage(width: width, height: height, layout: layout.withAlpha,
                          sourceFormat: sourceFormat) { output in
            pixels.withUnsafeBufferPointer { color in
                alpha.pixels.withUnsafeBufferPointer { alpha in
                    var (s, t) = (0, 0)
                    for index in 0..<alpha.count {
                        for channel in 0..<colorChannels {
                            output[t + channel] = color[s + channel]
                        }
                        output[t + colorChannels] = alpha[index]
                        s += colorChannels
                        t += colorChannels + 1
                    }
                }
            }
        }
    }

    /// The image composited onto an opaque gray `background` (default white), alpha removed:
    /// out = (color × α + background × (255 − α)) / 255, rounded. An image without alpha is
    /// returned unchanged.
    public func flattened(onto background: UInt8 = 255) -> PixelImage {
        guard layout.hasAlpha else { return self }
        let (sourceChannels, colorChannels) = (layout.channelCount, layout.colorChannelCount)
        let base = UInt32(background)
        return PixelImage(width: width, height: height, layout: layout.withoutAlpha,
                          sourceFormat: sourceFormat) { output in
            pixels.withUnsafeBufferPointer { input in
                var (s, t) = (0, 0)
                for _ in 0..<(width * height) {
                    let a = UInt32(input[s + colorChannels])
                    for channel in 0..<colorChannels {
                        let mixed = UInt32(input[s + channel]) * a + base * (255 - a)
                        output[t + channel] = UInt8((mixed + 127) / 255)
                    }
                    s += sourceChannels
                    t += colorChannels
                }
            }
        }
    }
}

/// BT.601 luma in 16-bit fixed point: 19595 + 38470 + 7471 = 65536.
@inline(__always)
private func luma(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> UInt8 {
    UInt8(truncatingIfNeeded: (UInt32(r) * 19595 + UInt32(g) * 38470 + UInt32(b) * 7471 + 0x8000) >> 16)
}
