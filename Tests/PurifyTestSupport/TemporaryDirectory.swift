import Foundation
import Glibc

/// A fresh directory under /tmp, removed when the value is deinitialised.
public final class TemporaryDirectory: Sendable {
    public let path: String

    /// Creates `/tmp/<prefix>.XXXXXX`.
    public init(prefix: String = "purifyd-test") throws {
        var template = Array("/tmp/\(prefix).XXXXXX".utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw POSIXError(.init(rawValue: errno) ?? .EIO)
        }
        path = String(cString: created)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Creates `name` (and the folders above it) below the directory and returns its path.
    public func subdirectory(_ name: String) throws -> String {
        let subdirectory = path + "/" + name
        try FileManager.default.createDirectory(atPath: subdirectory, withIntermediateDirectories: true)
        return subdirectory
    }
}
