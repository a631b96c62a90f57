#if canImport(Glibc)
internal import Glibc
#endif
internal import PurifySystem

/// A client of the daemon's control socket: one connection per request, one request line out,
/// one reply line back.
///
/// Every exchange is bounded: it blocks the calling thread for at most ``timeout`` (connecting,
/// sending and reading together) and reads at most ``maxReplyLength`` bytes. Call it from a
/// thread that may block (a command-line tool's main thread), not from Swift's cooperative pool.
public struct ControlClient: Sendable {
    /// The daemon's socket, `/run/purifyd/control.sock` in the shipped unit.
    public var socketPath: String
    /// The longest an exchange may take, connection included.
    public var timeout: Duration
    /// The longest reply line accepted, in bytes (the newline not counted).
    public var maxReplyLength: Int

    /// Where the shipped systemd unit puts the socket.
    public static let defaultSocketPath = "/run/purifyd/control.sock"

    public init(socketPath: String = ControlClient.defaultSocketPath, timeout: Duration = .seconds(10), maxReplyLength: Int = 4 << 20) {
        self.socketPath = socketPath
        self.timeout = timeout
        self.maxReplyLength = maxReplyLength
    }

    /// Sends `command` and returns the reply's fields; an error reply throws
    /// ``ControlClientError/Code/daemonError``.
    public func send(_ command: ControlCommand, arguments: [String: JSONValue] = [:]) throws(ControlClientError) -> [String: JSONValue] {
        let reply = try exchange(ControlRequest(id: 1, command: command, arguments: arguments))
        switch reply.result {
        case .success(let fields): return fields
        case .failure(let error): throw .daemon(error)
        }
    }

    /// Sends `request` and returns the daemon's reply, error replies included. The reply must
    /// carry the request's `id`, or null (what the daemon sends when it refuses a connection
    /// before reading from it).
    public func exchange(_ request: ControlRequest) throws(ControlClientError) -> ControlReply {
        let line = try exchangeLine(Array(request.line.utf8))
        switch ControlReply.parse(line) {
        case .failure(let malformed):
            throw ControlClientError(code: .malformedReply, message: "malformed reply from \(socketPath): \(malformed.reason)")
        case .success(let reply):
            guard reply.id == request.id || reply.id == .null else {
                throw ControlClientError(code: .malformedReply, message: "the reply from \(socketPath) answers another request (id \(reply.id.serialized()))")
            }
            return reply
        }
    }

    // MARK: - The exchange

    /// Connects, sends `request` (one line, newline included) and returns the reply line
    /// without its newline.
    private func exchangeLine(_ request: [UInt8]) throws(ControlClientError) -> [UInt8] {
        let deadline = ContinuousClock.now + timeout
        let address = try socketAddress()
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else { throw systemCallError("socket", errno: .current) }
        defer { close(descriptor) }
        try connect(descriptor, to: address, before: deadline)
        try sendAll(request, to: descriptor, before: deadline)
        return try readLine(from: descriptor, before: deadline)
    }

    private func socketAddress() throws(ControlClientError) -> UnixSocketAddress {
        do throws(SystemError) {
            return try UnixSocketAddress(path: socketPath, for: "connect")
        } catch {
            throw ControlClientError(code: .invalidSocketPath, message: "not a usable socket path (1 to 107 bytes, no NUL): \(socketPath)", errno: error.errno)
        }
    }

