import PurifyImage
import Testing

/// Damaged variants of valid files must decode or fail with an `ImageError`, never crash; a
/// decoded image always matches its header.
struct MutationTests {
    static func sources() throws -> [(name: String, bytes: [UInt8])] {
        let image = patternImage(width: 40, height: 30, layout: .rgba)
        let progressive = EncodeOptions(jpegQuality: 80, jpegSubsamplesChroma: true, jpegProgressive: true)
        return [
            ("png", try ImageEncoder().encode(image)),
            ("jpeg", try ImageEncoder().encode(image, as: .jpeg)),
            ("progressive jpeg", try ImageEncoder(options: progressive).encode(image, as: .jpeg)),
            ("palette png", try Fixtures.bytes("palette4_trns.png")),
            ("cmyk jpeg", try Fixtures.bytes("cmyk.jpg")),
        ]
    }

    @Test func damagedFilesFailCleanly() throws {
        var random = SplitMix64(seed: 42)
        for source in try Self.sources() {
            var failures: [String: Int] = [:]
            for _ in 0..<300 {
                var bytes = source.bytes
                switch random.next() % 4 {
                case 0:  // flip a few bytes
                    for _ in 0...(random.next() % 4) {
                        bytes[Int(random.next() % UInt64(bytes.count))] ^= UInt8(truncatingIfNeeded: random.next() | 1)
                    }
                case 1:  // cut
                    bytes.removeLast(Int(random.next() % UInt64(bytes.count)))
                case 2:  // overwrite a run with one value
                    let start = Int(random.next() % UInt64(bytes.count))
                    let value = UInt8(truncatingIfNeeded: random.next())
                    for index in start..<min(bytes.count, start + 16) { bytes[index] = value }
                default:  // duplicate a slice
                    let start = Int(random.next() % UInt64(bytes.count))
                    let end = min(bytes.count, start + Int(random.next() % 64))
                    bytes.insert(contentsOf: bytes[start..<end], at: start)
                }
                do {
                    let header = try ImageDecoder().readHeader(bytes)
                    let image = try ImageDecoder().decode(bytes)
                    #expect(image.width == header.width && image.height == header.height)
                    #expect(image.layout == header.layout)
                } catch {
                    failures[error.code.name, default: 0] += 1
                }
            }
            #expect(!failures.isEmpty, "\(source.name): no mutation was detected")
            #expect(Set(failures.keys).isSubset(of: ["truncated", "corrupt", "unsupported", "too_large"]),
                    "\(source.name): \(failures)")
        }
    }
}

/// A small deterministic generator (SplitMix64).
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
