/// How the channels of one pixel are laid out, in order.
public enum ChannelLayout: String, Hashable, Sendable, CaseIterable {
    case gray
    case grayAlpha
    case rgb
    case rgba

    /// Channels per pixel: 1, 2, 3 or 4.
    public var channelCount: Int {
        switch self {
        case .gray: 1
        case .grayAlpha: 2
        case .rgb: 3
        case .rgba: 4
        }
    }

    /// Whether the last channel is alpha.
    public var hasAlpha: Bool { self == .grayAlpha || self == .rgba }

    /// Channels that carry color (1 or 3), alpha excluded.
    public var colorChannelCount: Int { hasAlpha ? channelCount - 1 : channelCount }

    /// The same color layout without alpha.
    public var withoutAlpha: ChannelLayout {
        switch self {
        case .gray, .grayAlpha: .gray
        case .rgb, .rgba: .rgb
        }
    }

    /// The same color layout with alpha.
    public var withAlpha: ChannelLayout {
        switch self {
        case .gray, .grayAlpha: .grayAlpha
        case .rgb, .rgba: .rgba
        }
    }

    /// The layout of an image with `count` channels, if there is one.
    public init?(channelCount count: Int) {
        switch count {
        case 1: self = .gray
        case 2: self = .grayAlpha
        case 3: self = .rgb
        case 4: self = .rgba
        default: return nil
        }
    }
}

/// An 8-bit image: `height` rows of `width` pixels, channels interleaved, rows packed with no
/// padding (row stride = `width × layout.channelCount` bytes). Alpha, where present, is
/// straight (not premultiplied).
public struct PixelImage: Hashable, Sendable {
    /// Columns.
    public let width: Int
    /// Rows.
    public let height: Int
    /// Channel order of each pixel.
    public let layout: ChannelLayout
    /// `height × width × layout.channelCount` bytes, row-major, channels interleaved.
    public private(set) var pixels: [UInt8]
    /// The format the image was decoded from; `nil` for an image made in memory.
    public var sourceFormat: ImageFormat?

    /// An image over existing pixel bytes; `pixels.count` must be `width × height × channels`.
    public init(width: Int, height: Int, layout: ChannelLayout, pixels: [UInt8],
                sourceFormat: ImageFormat? = nil) {
        precondition(width >= 0 && height >= 0, "negative image size")
        precondition(pixels.count == width * height * layout.channelCount,
                     "pixel count does not match \(width)×\(height) \(layout)")
        self.width = width
        self.height = height
        self.layout = layout
        self.pixels = pixels
        self.sourceFormat = sourceFormat
    }

    /// Builds an image by letting `body` initialize every pixel byte.
    init(width: Int, height: Int, layout: ChannelLayout, sourceFormat: ImageFormat? = nil,
         initializingPixelsWith body: (UnsafeMutableBufferPointer<UInt8>) -> Void) {
        let count = width * height * layout.channelCount
        let pixels = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            body(buffer)
            initialized = count
        }
        self.init(width: width, height: height, layout: layout, pixels: pixels,
                  sourceFormat: sourceFormat)
    }

    /// Bytes from one row to the next.
    public var bytesPerRow: Int { width * layout.channelCount }

    /// One channel of one pixel.
    public subscript(x: Int, y: Int, channel: Int) -> UInt8 {
        precondition(x >= 0 && x < width && y >= 0 && y < height
                     && channel >= 0 && channel < layout.channelCount, "pixel index out of range")
        return pixels[(y * width + x) * layout.channelCount + channel]
    }
}
