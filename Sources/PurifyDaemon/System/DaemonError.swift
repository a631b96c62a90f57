/// An error of the daemon's own: a named code and a message for humans. A failed system call
/// is a `SystemError` instead, from the shared system layer.
public struct DaemonError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, as a value to compare against.
    public enum Code: String, Sendable, Hashable, CustomStringConvertible {
        /// A spool rename found its destination taken by a file the daemon did not expect there.
        case spoolConflict
        /// Another live process already listens on the control socket path.
        case controlSocketInUse
        /// A spool journal entry could not be read back.
        case malformedJournal
        /// Directories the spool renames files between are on different mounts.
        case crossMount
        /// A service's `run()` was called a second time.
        case alreadyStarted
        /// An input is not a regular file or is over the size limit.
        case inputRejected

        public var description: String { rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// A description for logs and humans.
    public var message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
