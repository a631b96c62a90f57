/// An error of the daemon's own: a named code and a message for humans. A failed system call
/// is a `SystemError` instead, from the shared system layer.
///
/// Shaped after swift-service-lifecycle's `ServiceGroupError`: a struct whose codes wrap a private
/// enum, so codes can be added without breaking anyone who switches over them.
public struct DaemonError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, as a value to compare against.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case spoolConflict
            case controlSocketInUse
            case malformedJournal
            case crossMount
            case alreadyStarted
            case inputRejected
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A spool rename found its destination taken by a file the daemon did not expect there.
        public static let spoolConflict = Code(.spoolConflict)
        /// Another live process already listens on the control socket path.
        public static let controlSocketInUse = Code(.controlSocketInUse)
        /// A spool journal entry could not be read back.
        public static let malformedJournal = Code(.malformedJournal)
        /// Directories the spool renames files between are on different mounts.
        public static let crossMount = Code(.crossMount)
        /// A service's `run()` was called a second time.
        public static let alreadyStarted = Code(.alreadyStarted)
        /// An input is not a regular file or is over the size limit.
        public static let inputRejected = Code(.inputRejected)

        public var description: String { base.rawValue }
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
