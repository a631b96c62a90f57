internal import ArgumentParser
internal import PurifyControl

/// The sysexits(3) statuses purifyctl exits with (argument-parser exits 64, EX_USAGE, on a usage
/// error by itself).
enum ExitStatus {
    /// The daemon answered with an error no other status describes.
    static let daemonFailure = ExitCode(1)
    static let usage = ExitCode(64)
    /// EX_DATAERR: the daemon rejected an argument (an inbox it does not have).
    static let invalidArgument = ExitCode(65)
    /// EX_UNAVAILABLE: no daemon to talk to.
    static let unavailable = ExitCode(69)
    /// EX_SOFTWARE: the reply is not a reply, or client and daemon disagree on the protocol.
    static let software = ExitCode(70)
    /// EX_OSERR: a system call failed for another reason.
    static let systemError = ExitCode(71)
    /// EX_TEMPFAIL: no reply in time, or the daemon is busy; trying again may work.
    static let temporaryFailure = ExitCode(75)
    /// EX_NOPERM: the socket or the daemon refused this user.
    static let permissionDenied = ExitCode(77)

    static func forClientError(_ error: ControlClientError) -> ExitCode {
        switch error.code {
        case .socketMissing, .connectionRefused, .connectionClosed: unavailable
        case .permissionDenied: permissionDenied
        case .timeout: temporaryFailure
        case .malformedReply: software
        case .invalidSocketPath: usage
        case .daemonError: error.daemonError.map(forDaemonError) ?? daemonFailure
        case .systemCall: systemError
        }
    }

    static func forDaemonError(_ error: ControlError) -> ExitCode {
        switch error.code {
        case ControlError.invalidArgument: invalidArgument
        case ControlError.busy, ControlError.readTimeout: temporaryFailure
        case ControlError.permissionDenied: permissionDenied
        case ControlError.malformedRequest, ControlError.unknownCommand, ControlError.lineTooLong: software
        default: daemonFailure
        }
    }
}
