#if canImport(Glibc)
internal import Glibc
#endif

/// The listening sockets systemd passes to a socket-activated service (sd_listen_fds(3)):
/// `LISTEN_PID` names this process, `LISTEN_FDS` counts descriptors from 3 on.
public enum SystemdListenSockets {
    /// The first descriptor systemd passes.
    static let firstDescriptor: Int32 = 3

    /// Why no socket could be taken.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Takes the one listening stream socket systemd passed (descriptor 3), marks it
    /// close-on-exec and removes `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from the
    /// environment, so that children do not take it too.
    ///
    /// - Throws: ``Failure`` when systemd passed none, passed them to another process, passed
    ///   more than one, or passed something that is not a listening stream socket.
    public static func takeStreamSocket() throws(Failure) -> Int32 {
        defer {
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
        }
        guard let pidText = getenv("LISTEN_PID").map({ String(cString: $0) }), let countText = getenv("LISTEN_FDS").map({ String(cString: $0) }) else {
            throw Failure(description: "listen = \"systemd\", but systemd passed no socket (LISTEN_FDS is not set): start purifyd-http.socket, or listen on an address")
        }
        guard Int32(pidText) == getpid() else {
            throw Failure(description: "LISTEN_PID \(pidText) is not this process (\(getpid()))")
        }
        guard Int(countText) == 1 else {
            throw Failure(description: "systemd passed \(countText) sockets; the HTTP API takes exactly one (one ListenStream= in purifyd-http.socket)")
        }
        let descriptor = firstDescriptor
        var type: Int32 = 0
        var listening: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_TYPE, &type, &length) == 0 else {
            throw Failure(description: "descriptor \(descriptor) from systemd is not a socket")
        }
        length = socklen_t(MemoryLayout<Int32>.size)
        guard type == Int32(SOCK_STREAM.rawValue), getsockopt(descriptor, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0, listening != 0 else {
            throw Failure(description: "descriptor \(descriptor) from systemd is not a listening stream socket")
        }
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        return descriptor
    }
}
