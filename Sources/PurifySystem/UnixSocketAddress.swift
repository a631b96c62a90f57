#if canImport(Glibc)
public import Glibc
#endif

/// A `sockaddr_un` for a path, or for Linux's abstract namespace when the path starts with `@`
/// (as `$NOTIFY_SOCKET` may).
public struct UnixSocketAddress: Sendable {
    private var storage = sockaddr_un()
    private let length: socklen_t

    /// The address of `path`: 1 to 107 bytes, no NUL; refused with ENAMETOOLONG or EINVAL,
    /// `call` naming what would have used it.
    public init(path: String, for call: String) throws(SystemError) {
        var bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: storage.sun_path)
        guard !bytes.isEmpty, !bytes.contains(0) else {
            throw SystemError(call, path: path, errno: .invalidArgument)
        }
        guard bytes.count < capacity else { throw SystemError(call, path: path, errno: .fileNameTooLong) }
        let abstract = bytes[0] == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        storage.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &storage.sun_path) { raw in
            raw.copyBytes(from: bytes)
            if !abstract { raw[bytes.count] = 0 }
        }
        // An abstract address's length covers exactly its bytes; a path's includes the NUL.
        length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
    }

    /// Calls `body` with the address as `bind`, `connect` and `sendto` take it.
    public func withSocketAddress<Result, Failure: Error>(
        _ body: (UnsafePointer<sockaddr>, socklen_t) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        var address = storage
        return try withUnsafePointer(to: &address) { pointer throws(Failure) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address throws(Failure) in try body(address, length) }
        }
    }
}
