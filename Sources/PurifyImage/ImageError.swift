/// Why an image could not be read, decoded or encoded.
///
/// Every error has a ``code`` from a closed set, whose ``Code/name`` is a stable string for
/// machine-readable reports (`"truncated"`, `"too_large"`, …), and a human-readable ``message``.
public struct ImageError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure: `error.code == .truncated`.
    public enum Code: String, Sendable, Hashable, CustomStringConvertible {
        /// The input has no bytes at all.
        case empty
        /// The data ends before the image does.
        case truncated
        /// The data is malformed: bad markers, bad Huffman codes, a CRC mismatch, …
        case corrupt
        /// A format or variant this module does not decode (GIF, WebP, 12-bit JPEG, …).
        case unsupported
        /// The input exceeds the ``DecodeLimits`` (bytes, pixels or side length).
        case tooLarge = "too_large"
        /// The file could not be opened or read.
        case io
        /// Memory for decoding or encoding could not be allocated.
        case outOfMemory = "out_of_memory"
        /// The caller passed a value outside its documented range (e.g. a JPEG quality of 0).
        case invalidArgument = "invalid_argument"
        /// The encoder failed for a reason of its own.
        case encodingFailed = "encoding_failed"

        /// The stable snake_case name used in JSON reports, e.g. `"too_large"`.
        public var name: String { rawValue }

        public var description: String { rawValue }
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
