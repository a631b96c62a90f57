import CImageCodecs

/// Settings for ``ImageEncoder``.
public struct EncodeOptions: Hashable, Sendable {
    /// JPEG quality on libjpeg's 1...100 scale. Re-encoding as JPEG itself alters fine
    /// perturbations, so reports should state it.
    public var jpegQuality: Int
    /// Whether JPEG chroma is subsampled 4:2:0 (smaller files) instead of kept at full
    /// resolution, 4:4:4.
    public var jpegSubsamplesChroma: Bool
    /// Whether JPEGs are written progressive rather than baseline.
    public var jpegProgressive: Bool
    /// Whether PNG compression favours speed over size (libpng's PNG_IMAGE_FLAG_FAST).
    public var pngFast: Bool

    /// Defaults: JPEG quality 95 at 4:4:4, baseline; PNG at libpng's default compression.
    public init(jpegQuality: Int = 95, jpegSubsamplesChroma: Bool = false,
                jpegProgressive: Bool = false, pngFast: Bool = false) {
        self.jpegQuality = jpegQuality
        self.jpegSubsamplesChroma = jpegSubsamplesChroma
        self.jpegProgressive = jpegProgressive
        self.pngFast = pngFast
    }
}

/// Encodes a ``PixelImage`` as PNG (lossless, alpha kept) or JPEG.
///
/// JPEG has no alpha channel: an image with alpha is composited onto white before JPEG
/// encoding (``PixelImage/flattened(onto:)``). Gray images are written as 1-channel files.
public struct ImageEncoder: Sendable {
    /// Encoding settings.
    public var options: EncodeOptions

    public init(options: EncodeOptions = EncodeOptions()) {
        self.options = options
    }

    /// Encodes `image` in `format`; when `format` is nil, in the image's ``PixelImage/sourceFormat``,
    /// or PNG for an image made in memory.
    public func encode(_ image: PixelImage, as format: ImageFormat? = nil) throws(ImageError) -> [UInt8] {
        if image.width == 0 || image.height == 0 {
            throw .invalidArgument("cannot encode an empty \(image.width)×\(image.height) image")
        }
        switch format ?? image.sourceFormat ?? .png {
        case .png:
            return try encodePNG(image)
        case .jpeg:
            return try encodeJPEG(image)
        }
    }

    private func encodePNG(_ image: PixelImage) throws(ImageError) -> [UInt8] {
        try encoded(format: .png) { output, size, text, capacity in
            image.pixels.withUnsafeBufferPointer { pixels in
                pcodec_png_encode(pixels.baseAddress, UInt32(image.width), UInt32(image.height),
                                  UInt32(image.layout.channelCount), image.bytesPerRow,
                                  options.pngFast ? 1 : 0, output, size, text, capacity)
            }
        }
    }

    private func encodeJPEG(_ image: PixelImage) throws(ImageError) -> [UInt8] {
        guard (1...100).contains(options.jpegQuality) else {
            throw .invalidArgument("JPEG quality \(options.jpegQuality) is outside 1...100")
        }
        let opaque = image.flattened()
        return try encoded(format: .jpeg) { output, size, text, capacity in
            opaque.pixels.withUnsafeBufferPointer { pixels in
                pcodec_jpeg_encode(pixels.baseAddress, UInt32(opaque.width), UInt32(opaque.height),
                                   UInt32(opaque.layout.channelCount), opaque.bytesPerRow,
                                   Int32(options.jpegQuality), options.jpegSubsamplesChroma ? 1 : 0,
                                   options.jpegProgressive ? 1 : 0, output, size, text, capacity)
            }
        }
    }

    /// Runs a shim that returns a malloc'ed buffer, and copies it into an array.
    private func encoded(
        format: ImageFormat,
        _ shim: (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>, UnsafeMutablePointer<Int>,
                 UnsafeMutablePointer<CChar>, Int) -> pcodec_status
    ) throws(ImageError) -> [UInt8] {
        var output: UnsafeMutablePointer<UInt8>?
        var size = 0
        var message = CodecMessage()
        let status = message.withBuffer { text, capacity in shim(&output, &size, text, capacity) }
        defer { pcodec_free(output) }
        try ImageError.check(status, message, format: format)
        return Array(UnsafeBufferPointer(start: output, count: size))
    }
}