    private func connect(_ descriptor: Int32, to address: UnixSocketAddress, before deadline: ContinuousClock.Instant) throws(ControlClientError) {
        while true {
            if address.withSocketAddress({ Glibc.connect(descriptor, $0, $1) }) == 0 { return }
            let failure = Errno.current
            switch failure {
            case .interrupted:
                continue
            case .socketIsConnected:
                return
            case .wouldBlock:
                // A Unix socket whose listen backlog is full: the daemon is alive but busy.
                guard ContinuousClock.now < deadline else {
                    throw timeoutError("the daemon accepted no connection")
                }
                usleep(10_000)
            case .nowInProgress, .alreadyInProcess:
                try wait(for: Int16(POLLOUT), on: descriptor, before: deadline, doing: "the daemon accepted no connection")
                var pending: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                guard getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &pending, &length) == 0 else {
                    throw systemCallError("getsockopt", errno: .current)
                }
                if pending == 0 { return }
                throw connectError(errno: Errno(rawValue: pending))
            default:
                throw connectError(errno: failure)
            }
        }
    }

    /// Sends all of `bytes`. A peer that closes first is not an error here: a daemon that
    /// refuses a connection writes its error reply and closes without reading, and that reply
    /// is still there to read.
    private func sendAll(_ bytes: [UInt8], to descriptor: Int32, before deadline: ContinuousClock.Instant) throws(ControlClientError) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent >= 0 {
                offset += sent
                continue
            }
            switch Errno.current {
            case .interrupted: continue
            case .wouldBlock: try wait(for: Int16(POLLOUT), on: descriptor, before: deadline, doing: "the daemon read no request")
            case .brokenPipe, .connectionReset: return
            case let failure: throw systemCallError("send", errno: failure)
            }
        }
    }

    private func readLine(from descriptor: Int32, before deadline: ContinuousClock.Instant) throws(ControlClientError) -> [UInt8] {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            if let newline = received.firstIndex(of: UInt8(ascii: "\n")), newline <= maxReplyLength {
                return Array(received[..<newline])
            }
            guard received.count <= maxReplyLength else {
                throw ControlClientError(code: .malformedReply, message: "the reply from \(socketPath) is longer than \(maxReplyLength) bytes")
            }
            let wanted = min(chunk.count, maxReplyLength + 1 - received.count)
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, wanted) }
            if count > 0 {
                received += chunk[0..<count]
                continue
            }
            let failure = Errno.current
            if count == 0 || failure == .connectionReset {
                guard received.isEmpty else {
                    throw ControlClientError(code: .malformedReply, message: "the reply from \(socketPath) ends without a newline")
                }
                throw ControlClientError(code: .connectionClosed, message: "the daemon at \(socketPath) closed the connection without replying")
            }
            switch failure {
            case .interrupted: continue
            case .wouldBlock: try wait(for: Int16(POLLIN), on: descriptor, before: deadline, doing: "no complete reply came")
            default: throw systemCallError("read", errno: failure)
            }
        }
    }

    /// Waits until `descriptor` is ready for `events` (or has an error or hang-up to report),
    /// or throws a timeout saying what did not happen.
    private func wait(for events: Int16, on descriptor: Int32, before deadline: ContinuousClock.Instant, doing what: String) throws(ControlClientError) {
        while true {
            let remaining = deadline - .now
            guard remaining > .zero else { throw timeoutError(what) }
            let milliseconds = remaining.components.seconds * 1000 + (remaining.components.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
            var descriptors = [pollfd(fd: descriptor, events: events, revents: 0)]
            let ready = poll(&descriptors, 1, Int32(clamping: milliseconds))
            if ready > 0 { return }
            if ready < 0, Errno.current != .interrupted { throw systemCallError("poll", errno: .current) }
        }
    }

    // MARK: - Errors

    private func connectError(errno: Errno) -> ControlClientError {
        switch errno {
        case .noSuchFileOrDirectory, .notDirectory:
            ControlClientError(code: .socketMissing, message: "no control socket at \(socketPath) (is purifyd running?)", errno: errno)
        case .permissionDenied, .notPermitted:
            ControlClientError(code: .permissionDenied, message: "permission denied on \(socketPath) (run as a user or group the daemon's configuration allows)", errno: errno)
        case .connectionRefused:
            ControlClientError(code: .connectionRefused, message: "nothing accepts connections on \(socketPath) (purifyd is not running, or left a stale socket)", errno: errno)
        default:
            systemCallError("connect", errno: errno)
        }
    }

    private func timeoutError(_ what: String) -> ControlClientError {
        ControlClientError(code: .timeout, message: "\(what) on \(socketPath) within \(timeout)")
    }

    private func systemCallError(_ call: String, errno: Errno) -> ControlClientError {
        ControlClientError(code: .systemCall, message: "\(SystemError(call, path: socketPath, errno: errno))", errno: errno)
    }
}
