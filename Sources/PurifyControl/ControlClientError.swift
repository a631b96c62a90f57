public import PurifySystem

/// Why a ``ControlClient`` exchange failed: a named code, a message for humans and, where the
/// daemon answered with an error, that error.
///
/// Shaped after swift-service-lifecycle's `ServiceGroupError`: a struct whose codes wrap a private
/// enum, so codes can be added without breaking anyone who switches over them.
public struct ControlClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, as a value to compare against.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case socketMissing
            case permissionDenied
            case connectionRefused
            case connectionClosed
            case timeout
            case malformedReply
            case daemonError
            case invalidSocketPath
            case systemCall
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// Nothing exists at the socket path (ENOENT, ENOTDIR): the daemon is not running, or
        /// listens elsewhere.
        public static let socketMissing = Code(.socketMissing)
        /// The socket or a directory above it may not be opened by this user (EACCES, EPERM).
        public static let permissionDenied = Code(.permissionDenied)
        /// Something is at the path but nobody accepts connections on it (ECONNREFUSED): a
        /// stale socket of a daemon that died, or not a socket at all.
        public static let connectionRefused = Code(.connectionRefused)
        /// The daemon closed the connection without replying (it is shutting down).
        public static let connectionClosed = Code(.connectionClosed)
        /// No complete reply came within the client's timeout.
        public static let timeout = Code(.timeout)
        /// The reply is not a reply: not JSON, no `ok`, another request's `id`, or over the
        /// client's length cap.
        public static let malformedReply = Code(.malformedReply)
        /// The daemon answered with an error; ``ControlClientError/daemonError`` holds it.
        public static let daemonError = Code(.daemonError)
        /// The socket path does not fit in a `sockaddr_un` (107 bytes at most).
        public static let invalidSocketPath = Code(.invalidSocketPath)
        /// Another system call failed; ``ControlClientError/errno`` says why.
        public static let systemCall = Code(.systemCall)

        public var description: String { base.rawValue }
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
