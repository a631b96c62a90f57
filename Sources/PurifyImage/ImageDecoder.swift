import CImageCodecs
import PurifySystem

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What an image's header says, read without decoding any pixels.
public struct ImageHeader: Hashable, Sendable {
    /// The format, from the magic bytes.
    public let format: ImageFormat
    /// Width of the decoded image (after orientation, where the decoder applies it).
    public let width: Int
    /// Height of the decoded image (after orientation, where the decoder applies it).
    public let height: Int
    /// Channel layout of the decoded pixels.
    public let layout: ChannelLayout
    /// The EXIF orientation found in the file (JPEG APP1 or PNG eXIf; `.identity` if none).
    public let orientation: ExifOrientation

    public init(format: ImageFormat, width: Int, height: Int, layout: ChannelLayout,
                orientation: ExifOrientation) {
        self.format = format
        self.width = width
        self.height = height
        self.layout = layout
        self.orientation = orientation
    }
}

/// Decodes PNG and JPEG from untrusted bytes, enforcing ``DecodeLimits`` before it allocates.
///
/// - The format comes from the magic bytes, never from a file name.
/// - JPEG: baseline and progressive; grayscale decodes to `.gray`, everything else to `.rgb`.
///   CMYK and YCCK are converted to RGB (Adobe-inverted CMYK recognised by its APP14 marker;
///   R = (255 − C)(255 − K)/255, no color management). libjpeg warnings, such as "Premature end
///   of JPEG file", are failures.
/// - PNG: every color type and bit depth; palette images decode to `.rgb`/`.rgba`, a tRNS
///   chunk becomes an alpha channel, 16-bit samples are scaled to 8 bits (v × 255 / 65535,
///   rounded). Samples are kept as stored: gAMA, cHRM, sRGB and iCCP are ignored, as Pillow
///   ignores them, so the pixels are those a PyTorch pipeline reading the file would see.
///   The whole chunk structure (lengths, CRCs, IEND) is checked.
/// - The EXIF orientation (JPEG APP1, PNG eXIf before the image data) is applied unless
///   ``appliesOrientation`` is false, so that the pixels are the image as viewers display it;
///   encoded output carries no EXIF and so displays the same way.
public struct ImageDecoder: Sendable {
    /// Bounds checked before decoding.
    public var limits: DecodeLimits
    /// Whether the EXIF orientation is applied to the decoded pixels.
    public var appliesOrientation: Bool

    public init(limits: DecodeLimits = .default, appliesOrientation: Bool = true) {
        self.limits = limits
        self.appliesOrientation = appliesOrientation
    }

    /// Reads the header only, checking the limits.
    public func readHeader(_ bytes: UnsafeRawBufferPointer) throws(ImageError) -> ImageHeader {
        try parseHeader(bytes).header
    }

    /// Reads the header only, checking the limits.
    public func readHeader(_ bytes: [UInt8]) throws(ImageError) -> ImageHeader {
        try bytes.withUnsafeImageBytes { buffer throws(ImageError) in try readHeader(buffer) }
    }

    /// Decodes a PNG or JPEG image.
    public func decode(_ bytes: UnsafeRawBufferPointer) throws(ImageError) -> PixelImage {
        let (header, info) = try parseHeader(bytes)
        let data = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var message = CodecMessage()
        var status = PCODEC_OK
        var expected = info
        let stored = PixelImage(width: Int(info.width), height: Int(info.height),
                                layout: header.layout, sourceFormat: header.format) { pixels in
            let stride = Int(info.width) * header.layout.channelCount
            status = message.withBuffer { text, capacity in
                switch header.format {
                case .jpeg:
                    pcodec_jpeg_decode(data, bytes.count, &expected, pixels.baseAddress, stride,
                                       text, capacity)
                case .png:
                    pcodec_png_decode(data, bytes.count, &expected, pixels.baseAddress, stride,
                                      text, capacity)
                }
            }
        }
        try ImageError.check(status, message, format: header.format)
        return appliesOrientation ? stored.oriented(header.orientation) : stored
    }

    /// Decodes a PNG or JPEG image.
    public func decode(_ bytes: [UInt8]) throws(ImageError) -> PixelImage {
        try bytes.withUnsafeImageBytes { buffer throws(ImageError) in try decode(buffer) }
    }

    /// Reads a regular file with ``readFile(atPath:followsSymlinks:)`` and decodes it. The file
    /// name plays no part in the format.
    ///
    /// - Parameter followsSymlinks: when false, a symbolic link is refused (`O_NOFOLLOW`), as a
    ///   spool directory should. FIFOs and other special files are refused without blocking.
    public func decodeFile(atPath path: String,
                           followsSymlinks: Bool = true) throws(ImageError) -> PixelImage {
        try decode(try readFile(atPath: path, followsSymlinks: followsSymlinks))
    }

