import PurifyImage

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Fixtures written by Fixtures/make_fixtures.py, and the formulas their pixels follow.
enum Fixtures {
    static let width = 13
    static let height = 7

    static let directory: String = {
        let file = "\(#filePath)"
        return String(file[..<file.lastIndex(of: "/")!]) + "/Fixtures"
    }()

    static func path(_ name: String) -> String { "\(directory)/\(name)" }

    static func bytes(_ name: String) throws -> [UInt8] {
        try readFile(path(name))
    }

    static func sample8(_ x: Int, _ y: Int, _ c: Int) -> UInt8 {
        UInt8((x * 37 + y * 101 + c * 59 + 11) % 256)
    }

    static func sample16(_ x: Int, _ y: Int, _ c: Int) -> Int {
        (x * 9973 + y * 27011 + c * 4099 + 12345) % 65536
    }

    static func paletteEntry(_ index: Int) -> [UInt8] {
        [UInt8(index * 16), UInt8(255 - index * 16), UInt8((index * 73) % 256)]
    }

    static func paletteIndex(_ x: Int, _ y: Int) -> Int { (x + 3 * y) % 16 }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
}

func readFile(_ path: String) throws -> [UInt8] {
    guard let file = fopen(path, "rb") else { throw TestFailure(description: "cannot open \(path)") }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = fread(&chunk, 1, chunk.count, file)
        if count == 0 { break }
        bytes += chunk[..<count]
    }
    return bytes
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    guard let file = fopen(path, "wb") else { throw TestFailure(description: "cannot create \(path)") }
    defer { fclose(file) }
    guard fwrite(bytes, 1, bytes.count, file) == bytes.count else {
        throw TestFailure(description: "cannot write \(path)")
    }
}

/// A fresh directory under /tmp, removed by the caller with `removeDirectory`.
func makeTemporaryDirectory() throws -> String {
    var template = Array("/tmp/purifyimage-tests-XXXXXX".utf8CString)
    guard mkdtemp(&template) != nil else { throw TestFailure(description: "mkdtemp failed") }
    return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func removeDirectory(_ path: String, files: [String]) {
    for file in files { unlink("\(path)/\(file)") }
    rmdir(path)
}

/// A deterministic test image with every pixel distinct enough to catch stride and channel bugs.
func patternImage(width: Int, height: Int, layout: ChannelLayout) -> PixelImage {
    let channels = layout.channelCount
    var pixels = [UInt8](repeating: 0, count: width * height * channels)
    for y in 0..<height {
        for x in 0..<width {
            for c in 0..<channels {
                pixels[(y * width + x) * channels + c] = UInt8((x * 7 + y * 13 + c * 71) % 256)
            }
        }
    }
    return PixelImage(width: width, height: height, layout: layout, pixels: pixels)
}

/// A smooth image (JPEG-friendly): gradients per channel.
func smoothImage(width: Int, height: Int, layout: ChannelLayout) -> PixelImage {
    let channels = layout.channelCount
    var pixels = [UInt8](repeating: 0, count: width * height * channels)
    for y in 0..<height {
        for x in 0..<width {
            for c in 0..<channels {
                let value = (x * 255 / max(width - 1, 1) + y * 128 / max(height - 1, 1) + c * 40) / 2
                pixels[(y * width + x) * channels + c] = UInt8(min(value, 255))
            }
        }
    }
    return PixelImage(width: width, height: height, layout: layout, pixels: pixels)
}

/// The largest absolute difference between two images' bytes.
func maxDifference(_ a: PixelImage, _ b: PixelImage) -> Int {
    precondition(a.pixels.count == b.pixels.count)
    return zip(a.pixels, b.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
}

/// A JPEG with an EXIF APP1 segment carrying `orientation`, inserted right after SOI.
func insertingExifOrientation(_ orientation: Int, into jpeg: [UInt8], bigEndian: Bool) -> [UInt8] {
    func u16(_ v: Int) -> [UInt8] {
        bigEndian ? [UInt8(v >> 8), UInt8(v & 0xFF)] : [UInt8(v & 0xFF), UInt8(v >> 8)]
    }
    func u32(_ v: Int) -> [UInt8] {
        bigEndian ? u16(v >> 16) + u16(v & 0xFFFF) : u16(v & 0xFFFF) + u16(v >> 16)
    }
    var tiff: [UInt8] = bigEndian ? [0x4D, 0x4D] : [0x49, 0x49]
    tiff += u16(42) + u32(8)
    // IFD0 with two entries: an unrelated tag first (ImageWidth), then Orientation.
    tiff += u16(2)
    tiff += u16(0x0100) + u16(3) + u32(1) + u16(640) + u16(0)
    tiff += u16(0x0112) + u16(3) + u32(1) + u16(orientation) + u16(0)
    tiff += u32(0)
    let payload = Array("Exif".utf8) + [0, 0] + tiff
    let length = payload.count + 2
    let segment: [UInt8] = [0xFF, 0xE1, UInt8(length >> 8), UInt8(length & 0xFF)] + payload
    return Array(jpeg[..<2]) + segment + Array(jpeg[2...])
}

/// The offset of the first chunk of `type` in a PNG (its length field).
func pngChunkOffset(_ png: [UInt8], type: String) -> Int? {
    var offset = 8
    let tag = Array(type.utf8)
    while offset + 8 <= png.count {
        let length = png[offset..<(offset + 4)].reduce(0) { $0 << 8 | Int($1) }
        if Array(png[(offset + 4)..<(offset + 8)]) == tag { return offset }
        offset += 12 + length
    }
    return nil
}
