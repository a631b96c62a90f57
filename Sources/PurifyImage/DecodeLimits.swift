/// Bounds on untrusted input, checked before any pixel memory is allocated: the byte count
/// before parsing, the dimensions as soon as the header is read.
///
/// Peak memory of one decode is about (channels + 1) bytes per pixel for PNG and baseline
/// JPEG, and up to 9 bytes per pixel for a progressive color JPEG (libjpeg keeps every DCT
/// coefficient), so `maxPixels` is what bounds it: 360 MB at the default 40 megapixels.
public struct DecodeLimits: Hashable, Sendable {
    /// The largest encoded input accepted, in bytes.
    public var maxBytes: Int
    /// The largest width × height accepted.
    public var maxPixels: Int
    /// The largest width or height accepted.
    public var maxSide: Int

    /// Defaults: 64 MiB, 40 megapixels (a 4:3 photo of 7300 × 5475), 16384 pixels a side.
    public init(maxBytes: Int = 64 << 20, maxPixels: Int = 40_000_000, maxSide: Int = 16_384) {
        self.maxBytes = maxBytes
        self.maxPixels = maxPixels
        self.maxSide = maxSide
    }

    /// The default limits.
    public static let `default` = DecodeLimits()

    func check(byteCount: Int) throws(ImageError) {
        if byteCount > maxBytes {
            throw .tooLarge("\(byteCount) bytes exceed the limit of \(maxBytes) bytes")
        }
    }

    func check(width: Int, height: Int) throws(ImageError) {
        if width > maxSide || height > maxSide {
            throw .tooLarge("\(width)×\(height) exceeds the limit of \(maxSide) pixels a side")
        }
        if width * height > maxPixels {
            throw .tooLarge("\(width)×\(height) exceeds the limit of \(maxPixels) pixels")
        }
    }
}
