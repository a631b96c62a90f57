#if canImport(Glibc)
internal import Glibc
#endif
public import ServiceLifecycle
public import PurifySystem

/// Sends sd_notify(3) messages to the service manager: one datagram per message on the Unix
/// socket named by `$NOTIFY_SOCKET` (a leading `@` means Linux's abstract namespace). This is
/// the whole protocol, so libsystemd is not needed.
public struct SystemdNotifier: Sendable {
    /// The socket address as given in `$NOTIFY_SOCKET`.
    public let socketPath: String

    /// A notifier when the process runs under a service manager that wants notifications
    /// (`Type=notify`), nil otherwise.
    public init?(environment: [String: String]) {
        guard let path = environment["NOTIFY_SOCKET"], path.hasPrefix("/") || path.hasPrefix("@"), path.utf8.count > 1 else {
            return nil
        }
        self.socketPath = path
    }

    /// READY=1 with a one-line STATUS=: start-up is complete.
    public func notifyReady(status: String) throws(SystemError) {
        try send(["READY=1", "STATUS=\(Self.oneLine(status))"])
    }

    /// STATUS=: the one-line summary `systemctl status` shows.
    public func notifyStatus(_ status: String) throws(SystemError) {
        try send(["STATUS=\(Self.oneLine(status))"])
    }

    /// STOPPING=1: shutdown has begun.
    public func notifyStopping(status: String) throws(SystemError) {
        try send(["STOPPING=1", "STATUS=\(Self.oneLine(status))"])
    }

    /// WATCHDOG=1: the watchdog keep-alive.
    public func notifyWatchdog() throws(SystemError) {
        try send(["WATCHDOG=1"])
    }

    /// Sends `assignments` (`KEY=VALUE`) as one datagram, newline-separated.
    public func send(_ assignments: [String]) throws(SystemError) {
        let address = try UnixSocketAddress(path: socketPath, for: "sendto")
        let fd = try SystemCall.retrying("socket", path: socketPath) {
            socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        defer { close(fd) }
        let message = Array(assignments.joined(separator: "\n").utf8)
        try SystemCall.retrying("sendto", path: socketPath) {
            message.withUnsafeBytes { bytes in
                address.withSocketAddress { sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), $0, $1) }
            }
        }
    }

    private static func oneLine(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }
}

/// The service-manager side of the daemon's lifecycle as a service: WATCHDOG=1 at half the
/// interval the manager asked for (`$WATCHDOG_USEC`, for this process when `$WATCHDOG_PID` is
/// set), and STOPPING=1 as soon as graceful shutdown begins.
///
/// Put it last in the service group's list: the group shuts services down in reverse order, so
/// STOPPING=1 goes out before the inboxes start draining. systemd stops the watchdog once a unit
/// is stopping, so the keep-alives end there too. READY=1 is the executable's to send, once
/// the models are loaded (``SystemdNotifier/notifyReady(status:)``).
public struct SystemdNotifyService: Service {
    public let notifier: SystemdNotifier
    /// The interval between keep-alives (half of `WatchdogSec=`), nil without a watchdog.
    public let watchdogInterval: Duration?
    /// The STATUS= line sent with STOPPING=1.
    public let stoppingStatus: String
    /// A one-line summary sent as STATUS= with each keep-alive, when given.
    public let status: (@Sendable () -> String)?

    public init(
        notifier: SystemdNotifier,
        watchdogInterval: Duration?,
        stoppingStatus: String = "stopping: draining in-flight files",
        status: (@Sendable () -> String)? = nil
    ) {
        self.notifier = notifier
        self.watchdogInterval = watchdogInterval
        self.stoppingStatus = stoppingStatus
        self.status = status
    }

    /// Reads `$WATCHDOG_USEC` and `$WATCHDOG_PID` from `environment`; `processID` (default: this
    /// process's) is what `$WATCHDOG_PID` must name.
    public init(notifier: SystemdNotifier, environment: [String: String], processID: Int32? = nil, status: (@Sendable () -> String)? = nil) {
        let processID = processID ?? getpid()
        var interval: Duration?
        if let text = environment["WATCHDOG_USEC"], let microseconds = Int64(text), microseconds > 0,
           environment["WATCHDOG_PID"].map({ $0 == String(processID) }) ?? true
        {
            interval = .microseconds(microseconds / 2)
        }
        self.init(notifier: notifier, watchdogInterval: interval, status: status)
    }

    public func run() async throws {
        if let watchdogInterval {
            try? await cancelWhenGracefulShutdown { [notifier, status] in
                while true {
                    // A keep-alive that cannot be sent is not fatal here: if they keep failing,
                    // the manager's watchdog restarts the daemon, which is the point.
                    try? notifier.notifyWatchdog()
                    if let status { try? notifier.notifyStatus(status()) }
                    try await Task.sleep(for: watchdogInterval)
                }
            }
        } else {
            try? await gracefulShutdown()
        }
        if !Task.isCancelled {
            try? notifier.notifyStopping(status: stoppingStatus)
        }
    }
}
