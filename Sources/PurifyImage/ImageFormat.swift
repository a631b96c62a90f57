/// An encoded image format this module reads and writes.
public enum ImageFormat: String, Hashable, Sendable, CaseIterable {
    case png
    case jpeg

    /// The conventional file name extension, without the dot.
    public var fileExtension: String {
        switch self {
        case .png: "png"
        case .jpeg: "jpg"
        }
    }

    /// The format named by the data's leading magic bytes, regardless of any file name.
    ///
    /// Returns `nil` when the bytes are no PNG or JPEG (see ``ImageDecoder`` for the errors).
    public static func sniff(_ bytes: UnsafeRawBufferPointer) -> ImageFormat? {
        if bytes.starts(with: Signature.png) { return .png }
        if bytes.starts(with: Signature.jpeg) { return .jpeg }
        return nil
    }
}

/// Magic bytes of the formats this module knows by sight.
enum Signature {
    static let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    static let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF]

    /// Formats recognised only to name them in an `unsupported` error.
    private static let others: [(name: String, offset: Int, magic: [UInt8])] = [
        ("GIF", 0, Array("GIF8".utf8)),
        ("WebP", 8, Array("WEBP".utf8)),
        ("BMP", 0, Array("BM".utf8)),
        ("TIFF", 0, [0x49, 0x49, 0x2A, 0x00]),
        ("TIFF", 0, [0x4D, 0x4D, 0x00, 0x2A]),
        ("AVIF", 4, Array("ftypavif".utf8)),
        ("HEIF", 4, Array("ftypheic".utf8)),
        ("JPEG 2000", 0, [0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20]),
        ("QOI", 0, Array("qoif".utf8)),
    ]

    /// The name of a known but unsupported format, if the bytes start like one.
    static func unsupportedFormatName(_ bytes: UnsafeRawBufferPointer) -> String? {
        for other in others where bytes.count >= other.offset + other.magic.count {
            if bytes[other.offset..<(other.offset + other.magic.count)].elementsEqual(other.magic) {
                return other.name
            }
        }
        return nil
    }

    /// Whether the bytes are a proper prefix of a PNG or JPEG signature (a file cut very short).
    static func isSignaturePrefix(_ bytes: UnsafeRawBufferPointer) -> Bool {
        [png, jpeg].contains { $0.count > bytes.count && $0.starts(with: bytes) }
    }
}
