#if canImport(Glibc)
internal import Glibc
#endif
internal import CPurifySystem
internal import Dispatch
internal import PurifyControl
public import Logging
public import ServiceLifecycle
internal import Synchronization

/// The control socket: a Unix stream socket speaking JSON lines.
///
/// - Each request line `{"id":1,"cmd":"status"}` gets one reply line, `{"id":1,"ok":true,...}` or
///   `{"id":1,"ok":false,"error":{"code":...,"message":...}}`; a connection may send many.
/// - Lines longer than ``Configuration/maxLineLength`` and connections idle or stalled past
///   ``Configuration/readTimeout`` get an error reply and are closed; malformed JSON gets an
///   error reply and the connection stays usable. Nothing a client sends can stop the server.
/// - Peers are checked with SO_PEERCRED / SO_PEERGROUPS: root, the daemon's own uid, the
///   allowed uids, and peers with an allowed gid among their primary or supplementary groups.
/// - The socket appears with mode 0660 and never with any other: it is bound under a temporary
///   name, chmod-ed before listen(2) (a socket that is not listening refuses every connect),
///   and only then renamed into place, which also replaces a stale socket from a crash. A path
///   where another process is listening is left alone and the server fails to start.
///
/// `accept` and each connection run on threads of their own; handlers run as tasks.
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
        /// Connections served at once; more get a `busy` reply and are closed.
        public var maxConnections = 64
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
        var openConnections: Set<Int32> = []
        var runningThreads = 0
        var finishedWaiter: CheckedContinuation<Void, Never>?
        /// Set on cancellation: ``run()`` returns without waiting for connection threads.
        var abandoned = false
        var handlerTasks: [Int: Task<Void, Never>] = [:]
        var nextHandlerTask = 0
    }

    public let configuration: Configuration
    private let handler: any ControlCommandHandler
    private let logger: Logger
    private let wakeFD: Int32
    private let shared = Mutex(Shared())

    public init(configuration: Configuration, handler: any ControlCommandHandler, logger: Logger) throws(DaemonError) {
        self.configuration = configuration
        self.handler = handler
        self.logger = logger
        self.wakeFD = try FileSystem.retrying("eventfd") { CPurify_eventfdNonblocking() }
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
            try DedicatedThread.start(name: "control-accept") { [self] in
                acceptLoop(listener: listener)
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

    /// Stops accepting and ends every connection once its current request (if any) is answered:
    /// reading is shut down, writing is not, so a `drain` that triggered the shutdown still gets
    /// its reply. ``run()`` returns when all connections are closed.
    public func stop() {
        shared.withLock { shared in
            shared.stopRequested = true
            for connection in shared.openConnections { shutdown(connection, Int32(SHUT_RD)) }
        }
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

    private func bindListener() throws(DaemonError) -> Int32 {
        let path = configuration.path
        let directory = FilePaths.directory(of: path)
        let temporaryPath = FilePaths.join(directory, ".\(FilePaths.lastComponent(of: path)).\(getpid())")
        let listener = try FileSystem.retrying("socket", path: path) {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do throws(DaemonError) {
            try FileSystem.removeIfPresent(temporaryPath)
            var address = try Self.socketAddress(temporaryPath)
            try FileSystem.retrying("bind", path: temporaryPath) {
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
                }
            }
            try FileSystem.retrying("chmod", path: temporaryPath) { chmod(temporaryPath, 0o660) }
            try FileSystem.retrying("listen", path: temporaryPath) { listen(listener, 128) }
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

    private static func socketAddress(_ path: String) throws(DaemonError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw DaemonError.systemCall("bind", path: path, errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }

    /// Whether a live process accepts connections on the socket at `path`.
    private static func someoneListens(at path: String) throws(DaemonError) -> Bool {
        guard try FileSystem.entry(at: path)?.kind == .socket else { return false }
        let probe = try FileSystem.retrying("socket", path: path) {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        defer { close(probe) }
        var address = try socketAddress(path)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return result == 0
    }

    // MARK: - Threads

    private func acceptLoop(listener: Int32) {
        while !shared.withLock({ $0.stopRequested }) {
            var descriptors = [
                pollfd(fd: listener, events: Int16(POLLIN), revents: 0),
                pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0),
            ]
            if poll(&descriptors, 2, -1) < 0 {
                if errno == EINTR { continue }
                logger.critical("poll failed on the control socket; no longer accepting", metadata: ["errno": "\(errno)"])
                return
            }
            guard descriptors[0].revents != 0 else { continue }
            let connection = CPurify_acceptCloexec(listener)
            guard connection >= 0 else {
                if errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM {
                    // Out of descriptors or memory: back off instead of spinning on a ready socket.
                    logger.warning("cannot accept a control connection", metadata: ["errno": "\(errno)"])
                    usleep(100_000)
                }
                continue
            }
            admit(connection)
        }
    }

    private func admit(_ connection: Int32) {
        if let refusal = refusal(for: connection) {
            sendAll(ControlReply.failure(id: .null, error: refusal).line, to: connection)
            close(connection)
            return
        }
        var timeout = timeval(tv_sec: Int(configuration.readTimeout.components.seconds),
                              tv_usec: Int(configuration.readTimeout.components.attoseconds / 1_000_000_000_000))
        setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let admitted = shared.withLock { shared in
            guard shared.openConnections.count < configuration.maxConnections, !shared.stopRequested else { return false }
            shared.openConnections.insert(connection)
            shared.runningThreads += 1
            return true
        }
        guard admitted else {
            sendAll(ControlReply.failure(id: .null, error: ControlError(code: ControlError.busy, message: "too many control connections")).line, to: connection)
            close(connection)
            return
        }
        do {
            try DedicatedThread.start(name: "control-conn") { [self] in
                serve(connection)
                shared.withLock { _ = $0.openConnections.remove(connection) }
                close(connection)
                threadFinished()
            }
        } catch {
            logger.error("cannot start a control connection thread", metadata: ["error": "\(error)"])
            shared.withLock { _ = $0.openConnections.remove(connection) }
            close(connection)
            threadFinished()
        }
    }

    /// Why the peer may not use the socket, or nil when it may.
    private func refusal(for connection: Int32) -> ControlError? {
        var credentials = CPurifyPeerCredentials()
        guard CPurify_peerCredentials(connection, &credentials) == 0 else {
            return ControlError(code: ControlError.permissionDenied, message: "cannot read the peer's credentials")
        }
        if credentials.uid == 0 || credentials.uid == getuid() || configuration.allowedUIDs.contains(credentials.uid)
            || configuration.allowedGIDs.contains(credentials.gid)
        {
            return nil
        }
        if !configuration.allowedGIDs.isEmpty {
            var groups = [gid_t](repeating: 0, count: 256)
            var count = Int32(groups.count)
            if CPurify_peerGroups(connection, &groups, &count) == 0,
               groups.prefix(Int(count)).contains(where: { configuration.allowedGIDs.contains($0) })
            {
                return nil
            }
        }
        logger.warning("refused a control connection", metadata: ["uid": "\(credentials.uid)", "pid": "\(credentials.pid)"])
        return ControlError(code: ControlError.permissionDenied, message: "uid \(credentials.uid) may not use this socket")
    }

    /// Reads request lines and answers each until the peer closes, times out or oversteps.
    private func serve(_ connection: Int32) {
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                if newline > configuration.maxLineLength { break }
                let line = Array(pending[..<newline])
                pending.removeSubrange(...newline)
                guard respond(to: line, on: connection) else { return }
            }
            if (pending.firstIndex(of: UInt8(ascii: "\n")) ?? pending.count) > configuration.maxLineLength {
                let error = ControlError(code: ControlError.lineTooLong, message: "request lines are limited to \(configuration.maxLineLength) bytes")
                sendAll(ControlReply.failure(id: .null, error: error).line, to: connection)
                return
            }
            let count = chunk.withUnsafeMutableBytes { read(connection, $0.baseAddress, $0.count) }
            if count > 0 {
                pending += chunk[0..<count]
            } else if count == 0 {
                // End of input: a last line without a newline is still answered.
                if !pending.isEmpty { _ = respond(to: pending, on: connection) }
                return
            } else if errno == EINTR {
                continue
            } else {
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    let error = ControlError(code: ControlError.readTimeout, message: "no complete request line within the read timeout")
                    sendAll(ControlReply.failure(id: .null, error: error).line, to: connection)
                }
                return
            }
        }
    }

    /// Answers one line; returns false when the reply could not be sent.
    private func respond(to line: [UInt8], on connection: Int32) -> Bool {
        if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: "\r") }) { return true }
        let reply: String
        switch ControlRequest.parse(line) {
        case .failure(let rejection):
            reply = ControlReply.failure(id: rejection.id, error: rejection.error).line
        case .success(let request):
            reply = dispatch(request)
        }
        return sendAll(reply, to: connection)
    }

    /// Runs the handler as a task and blocks this (dedicated) thread until it answers.
    private func dispatch(_ request: ControlRequest) -> String {
        let reply = Mutex<String?>(nil)
        let done = DispatchSemaphore(value: 0)
        let handler = self.handler
        let task = Task {
            let text: String
            do throws(ControlError) {
                text = ControlReply.success(id: request.id, fields: try await handler.handle(request)).line
            } catch {
                text = ControlReply.failure(id: request.id, error: error).line
            }
            reply.withLock { $0 = text }
            done.signal()
        }
        let key = shared.withLock { shared in
            defer { shared.nextHandlerTask += 1 }
            shared.handlerTasks[shared.nextHandlerTask] = task
            if shared.abandoned { task.cancel() }
            return shared.nextHandlerTask
        }
        done.wait()
        _ = shared.withLock { $0.handlerTasks.removeValue(forKey: key) }
        return reply.withLock { $0 ?? "" }
    }

    @discardableResult
    private func sendAll(_ text: String, to connection: Int32) -> Bool {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { send(connection, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent < 0, errno == EINTR { continue }
            if sent <= 0 { return false }
            offset += sent
        }
        return true
    }

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
