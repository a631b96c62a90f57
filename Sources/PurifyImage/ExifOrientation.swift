/// The EXIF Orientation tag (0x0112): how the stored pixels are to be transformed for display.
/// The raw value is the tag's value, 1...8.
public enum ExifOrientation: Int, Hashable, Sendable, CaseIterable {
    /// 1: stored as displayed.
    case identity = 1
    /// 2: mirrored left to right.
    case flipHorizontal = 2
    /// 3: rotated by 180°.
    case rotate180 = 3
    /// 4: mirrored top to bottom.
    case flipVertical = 4
    /// 5: mirrored along the top-left to bottom-right diagonal.
    case transpose = 5
    /// 6: to be rotated 90° clockwise for display.
    case rotate90 = 6
    /// 7: mirrored along the top-right to bottom-left diagonal.
    case transverse = 7
    /// 8: to be rotated 90° counter-clockwise (270° clockwise) for display.
    case rotate270 = 8

    /// Whether displaying swaps width and height.
    public var swapsDimensions: Bool { rawValue >= 5 }

    /// The orientation in a JPEG's EXIF (APP1) segment, or `.identity` when there is none or it
    /// cannot be read. Only the segments before the first scan are looked at.
    static func inJPEG(_ bytes: UnsafeRawBufferPointer) -> ExifOrientation {
        var offset = 2  // after SOI
        while offset + 4 <= bytes.count {
            guard bytes[offset] == 0xFF else { return .identity }
            let marker = bytes[offset + 1]
            switch marker {
            case 0xFF:  // fill byte
                offset += 1
                continue
            case 0x01, 0xD0...0xD8:  // markers without a length
                offset += 2
                continue
            case 0xD9, 0xDA:  // EOI, SOS: no metadata comes after this point
                return .identity
            default:
                break
            }
            let length = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            let end = offset + 2 + length
            guard length >= 2, end <= bytes.count else { return .identity }
            let payload = UnsafeRawBufferPointer(rebasing: bytes[(offset + 4)..<end])
            let exifHeader: [UInt8] = [0x45, 0x78, 0x69, 0x66, 0, 0]  // "Exif\0\0"
            if marker == 0xE1 && payload.starts(with: exifHeader) {
                let tiff = UnsafeRawBufferPointer(rebasing: payload[exifHeader.count...])
                return inTIFF(tiff) ?? .identity
            }
            offset = end
        }
        return .identity
    }

    /// The orientation in a PNG's eXIf chunk, or `.identity` when there is none before the
    /// image data or it cannot be read.
    static func inPNG(_ bytes: UnsafeRawBufferPointer) -> ExifOrientation {
        var offset = 8  // after the signature
        while offset + 8 <= bytes.count {
            let length = (0..<4).reduce(0) { $0 << 8 | Int(bytes[offset + $1]) }
            let type = Array(bytes[(offset + 4)..<(offset + 8)])
            let end = offset + 8 + length
            guard end + 4 <= bytes.count, type != Array("IDAT".utf8) else { return .identity }
            if type == Array("eXIf".utf8) {
                return inTIFF(UnsafeRawBufferPointer(rebasing: bytes[(offset + 8)..<end])) ?? .identity
            }
            offset = end + 4
        }
        return .identity
    }

    /// The Orientation entry of IFD0 of a TIFF structure (the body of an EXIF block).
    static func inTIFF(_ tiff: UnsafeRawBufferPointer) -> ExifOrientation? {
        guard tiff.count >= 8 else { return nil }
        let littleEndian: Bool
        switch (tiff[0], tiff[1]) {
        case (0x49, 0x49): littleEndian = true
        case (0x4D, 0x4D): littleEndian = false
        default: return nil
        }
        func uint16(at offset: Int) -> Int? {
            guard offset >= 0, offset + 2 <= tiff.count else { return nil }
            let (a, b) = (Int(tiff[offset]), Int(tiff[offset + 1]))
            return littleEndian ? a | b << 8 : a << 8 | b
        }
        func uint32(at offset: Int) -> Int? {
            guard let low = uint16(at: littleEndian ? offset : offset + 2),
                  let high = uint16(at: littleEndian ? offset + 2 : offset) else { return nil }
            return high << 16 | low
        }
        let orientationTag = 0x0112, shortType = 3, entrySize = 12
        guard uint16(at: 2) == 42, let ifd = uint32(at: 4), let count = uint16(at: ifd) else {
            return nil
        }
        for index in 0..<count {
            let entry = ifd + 2 + index * entrySize
            guard let tag = uint16(at: entry) else { return nil }
            if tag == orientationTag {
                guard uint16(at: entry + 2) == shortType, let value = uint16(at: entry + 8) else {
                    return nil
                }
                return ExifOrientation(rawValue: value)
            }
        }
        return nil
    }
}

extension PixelImage {
    /// The image as displayed under an EXIF orientation (rotated and/or mirrored).
    public func oriented(_ orientation: ExifOrientation) -> PixelImage {
        if orientation == .identity { return self }
        let (w, h) = (width, height)
        let (outWidth, outHeight) = orientation.swapsDimensions ? (h, w) : (w, h)
        let channels = layout.channelCount
        return PixelImage(width: outWidth, height: outHeight, layout: layout,
                          sourceFormat: sourceFormat) { output in
            pixels.withUnsafeBufferPointer { input in
                for y in 0..<outHeight {
                    // Source pixel index of output (0, y), and its step per output column.
                    let (start, step): (Int, Int) = switch orientation {
                    case .identity: (y * w, 1)
                    case .flipHorizontal: (y * w + w - 1, -1)
                    case .rotate180: ((h - 1 - y) * w + w - 1, -1)
                    case .flipVertical: ((h - 1 - y) * w, 1)
                    case .transpose: (y, w)
                    case .rotate90: ((h - 1) * w + y, -w)
                    case .transverse: ((h - 1) * w + w - 1 - y, -w)
                    case .rotate270: (w - 1 - y, w)
                    }
                    var source = start * channels
                    var target = y * outWidth * channels
                    for _ in 0..<outWidth {
                        for channel in 0..<channels {
                            output[target + channel] = input[source + channel]
                        }
                        source += step * channels
                        target += channels
                    }
                }
            }
        }
    }
}
