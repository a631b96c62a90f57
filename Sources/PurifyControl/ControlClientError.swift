public import PurifySystem

/// Why a ``ControlClient`` exchange failed: a named code, a message for humans and, where the
/// daemon answered with an error, that error.
public struct ControlClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, as a value to compare against.
    public enum Code: String, Sendable, Hashable, CustomStringConvertible {
        /// Nothing exists at the socket path (ENOENT, ENOTDIR): the daemon is not running, or
        /// listens elsewhere.
        case socketMissing
        /// The socket or a directory above it may not be opened by this user (EACCES, EPERM).
        case permissionDenied
        /// Something is at the path but nobody accepts connections on it (ECONNREFUSED): a
        /// stale socket of a daemon that died, or not a socket at all.
        case connectionRefused
        /// The daemon closed the connection without replying (it is shutting down).
        case connectionClosed
        /// No complete reply came within the client's timeout.
        case timeout
        /// The reply is not a reply: not JSON, no `ok`, another request's `id`, or over the
        /// client's length cap.
        case malformedReply
        /// The daemon answered with an error; ``ControlClientError/daemonError`` holds it.
        case daemonError
        /// The socket path does not fit in a `sockaddr_un` (107 bytes at most).
        case invalidSocketPath
        /// Another system call failed; ``ControlClientError/errno`` says why.
        case systemCall

        public var description: String { rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// A description for humans.
    public var message: String
    /// The errno of the failed system call, where one failed.
    public var errno: Errno?
    /// The daemon's error reply, for ``Code/daemonError``.
    public var daemonError: ControlError?

    public init(code: Code, message: String, errno: Errno? = nil, daemonError: ControlError? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
        self.daemonError = daemonError
    }

    /// The daemon's error reply as a client error.
    public static func daemon(_ error: ControlError) -> ControlClientError {
        ControlClientError(code: .daemonError, message: error.description, daemonError: error)
    }

    public var description: String { message }
}
