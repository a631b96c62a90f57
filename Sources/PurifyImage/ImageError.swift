/// Why an image could not be read, decoded or encoded.
///
/// Every error has a ``code`` from a closed set, whose ``Code/name`` is a stable string for
/// machine-readable reports (`"truncated"`, `"too_large"`, …), and a human-readable ``message``.
public struct ImageError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure. Compare with the static members: `error.code == .truncated`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: String, Hashable, Sendable {
            case empty
            case truncated
            case corrupt
            case unsupported
            case tooLarge = "too_large"
            case io
            case outOfMemory = "out_of_memory"
            case invalidArgument = "invalid_argument"
            case encodingFailed = "encoding_failed"
        }

        private let backing: Backing

        private init(_ backing: Backing) {
            self.backing = backing
        }

        /// The input has no bytes at all.
        public static let empty = Code(.empty)
        /// The data ends before the image does.
        public static let truncated = Code(.truncated)
        /// The data is malformed: bad markers, bad Huffman codes, a CRC mismatch, …
        public static let corrupt = Code(.corrupt)
        /// A format or variant this module does not decode (GIF, WebP, 12-bit JPEG, …).
        public static let unsupported = Code(.unsupported)
        /// The input exceeds the ``DecodeLimits`` (bytes, pixels or side length).
        public static let tooLarge = Code(.tooLarge)
        /// The file could not be opened or read.
        public static let io = Code(.io)
        /// Memory for decoding or encoding could not be allocated.
        public static let outOfMemory = Code(.outOfMemory)
        /// The caller passed a value outside its documented range (e.g. a JPEG quality of 0).
        public static let invalidArgument = Code(.invalidArgument)
        /// The encoder failed for a reason of its own.
        public static let encodingFailed = Code(.encodingFailed)

        /// The stable snake_case name used in JSON reports, e.g. `"too_large"`.
        public var name: String { backing.rawValue }

        public var description: String { name }
    }

    /// The kind of failure.
    public let code: Code
    /// What went wrong, for people (often the codec library's own words).
    public let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    static func empty(_ message: String) -> ImageError { ImageError(.empty, message) }
    static func truncated(_ message: String) -> ImageError { ImageError(.truncated, message) }
    static func corrupt(_ message: String) -> ImageError { ImageError(.corrupt, message) }
    static func unsupported(_ message: String) -> ImageError { ImageError(.unsupported, message) }
    static func tooLarge(_ message: String) -> ImageError { ImageError(.tooLarge, message) }
    static func io(_ message: String) -> ImageError { ImageError(.io, message) }
    static func outOfMemory(_ message: String) -> ImageError { ImageError(.outOfMemory, message) }
    static func invalidArgument(_ message: String) -> ImageError {
        ImageError(.invalidArgument, message)
    }
    static func encodingFailed(_ message: String) -> ImageError {
        ImageError(.encodingFailed, message)
    }

    public var description: String { "\(code.name): \(message)" }
}
