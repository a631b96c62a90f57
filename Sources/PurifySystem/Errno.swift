#if canImport(Glibc)
internal import Glibc
#endif

/// A POSIX error number with names for the values the daemon, the pipeline and the control
/// client act on, after apple/swift-system's `Errno`: compare against ``Errno/noSpace`` rather
/// than a bare `ENOSPC`.
public struct Errno: RawRepresentable, Error, Hashable, Sendable, CustomStringConvertible {
    /// The raw value `errno` held.
    public let rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's `errno` now.
    public static var current: Errno { Errno(rawValue: Glibc.errno) }

    /// The system's words for it (`strerror`).
    public var description: String { String(cString: strerror(rawValue)) }

    /// EPERM
    public static let notPermitted = Errno(rawValue: EPERM)
    /// ENOENT
    public static let noSuchFileOrDirectory = Errno(rawValue: ENOENT)
    /// EINTR: retried by ``SystemCall/retrying(_:path:_:)``.
    public static let interrupted = Errno(rawValue: EINTR)
    /// EIO
    public static let ioError = Errno(rawValue: EIO)
    /// EAGAIN (also EWOULDBLOCK on Linux)
    public static let wouldBlock = Errno(rawValue: EAGAIN)
    /// ENOMEM
    public static let noMemory = Errno(rawValue: ENOMEM)
    /// EACCES
    public static let permissionDenied = Errno(rawValue: EACCES)
    /// EEXIST
    public static let fileExists = Errno(rawValue: EEXIST)
    /// EXDEV: a rename across mounts.
    public static let crossDevice = Errno(rawValue: EXDEV)
    /// ENOTDIR
    public static let notDirectory = Errno(rawValue: ENOTDIR)
    /// EINVAL
    public static let invalidArgument = Errno(rawValue: EINVAL)
    /// ENFILE
    public static let tooManyOpenFilesInSystem = Errno(rawValue: ENFILE)
    /// EMFILE
    public static let tooManyOpenFiles = Errno(rawValue: EMFILE)
    /// EFBIG
    public static let fileTooLarge = Errno(rawValue: EFBIG)
    /// ENOSPC
    public static let noSpace = Errno(rawValue: ENOSPC)
    /// EROFS
    public static let readOnlyFileSystem = Errno(rawValue: EROFS)
    /// EPIPE
    public static let brokenPipe = Errno(rawValue: EPIPE)
    /// ENAMETOOLONG
    public static let fileNameTooLong = Errno(rawValue: ENAMETOOLONG)
    /// ELOOP: also what `O_NOFOLLOW` gives for a symbolic link.
    public static let tooManySymbolicLinkLevels = Errno(rawValue: ELOOP)
    /// ENOBUFS
    public static let noBufferSpace = Errno(rawValue: ENOBUFS)
    /// EISCONN
    public static let socketIsConnected = Errno(rawValue: EISCONN)
    /// ECONNREFUSED
    public static let connectionRefused = Errno(rawValue: ECONNREFUSED)
    /// ECONNRESET
    public static let connectionReset = Errno(rawValue: ECONNRESET)
    /// EALREADY
    public static let alreadyInProcess = Errno(rawValue: EALREADY)
    /// EINPROGRESS
    public static let nowInProgress = Errno(rawValue: EINPROGRESS)
    /// EDQUOT
    public static let diskQuotaExceeded = Errno(rawValue: EDQUOT)
}

/// A failed system call: which call, on what, and the ``Errno`` it set.
public struct SystemError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The call that failed (`"open"`, `"renameat2"`, …).
    public var call: String
    /// What it acted on: a path, `"a -> b"` for a rename, or nil.
    public var path: String?
    /// Why it failed.
    public var errno: Errno

    public init(_ call: String, path: String? = nil, errno: Errno) {
        self.call = call
        self.path = path
        self.errno = errno
    }

    public var description: String {
        "\(call)\(path.map { " \($0)" } ?? ""): \(errno)"
    }
}

/// The one way the shared layer makes a system call: EINTR is retried, -1 becomes a
/// ``SystemError`` naming the call and what it acted on.
public enum SystemCall {
    @discardableResult
    public static func retrying<Result: FixedWidthInteger>(
        _ call: String, path: String? = nil, _ body: () -> Result
    ) throws(SystemError) -> Result {
        while true {
            let result = body()
            if result != -1 { return result }
            let error = Errno.current
            if error != .interrupted { throw SystemError(call, path: path, errno: error) }
        }
    }
}
