#if canImport(Glibc)
internal import Glibc
#endif
internal import CPurifySystem
internal import Dispatch
internal import PurifyControl
public import Logging
public import ServiceLifecycle
internal import PurifySystem

/// The control socket: a Unix stream socket speaking JSON lines.
///
/// - Each request line `{"id":1,"cmd":"status"}` gets one reply line, `{"id":1,"ok":true,...}` or
///   `{"id":1,"ok":false,"error":{"code":...,"message":...}}`; a connection may send many.
/// - Lines longer than ``Configuration/maxLineLength``, connections that send no complete first
///   line within ``Configuration/firstLineTimeout`` and connections idle or stalled past
///   ``Configuration/readTimeout`` get an error reply and are closed; malformed JSON gets an
///   error reply and the connection stays usable. Nothing a client sends can stop the server.
/// - One thread serves every connection with poll(2), so a crowd of connections, idle ones
///   included, costs a few hundred bytes each and never delays another client's request:
///   up to ``Configuration/maxConnections`` at once, ``Configuration/maxConnectionsPerUID`` of
///   them from one uid, so that one local user cannot lock another out of `status` or `drain`.
/// - Peers are checked with SO_PEERCRED / SO_PEERGROUPS: root, the daemon's own uid, the
///   allowed uids, and peers with an allowed gid among their primary or supplementary groups.
/// - The socket appears with mode 0660 and never with any other: it is bound under a temporary
///   name, chmod-ed before listen(2) (a socket that is not listening refuses every connect),
///   and only then renamed into place, which also replaces a stale socket from a crash. A path
///   where another process is listening is left alone and the server fails to start.
///
/// Requests run as tasks, one at a time per connection, and their replies go out in order.
public final class ControlServer: Service, Sendable {
    public struct Configuration: Sendable {
        /// Where the socket is created.
        public var path: String
        public var allowedUIDs: Set<UInt32>
        public var allowedGIDs: Set<UInt32>
        /// The longest request line accepted, in bytes (the newline not counted).
        public var maxLineLength = 16 * 1024
        /// How long a connection may take to send its next line.
        public var readTimeout: Duration = .seconds(10)
        /// How long a new connection may take to send its first complete line.
        public var firstLineTimeout: Duration = .seconds(2)
        /// Connections served at once; more get a `busy` reply and are closed.
        public var maxConnections = 4096
        /// Connections served at once for one peer uid; more get a `busy` reply and are closed.
        public var maxConnectionsPerUID = 1024
        /// Called once the socket is in place and accepting (e.g. to send READY=1).
        public var onListening: (@Sendable () -> Void)?

        public init(path: String, allowedUIDs: Set<UInt32> = [], allowedGIDs: Set<UInt32> = []) {
            self.path = path
            self.allowedUIDs = allowedUIDs
            self.allowedGIDs = allowedGIDs
        }
    }

    private struct Shared {
        var stopRequested = false
        var started = false
        var runningThreads = 0
        var finishedWaiter: CheckedContinuation<Void, Never>?
        /// Set on cancellation: ``run()`` returns without waiting for the serving thread.
        var abandoned = false
        var handlerTasks: [UInt64: Task<Void, Never>] = [:]
        /// Replies of finished handlers, by connection, for the serving thread to send.
        var replies: [(connection: UInt64, line: String)] = []
    }

    public let configuration: Configuration
    private let handler: any ControlCommandHandler
    private let logger: Logger
    private let wakeFD: Int32
    private let shared = Locked(Shared())

    public init(configuration: Configuration, handler: any ControlCommandHandler, logger: Logger) throws {
        self.configuration = configuration
        self.handler = handler
        self.logger = logger
        self.wakeFD = try SystemCall.retrying("eventfd") { CPurify_eventfdNonblocking() }
    }

    deinit {
        close(wakeFD)
    }