    /// The bytes of a regular file, for callers that also hash or store them before calling
    /// ``decode(_:)-([UInt8])``: refused as `tooLarge` from its size alone beyond
    /// ``DecodeLimits/maxBytes``, as `io` when it cannot be read or is no regular file (a FIFO
    /// is refused without blocking; a symbolic link too, when `followsSymlinks` is false).
    public func readFile(atPath path: String,
                         followsSymlinks: Bool = true) throws(ImageError) -> [UInt8] {
        do throws(RegularFileReadError) {
            return try FileSystem.readRegularFile(atPath: path, maxBytes: limits.maxBytes, followsSymlinks: followsSymlinks)
        } catch {
            switch error {
            case .tooLarge(_, let bytes, _): try limits.check(byteCount: bytes)  // the decoder's own tooLarge
            case .symbolicLink, .notRegularFile: break
            case .failed(let failure): throw .io("cannot \(failure.call) \(path): \(failure.errno)")
            }
            throw .io(error.description)
        }
    }

    private func parseHeader(
        _ bytes: UnsafeRawBufferPointer
    ) throws(ImageError) -> (header: ImageHeader, info: pcodec_image_info) {
        if bytes.isEmpty { throw .empty("the input has no bytes") }
        try limits.check(byteCount: bytes.count)
        guard let format = ImageFormat.sniff(bytes) else {
            if Signature.isSignaturePrefix(bytes) {
                throw .truncated("the input ends inside the file signature (\(bytes.count) bytes)")
            }
            if let name = Signature.unsupportedFormatName(bytes) {
                throw .unsupported("\(name) images are not supported (only PNG and JPEG)")
            }
            throw .unsupported("not a PNG or JPEG image (unrecognized leading bytes)")
        }
        let data = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var info = pcodec_image_info()
        var message = CodecMessage()
        let status = message.withBuffer { text, capacity in
            switch format {
            case .jpeg: pcodec_jpeg_read_header(data, bytes.count, &info, text, capacity)
            case .png: pcodec_png_read_header(data, bytes.count, &info, text, capacity)
            }
        }
        try ImageError.check(status, message, format: format)
        let (width, height) = (Int(info.width), Int(info.height))
        try limits.check(width: width, height: height)
        guard let layout = ChannelLayout(channelCount: Int(info.channels)) else {
            throw .unsupported("\(info.channels) channels")
        }
        let orientation = switch format {
        case .jpeg: ExifOrientation.inJPEG(bytes)
        case .png: ExifOrientation.inPNG(bytes)
        }
        let swapped = appliesOrientation && orientation.swapsDimensions
        let header = ImageHeader(format: format, width: swapped ? height : width,
                                 height: swapped ? width : height, layout: layout,
                                 orientation: orientation)
        return (header, info)
    }
}

extension [UInt8] {
    /// `withUnsafeBytes` with the typed error preserved.
    func withUnsafeImageBytes<R>(
        _ body: (UnsafeRawBufferPointer) throws(ImageError) -> R
    ) throws(ImageError) -> R {
        let result = withUnsafeBytes { buffer in
            Result { () throws(ImageError) -> R in try body(buffer) }
        }
        return try result.get()
    }
}

/// A fixed buffer for the codec shims' failure messages.
struct CodecMessage {
    private var text = [CChar](repeating: 0, count: 256)

    mutating func withBuffer<R>(_ body: (UnsafeMutablePointer<CChar>, Int) -> R) -> R {
        text.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
    }

    var string: String {
        text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}

extension ImageError {
    /// Throws the error a codec shim's status stands for.
    static func check(_ status: pcodec_status, _ message: CodecMessage,
                      format: ImageFormat) throws(ImageError) {
        if status == PCODEC_OK { return }
        let name = format == .png ? "PNG" : "JPEG"
        let text = "\(name): \(message.string)"
        switch status {
        case PCODEC_TRUNCATED: throw .truncated(text)
        case PCODEC_CORRUPT: throw .corrupt(text)
        case PCODEC_UNSUPPORTED: throw .unsupported(text)
        case PCODEC_TOO_LARGE: throw .tooLarge(text)
        case PCODEC_OUT_OF_MEMORY: throw .outOfMemory(text)
        case PCODEC_INVALID_ARGUMENT: throw .invalidArgument(text)
        default: throw .encodingFailed(text)
        }
    }
}
