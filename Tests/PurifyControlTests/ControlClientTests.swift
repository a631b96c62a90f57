import Foundation
import Glibc
import PurifyControl
import PurifyDaemon
import PurifySystem
import PurifyTestSupport
import Testing

@Suite("ControlClient against a real control socket")
struct ControlClientTests {
    /// How `status` and `reload` put the stand-in pipeline's bundle on the wire.
    static let bundleFields: JSONValue = [
        "inbox": "mnist", "name": "mnist", "version": "1.0.0", "directory": "/models/mnist",
        "purifier_sha256": .string(String(repeating: "a", count: 64)), "classifier_sha256": .null, "classifier": false,
    ]

    @Test("every command round-trips through the daemon's control handler", arguments: ControlCommand.allCases)
    func roundTrip(command: ControlCommand) async throws {
        try await ServedDaemon.serving { daemon in
            let arguments: [String: JSONValue] = switch command {
            case .pause, .resume, .rescan: ["inbox": "mnist"]
            case .drain: ["inbox": "mnist", "exit": true]
            default: [:]
            }
            let client = ControlClient(socketPath: daemon.socketPath, timeout: .seconds(20))
            let fields = try await offPool { try client.send(command, arguments: arguments) }
            switch command {
            case .version:
                #expect(fields == ["version": "1.2.3-test"])
            case .status:
                #expect(fields["state"] == "running")
                #expect(fields["version"] == "1.2.3-test")
                #expect(fields["bundles"] == [Self.bundleFields])
                #expect(fields["reloads"] == ["succeeded": 0, "failed": 0])
                #expect(fields["last_error"] == .null)
                guard case .array(let inboxes)? = fields["inboxes"], case .object(let inbox)? = inboxes.first else {
                    Issue.record("no inbox in \(fields)")
                    return
                }
                #expect(inboxes.count == 1)
                #expect(inbox["name"] == "mnist")
                #expect(inbox["capacity"] == 8)
            case .stats:
                #expect(fields == [
                    "latency_ms": [
                        "decode": ["count": 3, "p50": 1.25, "p90": 4.25, "p99": 4.5, "max": 4.5],
                        "purify": ["count": 3, "p50": 12.5, "p90": 30.25, "p99": 30.5, "max": 30.5],
                    ],
                    "latency_window": 2048,
                    "throughput_per_s": 41.5,
                    "total_throughput_per_s": 40.5,
                    "inboxes": ["mnist": ["purified": 3, "failed": 0, "uncommitted": 0]],
                ])
            case .metrics:
                #expect(fields["format"] == "prometheus-text-0.0.4")
                guard case .string(let text)? = fields["text"] else {
                    Issue.record("no metrics text in \(fields)")
                    return
                }
                #expect(text.contains("purifyd_files_claimed_total{inbox=\"mnist\"} 0\n"))
                #expect(text.hasSuffix("purifyd_images_purified_total 7\n"))
            case .pause:
                #expect(fields == ["paused": ["mnist"]])
                #expect(daemon.inbox.status.isPaused)
            case .resume:
                #expect(fields == ["resumed": ["mnist"]])
                #expect(!daemon.inbox.status.isPaused)
            case .drain:
                #expect(fields == ["drained": ["mnist"], "exiting": true])
                #expect(daemon.shutdownRequested.withLock { $0 })
            case .reload:
                #expect(fields == ["reloaded": true, "bundles": [Self.bundleFields], "restart_required": []])
            case .rescan:
                #expect(fields == ["rescanning": ["mnist"]])
            }
        }
    }

    @Test("an error reply throws daemonError carrying the daemon's code and message")
    func daemonErrorReply() async throws {
        try await ServedDaemon.serving { daemon in
            let client = ControlClient(socketPath: daemon.socketPath)
            let error = await failure { try client.send(.pause, arguments: ["inbox": "nope"]) }
            #expect(error?.code == .daemonError)
            #expect(error?.daemonError == ControlError(code: ControlError.invalidArgument, message: "no inbox named \"nope\""))
            // The same exchange, unthrown: the reply itself, its id echoed.
            let reply = try await offPool { try client.exchange(ControlRequest(id: "x", command: .pause, arguments: ["inbox": "nope"])) }
            #expect(reply.id == "x")
            #expect(reply.result == .failure(ControlError(code: ControlError.invalidArgument, message: "no inbox named \"nope\"")))
        }
    }

    @Test("a busy daemon's reply (id null, sent before reading the request) is a daemonError")
    func busyReply() async throws {
        let directory = try TemporaryDirectory()
        var configuration = ControlServer.Configuration(path: directory.path + "/control.sock")
        configuration.maxConnections = 0
        let server = try ControlServer(configuration: configuration, handler: DaemonControlHandler(inboxes: [], version: "v", pipeline: nil) {}, logger: testLogger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            #expect(await eventually { FileManager.default.fileExists(atPath: configuration.path) })
            let path = configuration.path
            let error = await failure { try ControlClient(socketPath: path).send(.version) }
            #expect(error?.code == .daemonError)
            #expect(error?.daemonError?.code == ControlError.busy)
            server.stop()
            try await group.waitForAll()
        }
    }

    @Test("no socket at the path: socketMissing")
    func missingSocket() async throws {
        let directory = try TemporaryDirectory()
        for path in [directory.path + "/absent.sock", directory.path + "/absent/control.sock"] {
            let error = await failure { try ControlClient(socketPath: path).send(.status) }
            #expect(error?.code == .socketMissing)
            #expect(error?.errno == .noSuchFileOrDirectory)
        }
    }

    @Test("a stale socket nobody listens on, or a file that is no socket: connectionRefused")
    func refused() async throws {
        let directory = try TemporaryDirectory()
        let stale = directory.path + "/stale.sock"
        close(try UnixSockets.bound(at: stale))
        let plainFile = directory.path + "/plain"
        #expect(FileManager.default.createFile(atPath: plainFile, contents: Data("x".utf8)))
        for path in [stale, plainFile] {
            let error = await failure { try ControlClient(socketPath: path).send(.status) }
            #expect(error?.code == .connectionRefused)
        }
    }

    @Test("a daemon that accepts and never replies: timeout, within about the timeout")
    func silentDaemon() async throws {
        let listener = try SilentListener()
        let path = listener.path
        // Timed on the thread that blocks: the await around it also waits for a cooperative
        // thread, which other suites' blocking tests may hold for seconds.
        let measured = Locked(Duration.zero)
        let error = await failure {
            let started = ContinuousClock.now
            defer { measured.withLock { $0 = ContinuousClock.now - started } }
            return try ControlClient(socketPath: path, timeout: .milliseconds(300)).send(.status)
        }
        let elapsed = measured.withLock { $0 }
        #expect(error?.code == .timeout)
        #expect(elapsed >= .milliseconds(300))
        #expect(elapsed < .seconds(5))
    }

    @Test("a daemon whose listen backlog is full: timeout while connecting")
    func fullBacklog() async throws {
        // Backlog 0 holds one pending connection; this client takes it.
        let listener = try SilentListener(backlog: 0)
        let path = listener.path
        let occupant = try UnixSockets.connected(to: path)
        defer { close(occupant) }
        let error = await failure { try ControlClient(socketPath: path, timeout: .milliseconds(300)).send(.status) }
        #expect(error?.code == .timeout)
        #expect(error?.message.hasPrefix("the daemon accepted no connection") == true, "\(error?.message ?? "no error")")
    }

    @Test("replies that are not replies", arguments: [
        (String(repeating: "x", count: 5000) + "\n", ControlClientError.Code.malformedReply, "longer than 1024 bytes"),
        (#"{"id":1,"ok":true,"pad":""# + String(repeating: "x", count: 2000) + "\"}\n", .malformedReply, "longer than 1024 bytes"),
        ("not json\n", .malformedReply, "not a JSON object"),
        (#"{"id":1,"version":"1"}"# + "\n", .malformedReply, "no boolean \"ok\""),
        (#"{"id":1,"ok":false,"error":"bad"}"# + "\n", .malformedReply, "\"error\" object"),
        (#"{"id":2,"ok":true}"# + "\n", .malformedReply, "another request (id 2)"),
        (#"{"id":1,"ok":true}"#, .malformedReply, "without a newline"),
        ("", .connectionClosed, "without replying"),
    ])
    func badReplies(reply: String, code: ControlClientError.Code, excerpt: String) async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/bad.sock"
        try answerOnce(at: path, with: Array(reply.utf8))
        let error = await failure { try ControlClient(socketPath: path, timeout: .seconds(10), maxReplyLength: 1024).send(.version) }
        #expect(error?.code == code)
        #expect(error?.message.contains(excerpt) == true, "\(error?.message ?? "no error")")
    }

    @Test("a reply of exactly maxReplyLength bytes is accepted")
    func replyAtTheCap() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/cap.sock"
        let prefix = #"{"id":1,"ok":true,"pad":""#
        let line = prefix + String(repeating: "x", count: 1024 - prefix.utf8.count - 2) + "\"}"
        #expect(line.utf8.count == 1024)
        try answerOnce(at: path, with: Array((line + "\n").utf8))
        let fields = try await offPool { try ControlClient(socketPath: path, maxReplyLength: 1024).send(.version) }
        #expect(fields.keys.sorted() == ["pad"])
    }

    @Test("a socket path that does not fit in sockaddr_un: invalidSocketPath")
    func overlongPath() async {
        let error = await failure { try ControlClient(socketPath: "/tmp/" + String(repeating: "s", count: 200)).send(.status) }
        #expect(error?.code == .invalidSocketPath)
    }

    @Test("request and reply lines encode and parse back")
    func lines() throws {
        let request = ControlRequest(id: 7, command: .drain, arguments: ["exit": true])
        #expect(request.line == #"{"id":7,"cmd":"drain","args":{"exit":true}}"# + "\n")
        #expect(ControlRequest(id: 8, command: .status).line == #"{"id":8,"cmd":"status"}"# + "\n")
        #expect(try ControlRequest.parse(Array(request.line.utf8.dropLast())).get() == request)

        let success = ControlReply.success(id: 7, fields: ["drained": ["a"], "ok": false])
        #expect(success.line == #"{"id":7,"ok":true,"drained":["a"]}"# + "\n")
        #expect(try ControlReply.parse(Array(success.line.utf8.dropLast())).get() == .success(id: 7, fields: ["drained": ["a"]]))
        let failure = ControlReply.failure(id: .null, error: ControlError(code: ControlError.busy, message: "later"))
        #expect(failure.line == #"{"id":null,"ok":false,"error":{"code":"busy","message":"later"}}"# + "\n")
        #expect(try ControlReply.parse(Array(failure.line.utf8.dropLast())).get() == failure)
    }
}

/// The error `body` throws, when it is a client error; nil when it throws none. Runs off the
/// cooperative pool.
private func failure(_ body: @escaping @Sendable () throws -> some Sendable) async -> ControlClientError? {
    try? await offPool { () -> ControlClientError? in
        do {
            _ = try body()
            return nil
        } catch {
            return error as? ControlClientError
        }
    }
}