    /// Binds the socket, serves until graceful shutdown or cancellation, then removes the socket
    /// and closes every connection. May be called once.
    public func run() async throws {
        let alreadyStarted = shared.withLock { shared in
            defer { shared.started = true }
            return shared.started
        }
        guard !alreadyStarted else {
            throw DaemonError(code: .alreadyStarted, message: "ControlServer.run() called twice")
        }
        let listener = try bindListener()
        logger.info("control socket listening", metadata: ["path": "\(configuration.path)"])
        configuration.onListening?()
        shared.withLock { $0.runningThreads += 1 }
        do {
            try SystemThread.start(name: "control-serve") { [self] in
                ConnectionLoop(server: self, listener: listener).run()
                close(listener)
                _ = try? FileSystem.removeIfPresent(configuration.path)
                threadFinished()
            }
        } catch {
            close(listener)
            _ = try? FileSystem.removeIfPresent(configuration.path)
            throw error
        }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let finished = shared.withLock { shared in
                        let finished = shared.runningThreads == 0 || shared.abandoned
                        if !finished { shared.finishedWaiter = continuation }
                        return finished
                    }
                    if finished { continuation.resume() }
                }
            } onGracefulShutdown: {
                self.stop()
            }
        } onCancel: {
            self.abandon()
        }
    }

    /// Stops accepting and ends every connection once its current request (if any) is answered,
    /// so a `drain` that triggered the shutdown still gets its reply. ``run()`` returns when all
    /// connections are closed.
    public func stop() {
        shared.withLock { $0.stopRequested = true }
        wake()
    }

    /// Wakes the serving thread's poll.
    fileprivate func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, MemoryLayout<UInt64>.size)
    }

    /// Cancellation: stop, cancel the running handlers (a `drain` waiting for idle inboxes),
    /// and let ``run()`` return without waiting for the connection threads to wind down.
    private func abandon() {
        stop()
        let (tasks, waiter) = shared.withLock { shared in
            shared.abandoned = true
            defer { shared.finishedWaiter = nil }
            return (Array(shared.handlerTasks.values), shared.finishedWaiter)
        }
        for task in tasks { task.cancel() }
        waiter?.resume()
    }

    // MARK: - Socket set-up

    private func bindListener() throws -> Int32 {
        let path = configuration.path
        let directory = FilePaths.directory(of: path)
        let temporaryPath = FilePaths.join(directory, ".\(FilePaths.lastComponent(of: path)).\(getpid())")
        let listener = try SystemCall.retrying("socket", path: path) {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do throws {
            try FileSystem.removeIfPresent(temporaryPath)
            let address = try UnixSocketAddress(path: temporaryPath, for: "bind")
            try SystemCall.retrying("bind", path: temporaryPath) { address.withSocketAddress { bind(listener, $0, $1) } }
            try SystemCall.retrying("chmod", path: temporaryPath) { chmod(temporaryPath, 0o660) }
            try SystemCall.retrying("listen", path: temporaryPath) { listen(listener, 128) }
            if try Self.someoneListens(at: path) {
                throw DaemonError(code: .controlSocketInUse, message: "another process is listening on \(path)")
            }
            try FileSystem.rename(temporaryPath, to: path)
            return listener
        } catch {
            close(listener)
            _ = try? FileSystem.removeIfPresent(temporaryPath)
            throw error
        }
    }

    /// Whether a live process accepts connections on the socket at `path`.
    private static func someoneListens(at path: String) throws -> Bool {
        guard try FileSystem.entry(at: path)?.kind == .socket else { return false }
        let probe = try SystemCall.retrying("socket", path: path) {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        defer { close(probe) }
        let address = try UnixSocketAddress(path: path, for: "connect")
        return address.withSocketAddress { connect(probe, $0, $1) } == 0
    }

    // MARK: - Serving

    /// Starts the handler for `request` of connection `id` as a task; its reply line is queued
    /// for the serving thread, which is woken.
    fileprivate func dispatch(_ request: ControlRequest, for id: UInt64) {
        let handler = self.handler
        shared.withLock { shared in
            let task = Task {
                let text: String
                do throws(ControlError) {
                    text = ControlReply.success(id: request.id, fields: try await handler.handle(request)).line
                } catch {
                    text = ControlReply.failure(id: request.id, error: error).line
                }
                self.shared.withLock { shared in
                    shared.replies.append((id, text))
                    shared.handlerTasks[id] = nil
                }
                self.wake()
            }
            shared.handlerTasks[id] = task
            if shared.abandoned { task.cancel() }
        }
    }

    fileprivate var isStopRequested: Bool { shared.withLock { $0.stopRequested } }

    fileprivate func takeReplies() -> [(connection: UInt64, line: String)] {
        shared.withLock { shared in
            defer { shared.replies = [] }
            return shared.replies
        }
    }

    fileprivate func drainWakeups() {
        var value: UInt64 = 0
        _ = read(wakeFD, &value, MemoryLayout<UInt64>.size)
    }

    fileprivate var wakeDescriptor: Int32 { wakeFD }

    /// The peer's uid, or why it may not use the socket.
    fileprivate func admission(for connection: Int32) -> Result<UInt32, ControlError> {
        var credentials = CPurifyPeerCredentials()
        guard CPurify_peerCredentials(connection, &credentials) == 0 else {
            return .failure(ControlError(code: ControlError.permissionDenied, message: "cannot read the peer's credentials"))
        }
        if credentials.uid == 0 || credentials.uid == getuid() || configuration.allowedUIDs.contains(credentials.uid)
            || configuration.allowedGIDs.contains(credentials.gid)
        {
            return .success(credentials.uid)
        }
        if !configuration.allowedGIDs.isEmpty {
            var groups = [gid_t](repeating: 0, count: 256)
            var count = Int32(groups.count)
            if CPurify_peerGroups(connection, &groups, &count) == 0,
               groups.prefix(Int(count)).contains(where: { configuration.allowedGIDs.contains($0) })
            {
                return .success(credentials.uid)
            }
        }
        logger.warning("refused a control connection", metadata: ["uid": "\(credentials.uid)", "pid": "\(credentials.pid)"])
        return .failure(ControlError(code: ControlError.permissionDenied, message: "uid \(credentials.uid) may not use this socket"))
    }

    fileprivate var log: Logger { logger }

    private func threadFinished() {
        let waiter: CheckedContinuation<Void, Never>? = shared.withLock { shared in
            shared.runningThreads -= 1
            guard shared.runningThreads == 0 else { return nil }
            defer { shared.finishedWaiter = nil }
            return shared.finishedWaiter
        }
        waiter?.resume()
    }
}

/// The serving thread's state: the listener and every connection, polled together. Only that
/// thread touches it.
private final class ConnectionLoop {
    private final class Connection {
        let id: UInt64
        let fd: Int32
        let uid: UInt32
        var input: [UInt8] = []
        var output: [UInt8] = []
        /// A request of this connection is with its handler: nothing more is read until its
        /// reply is queued, so that replies keep the order of requests.
        var awaitingReply = false
        var receivedLine = false
        var endOfInput = false
        /// Close once `output` is sent.
        var closing = false
        var deadline: ContinuousClock.Instant

        init(id: UInt64, fd: Int32, uid: UInt32, deadline: ContinuousClock.Instant) {
            self.id = id
            self.fd = fd
            self.uid = uid
            self.deadline = deadline
        }
    }

    private let server: ControlServer
    private let listener: Int32
    private let configuration: ControlServer.Configuration
    private var connections: [UInt64: Connection] = [:]
    private var perUID: [UInt32: Int] = [:]
    private var nextID: UInt64 = 0
    private let clock = ContinuousClock()
    private var chunk = [UInt8](repeating: 0, count: 16 * 1024)

    init(server: ControlServer, listener: Int32) {
        self.server = server
        self.listener = listener
        configuration = server.configuration
    }

    func run() {
        _ = CPurify_setNonblocking(listener)
        while true {
            let stopping = server.isStopRequested
            if stopping {
                for connection in connections.values where !connection.awaitingReply && !connection.closing {
                    connection.closing = true
                    connection.deadline = clock.now + configuration.readTimeout
                }
            }
            flushAndReap()
            if stopping && connections.isEmpty { return }
            let ordered = Array(connections.values)
            var descriptors = [pollfd(fd: server.wakeDescriptor, events: Int16(POLLIN), revents: 0),
                               pollfd(fd: stopping ? -1 : listener, events: Int16(POLLIN), revents: 0)]
            for connection in ordered {
                var events: Int32 = 0
                if !connection.awaitingReply && !connection.closing && !connection.endOfInput { events |= Int32(POLLIN) }
                if !connection.output.isEmpty { events |= Int32(POLLOUT) }
                // A closed peer would report POLLHUP on every poll while its request runs.
                let watched = events != 0 || !connection.endOfInput
                descriptors.append(pollfd(fd: watched ? connection.fd : -1, events: Int16(events), revents: 0))
            }
            let timeout = pollTimeout()
            if poll(&descriptors, nfds_t(descriptors.count), timeout) < 0 {
                if errno == EINTR { continue }
                server.log.critical("poll failed on the control socket; no longer serving", metadata: ["errno": "\(errno)"])
                for connection in connections.values { close(connection.fd) }
                connections = [:]
                return
            }
            if descriptors[0].revents != 0 { server.drainWakeups() }
            for (id, line) in server.takeReplies() {
                guard let connection = connections[id] else { continue }
                connection.output += Array(line.utf8)
                connection.awaitingReply = false
                connection.deadline = clock.now + configuration.readTimeout
                if server.isStopRequested { connection.closing = true } else { process(connection) }
            }
            if descriptors[1].revents != 0 { acceptAll() }
            for (index, connection) in ordered.enumerated() {
                let events = Int32(descriptors[index + 2].revents)
                if events & Int32(POLLOUT) != 0 { send(connection) }
                if events & Int32(POLLIN | POLLHUP | POLLERR) != 0 { receive(connection) }
            }
            expireDeadlines()
        }
    }

    /// Milliseconds until the nearest deadline of a connection not waiting for a handler; -1
    /// for none.
    private func pollTimeout() -> Int32 {
        let waiting = connections.values.filter { !$0.awaitingReply }
        guard let nearest = waiting.map(\.deadline).min() else { return -1 }
        let (seconds, attoseconds) = clock.now.duration(to: nearest).components
        let milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1
        return Int32(clamping: max(0, milliseconds))
    }

    private func acceptAll() {
        while true {
            let fd = CPurify_acceptNonblocking(listener)
            if fd < 0 {
                if errno == EINTR { continue }
                if errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM {
                    // Out of descriptors or memory: let the connections in hand finish first.
                    server.log.warning("cannot accept a control connection", metadata: ["errno": "\(errno)"])
                    usleep(10_000)
                }
                return
            }
            admit(fd)
        }
    }

    private func admit(_ fd: Int32) {
        let uid: UInt32
        switch server.admission(for: fd) {
        case .failure(let refusal):
            refuse(fd, refusal)
            return
        case .success(let peer):
            uid = peer
        }
        guard connections.count < configuration.maxConnections else {
            refuse(fd, ControlError(code: ControlError.busy, message: "too many control connections"))
            return
        }
        guard perUID[uid, default: 0] < configuration.maxConnectionsPerUID else {
            refuse(fd, ControlError(code: ControlError.busy, message: "too many control connections from uid \(uid)"))
            return
        }
        nextID += 1
        connections[nextID] = Connection(id: nextID, fd: fd, uid: uid, deadline: clock.now + configuration.firstLineTimeout)
        perUID[uid, default: 0] += 1
    }

    /// Sends a refusal into the new socket's empty buffer (it fits) and closes it.
    private func refuse(_ fd: Int32, _ error: ControlError) {
        let bytes = Array(ControlReply.failure(id: .null, error: error).line.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        close(fd)
    }

    private func receive(_ connection: Connection) {
        while !connection.endOfInput {
            let count = chunk.withUnsafeMutableBytes { read(connection.fd, $0.baseAddress, $0.count) }
            if count > 0 {
                connection.input += chunk[0..<count]
                if connection.input.count > configuration.maxLineLength + chunk.count { break }
            } else if count == 0 {
                connection.endOfInput = true
            } else if errno == EINTR {
                continue
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                break
            } else {
                connection.endOfInput = true
                connection.input = []
            }
        }
        process(connection)
    }

    /// Answers the complete lines buffered, stopping at one that goes to a handler.
    private func process(_ connection: Connection) {
        while !connection.awaitingReply && !connection.closing {
            guard let newline = connection.input.firstIndex(of: UInt8(ascii: "\n")) else {
                if connection.input.count > configuration.maxLineLength {
                    fail(connection, ControlError(code: ControlError.lineTooLong,
                                                  message: "request lines are limited to \(configuration.maxLineLength) bytes"))
                } else if connection.endOfInput {
                    // End of input: a last line without a newline is still answered.
                    if !connection.input.isEmpty {
                        let line = connection.input
                        connection.input = []
                        respond(to: line, on: connection)
                    }
                    if !connection.awaitingReply { connection.closing = true }
                }
                return
            }
            if newline > configuration.maxLineLength {
                fail(connection, ControlError(code: ControlError.lineTooLong,
                                              message: "request lines are limited to \(configuration.maxLineLength) bytes"))
                return
            }
            let line = Array(connection.input[..<newline])
            connection.input.removeSubrange(...newline)
            connection.receivedLine = true
            connection.deadline = clock.now + configuration.readTimeout
            respond(to: line, on: connection)
        }
    }

    private func respond(to line: [UInt8], on connection: Connection) {
        if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: "\r") }) { return }
        switch ControlRequest.parse(line) {
        case .failure(let rejection):
            connection.output += Array(ControlReply.failure(id: rejection.id, error: rejection.error).line.utf8)
        case .success(let request):
            connection.awaitingReply = true
            server.dispatch(request, for: connection.id)
        }
    }

    /// Replies with `error` and closes the connection once the reply is out.
    private func fail(_ connection: Connection, _ error: ControlError) {
        connection.output += Array(ControlReply.failure(id: .null, error: error).line.utf8)
        connection.input = []
        connection.closing = true
        connection.deadline = clock.now + configuration.readTimeout
    }

    private func send(_ connection: Connection) {
        while !connection.output.isEmpty {
            let sent = connection.output.withUnsafeBytes { Glibc.send(connection.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent > 0 {
                connection.output.removeFirst(sent)
            } else if sent < 0 && errno == EINTR {
                continue
            } else if sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                return
            } else {
                // The peer is gone: nothing more can reach it.
                connection.output = []
                connection.closing = true
                connection.endOfInput = true
                return
            }
        }
    }

    /// Connections silent past their deadline get `read_timeout` and are closed; those that do
    /// not take their last reply by then are closed without it.
    private func expireDeadlines() {
        let now = clock.now
        for connection in connections.values where !connection.awaitingReply && connection.deadline <= now {
            if connection.closing {
                connection.output = []
                continue
            }
            let message = connection.receivedLine
                ? "no complete request line within the read timeout"
                : "no complete request line within the first-line timeout"
            fail(connection, ControlError(code: ControlError.readTimeout, message: message))
        }
    }

    /// Sends what can be sent, and closes the connections that are done.
    private func flushAndReap() {
        for connection in connections.values {
            if !connection.output.isEmpty { send(connection) }
            let finished = (connection.closing || (connection.endOfInput && connection.input.isEmpty))
                && !connection.awaitingReply && connection.output.isEmpty
            if finished { drop(connection) }
        }
    }

    private func drop(_ connection: Connection) {
        close(connection.fd)
        connections[connection.id] = nil
        perUID[connection.uid, default: 1] -= 1
        if perUID[connection.uid] == 0 { perUID[connection.uid] = nil }
    }
}
