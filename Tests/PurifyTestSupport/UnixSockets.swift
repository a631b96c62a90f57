public import Glibc
import PurifySystem

/// Unix sockets for tests that play a client, a daemon or systemd; the caller closes them.
public enum UnixSockets {
    /// A socket of `type` (`SOCK_STREAM`, `SOCK_DGRAM`) connected to `path`, its reads timing out
    /// after `receiveTimeout`.
    public static func connected(to path: String, type: __socket_type = SOCK_STREAM, receiveTimeout: Duration = .seconds(10)) throws -> Int32 {
        let descriptor = try SystemCall.retrying("socket", path: path) { socket(AF_UNIX, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do {
            let address = try UnixSocketAddress(path: path, for: "connect")
            try SystemCall.retrying("connect", path: path) { address.withSocketAddress { connect(descriptor, $0, $1) } }
            setReceiveTimeout(descriptor, receiveTimeout)
            return descriptor
        } catch {
            close(descriptor)
            throw error
        }
    }

    /// A socket of `type` bound at `path`, listening with `backlog` when one is given, its reads
    /// timing out after `receiveTimeout`.
    public static func bound(at path: String, type: __socket_type = SOCK_STREAM, backlog: Int32? = nil,
                             receiveTimeout: Duration = .seconds(10)) throws -> Int32 {
        let descriptor = try SystemCall.retrying("socket", path: path) { socket(AF_UNIX, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do {
            let address = try UnixSocketAddress(path: path, for: "bind")
            try SystemCall.retrying("bind", path: path) { address.withSocketAddress { bind(descriptor, $0, $1) } }
            if let backlog { try SystemCall.retrying("listen", path: path) { listen(descriptor, backlog) } }
            setReceiveTimeout(descriptor, receiveTimeout)
            return descriptor
        } catch {
            close(descriptor)
            throw error
        }
    }

    private static func setReceiveTimeout(_ descriptor: Int32, _ timeout: Duration) {
        let (seconds, attoseconds) = timeout.components
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }
}

/// A daemon that listens and never answers: a stream socket listening with `backlog` in a
/// temporary folder of its own, closed and removed when the value goes away.
public final class SilentListener: Sendable {
    private let directory: TemporaryDirectory
    private let descriptor: Int32
    /// The socket's path.
    public let path: String

    public init(backlog: Int32 = 8) throws {
        directory = try TemporaryDirectory()
        path = directory.path + "/silent.sock"
        descriptor = try UnixSockets.bound(at: path, backlog: backlog)
    }

    deinit { close(descriptor) }
}
