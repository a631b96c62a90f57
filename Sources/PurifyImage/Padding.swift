/// Pixels added on each side of an image.
public struct Padding: Hashable, Sendable {
    public var top: Int
    public var bottom: Int
    public var left: Int
    public var right: Int

    public init(top: Int, bottom: Int, left: Int, right: Int) {
        precondition(top >= 0 && bottom >= 0 && left >= 0 && right >= 0, "negative padding")
        self.top = top
        self.bottom = bottom
        self.left = left
        self.right = right
    }

    /// No padding.
    public static let zero = Padding(top: 0, bottom: 0, left: 0, right: 0)

    /// Whether nothing is added.
    public var isZero: Bool { self == .zero }

    /// The centered padding that brings a `width × height` image up to the next multiple of
    /// `multiple` on both axes: with P the padded height, top = (P − H) / 2 (rounded down) and
    /// bottom the rest; the same for left and right. This is the convention the purifiers were
    /// trained with (`reflect_pad_to` in training/purifyd_train/models.py).
    public static func centered(width: Int, height: Int, toMultipleOf multiple: Int) -> Padding {
        precondition(multiple > 0, "multiple must be positive")
        let extraHeight = (multiple - height % multiple) % multiple
        let extraWidth = (multiple - width % multiple) % multiple
        return Padding(top: extraHeight / 2, bottom: extraHeight - extraHeight / 2,
                       left: extraWidth / 2, right: extraWidth - extraWidth / 2)
    }
}

extension PixelImage {
    /// The image with `padding` added by reflection about the edge pixels, which are not
    /// repeated (… c b | a b c d | c b …), as numpy's `"reflect"` mode and PyTorch's
    /// `ReflectionPad2d` / `F.pad(mode="reflect")` do. Padding wider than the image keeps
    /// reflecting back and forth (PyTorch refuses that case); an image one pixel wide is
    /// repeated.
    public func reflectPadded(_ padding: Padding) -> PixelImage {
        if padding.isZero { return self }
        precondition(width > 0 && height > 0, "cannot reflect-pad an empty image")
        let outWidth = width + padding.left + padding.right
        let outHeight = height + padding.top + padding.bottom
        let channels = layout.channelCount
        let rowBytes = bytesPerRow
        let sourceColumns = (0..<outWidth).map { reflect($0 - padding.left, count: width) }
        return PixelImage(width: outWidth, height: outHeight, layout: layout,
                          sourceFormat: sourceFormat) { output in
            pixels.withUnsafeBufferPointer { input in
                sourceColumns.withUnsafeBufferPointer { sourceColumns in
                    for y in 0..<outHeight {
                        let sourceRow = reflect(y - padding.top, count: height) * rowBytes
                        let outRow = y * outWidth * channels
                        // The interior is one contiguous copy; only the margins are gathered.
                        _ = UnsafeMutableBufferPointer(rebasing:
                            output[(outRow + padding.left * channels)...].prefix(rowBytes)
                        ).update(fromContentsOf: input[sourceRow..<(sourceRow + rowBytes)])
                        for margin in [0..<padding.left, (padding.left + width)..<outWidth] {
                            for x in margin {
                                let source = sourceRow + sourceColumns[x] * channels
                                for channel in 0..<channels {
                                    output[outRow + x * channels + channel] = input[source + channel]
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The image with `padding` removed: the inverse of ``reflectPadded(_:)``.
    public func cropped(removing padding: Padding) -> PixelImage {
        cropped(x: padding.left, y: padding.top, width: width - padding.left - padding.right,
                height: height - padding.top - padding.bottom)
    }

    /// The `width × height` region whose top-left pixel is (`x`, `y`).
    public func cropped(x: Int, y: Int, width: Int, height: Int) -> PixelImage {
        precondition(x >= 0 && y >= 0 && width >= 0 && height >= 0
                     && x + width <= self.width && y + height <= self.height,
                     "crop region outside the image")
        if x == 0 && y == 0 && width == self.width && height == self.height { return self }
        let channels = layout.channelCount
        let rowBytes = width * channels
        return PixelImage(width: width, height: height, layout: layout,
                          sourceFormat: sourceFormat) { output in
            pixels.withUnsafeBufferPointer { input in
                for row in 0..<height {
                    let source = ((y + row) * self.width + x) * channels
                    _ = UnsafeMutableBufferPointer(rebasing: output[(row * rowBytes)...].prefix(rowBytes))
                        .update(fromContentsOf: input[source..<(source + rowBytes)])
                }
            }
        }
    }
}

/// The index that reflection padding reads for position `index` of an axis of `count` pixels.
@inline(__always)
private func reflect(_ index: Int, count: Int) -> Int {
    if count == 1 { return 0 }
    let period = 2 * (count - 1)
    var folded = index % period
    if folded < 0 { folded += period }
    return folded < count ? folded : period - folded
}
