import PurifyImage
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every error code, on crafted bad input.
struct ErrorTests {
    static func jpegBytes(progressive: Bool = false) throws -> [UInt8] {
        let options = EncodeOptions(jpegQuality: 90, jpegProgressive: progressive)
        return try ImageEncoder(options: options).encode(
            patternImage(width: 64, height: 48, layout: .rgb), as: .jpeg)
    }

    static func pngBytes() throws -> [UInt8] {
        try ImageEncoder().encode(patternImage(width: 64, height: 48, layout: .rgba), as: .png)
    }

    /// Runs `body` and returns the `ImageError` it threw.
    func imageError(_ body: () throws(ImageError) -> Void) -> ImageError? {
        do {
            try body()
            return nil
        } catch {
            return error
        }
    }

    func decodeError(_ bytes: [UInt8], limits: DecodeLimits = .default) -> ImageError? {
        imageError { () throws(ImageError) in _ = try ImageDecoder(limits: limits).decode(bytes) }
    }

    @Test func codesHaveStableNames() {
        let codes: [ImageError.Code] = [.empty, .truncated, .corrupt, .unsupported, .tooLarge, .io,
                                        .outOfMemory, .invalidArgument, .encodingFailed]
        #expect(codes.map(\.name) == ["empty", "truncated", "corrupt", "unsupported", "too_large",
                                      "io", "out_of_memory", "invalid_argument", "encoding_failed"])
    }

    @Test func zeroLengthIsEmpty() {
        let error = decodeError([])
        #expect(error?.code == .empty)
        #expect(error?.description.hasPrefix("empty: ") == true)
    }

    @Test(arguments: [false, true])
    func truncatedJPEG(progressive: Bool) throws {
        let bytes = try Self.jpegBytes(progressive: progressive)
        for length in [bytes.count - 2, bytes.count / 2, 40, 2] {
            let error = decodeError(Array(bytes[..<length]))
            #expect(error?.code == .truncated, "cut at \(length) of \(bytes.count): \(String(describing: error))")
        }
    }

    @Test func truncatedPNG() throws {
        let bytes = try Self.pngBytes()
        for length in [bytes.count - 4, bytes.count / 2, 20, 4] {
            let error = decodeError(Array(bytes[..<length]))
            #expect(error?.code == .truncated, "cut at \(length) of \(bytes.count): \(String(describing: error))")
        }
    }

    @Test func garbageIsUnsupported() {
        var state: UInt32 = 12345
        let garbage = (0..<1000).map { _ -> UInt8 in
            state = state &* 1_664_525 &+ 1_013_904_223
            return UInt8(truncatingIfNeeded: state >> 24)
        }
        #expect(decodeError(garbage)?.code == .unsupported)
        #expect(decodeError(Array("GIF89a".utf8) + garbage)?.message.contains("GIF") == true)
        #expect(decodeError(Array("RIFF\0\0\0\0WEBPVP8 ".utf8) + garbage)?.message.contains("WebP") == true)

        // Right magic, garbage after it.
        #expect(decodeError([0xFF, 0xD8, 0xFF] + garbage)?.code == .corrupt)
        #expect(decodeError(Array(Self.pngSignature) + garbage)?.code == .corrupt)
    }

    @Test func twelveBitJPEGIsUnsupported() throws {
        var bytes = try Self.jpegBytes()
        let sof = try #require((2..<(bytes.count - 1)).first { bytes[$0] == 0xFF && bytes[$0 + 1] == 0xC0 })
        bytes[sof + 4] = 12  // sample precision
        let error = decodeError(bytes)
        #expect(error?.code == .unsupported)
        #expect(error?.message.contains("precision") == true)
    }

    static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    @Test func corruptJPEGScanData() throws {
        var bytes = try Self.jpegBytes()
        // An RST marker where none may be, in the middle of the entropy-coded data.
        let middle = bytes.count / 2
        bytes[middle] = 0xFF
        bytes[middle + 1] = 0xD3
        #expect(decodeError(bytes)?.code == .corrupt)
    }

    @Test func corruptPNGChecksums() throws {
        let bytes = try Self.pngBytes()
        let idat = try #require(pngChunkOffset(bytes, type: "IDAT"))
        var badData = bytes
        badData[idat + 8 + 5] ^= 0x01  // a data byte; the CRC no longer matches
        let dataError = decodeError(badData)
        #expect(dataError?.code == .corrupt)
        #expect(dataError?.message.contains("CRC") == true)

        var badHeader = bytes
        badHeader[8 + 8 + 13] ^= 0xFF  // IHDR's CRC
        #expect(decodeError(badHeader)?.code == .corrupt)
    }

    @Test func hugeDimensionsFailBeforeAllocating() throws {
        // Decoding either would need gigabytes; only the header is read.
        let png = try Fixtures.bytes("huge_100000x100000.png")
        let pngError = decodeError(png)
        #expect(pngError?.code == .tooLarge)
        #expect(pngError?.message.contains("100000×100000") == true)
        #expect(imageError { () throws(ImageError) in _ = try ImageDecoder().readHeader(png) }?.code == .tooLarge)
        #expect(decodeError(try Fixtures.bytes("huge_60000x60000.jpg"))?.code == .tooLarge)
    }

    @Test func limitsAreEnforced() throws {
        let bytes = try Self.pngBytes()  // 64 × 48
        #expect(decodeError(bytes, limits: DecodeLimits(maxBytes: bytes.count - 1))?.code == .tooLarge)
        #expect(decodeError(bytes, limits: DecodeLimits(maxSide: 63))?.code == .tooLarge)
        #expect(decodeError(bytes, limits: DecodeLimits(maxPixels: 64 * 48 - 1))?.code == .tooLarge)
        #expect(decodeError(bytes, limits: DecodeLimits(maxBytes: bytes.count, maxPixels: 64 * 48,
                                                        maxSide: 64)) == nil)
    }

    @Test func filesAreSniffedNotNamed() throws {
        let directory = try makeTemporaryDirectory()
        let names = ["photo.jpg", "drawing.png", "noextension", "empty.png", "large.png"]
        defer { removeDirectory(directory, files: names) }
        let png = try Self.pngBytes()
        let jpeg = try Self.jpegBytes()
        try writeFile("\(directory)/photo.jpg", png)
        try writeFile("\(directory)/drawing.png", jpeg)
        try writeFile("\(directory)/noextension", png)
        try writeFile("\(directory)/empty.png", [])
        try writeFile("\(directory)/large.png", png)

        #expect(try ImageDecoder().decodeFile(atPath: "\(directory)/photo.jpg").sourceFormat == .png)
        #expect(try ImageDecoder().decodeFile(atPath: "\(directory)/drawing.png").sourceFormat == .jpeg)
        #expect(try ImageDecoder().decodeFile(atPath: "\(directory)/noextension")
                == (try ImageDecoder().decode(png)))
        #expect(try ImageDecoder().readFile(atPath: "\(directory)/noextension") == png)
        let decodeFile = { (path: String, limits: DecodeLimits) -> ImageError? in
            self.imageError { () throws(ImageError) in
                _ = try ImageDecoder(limits: limits).decodeFile(atPath: path)
            }
        }
        #expect(decodeFile("\(directory)/empty.png", .default)?.code == .empty)
        #expect(decodeFile("\(directory)/large.png", DecodeLimits(maxBytes: 100))?.code == .tooLarge)
        #expect(decodeFile("\(directory)/missing.png", .default)?.code == .io)
        #expect(decodeFile(directory, .default)?.code == .io)

        let link = "\(directory)/link.png"
        #expect(symlink("\(directory)/drawing.png", link) == 0)
        defer { unlink(link) }
        #expect(try ImageDecoder().decodeFile(atPath: link).sourceFormat == .jpeg)
        let linkError = imageError { () throws(ImageError) in
            _ = try ImageDecoder().decodeFile(atPath: link, followsSymlinks: false)
        }
        #expect(linkError?.code == .io)
        #expect(linkError?.message.contains("symbolic link") == true)

        let fifo = "\(directory)/fifo.png"
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        #expect(decodeFile(fifo, .default)?.code == .io)  // refused at once, not blocked
    }

    @Test func invalidEncoderArguments() {
        let image = patternImage(width: 4, height: 4, layout: .rgb)
        for quality in [0, 101] {
            let error = imageError { () throws(ImageError) in
                _ = try ImageEncoder(options: EncodeOptions(jpegQuality: quality)).encode(image, as: .jpeg)
            }
            #expect(error?.code == .invalidArgument)
        }
        let empty = PixelImage(width: 0, height: 3, layout: .gray, pixels: [])
        #expect(imageError { () throws(ImageError) in _ = try ImageEncoder().encode(empty) }?.code
                == .invalidArgument)
    }
}
