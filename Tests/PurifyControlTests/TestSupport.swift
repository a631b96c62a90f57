import Foundation
import Glibc
import Logging
import PurifyControl
import PurifyDaemon
import PurifySystem
import PurifyTestSupport
import Testing

let testLogger: Logger = {
    var logger = Logger(label: "purifyctl.tests")
    logger.logLevel = .critical
    return logger
}()

/// Never handed a file: the inbox is not running in these tests.
struct UnusedProcessor: ClaimedFileProcessor {
    func process(_ file: ClaimedFile, from spool: InboxSpool) async {
        Issue.record("no file should be claimed")
    }
}

/// Stands in for the image pipeline's part of the answers.
struct StandInPipeline: PipelineControl {
    static let statistics = PipelineStatistics(
        latency: ["decode": .init(count: 3, p50: 1.25, p90: 4.25, p99: 4.5, max: 4.5),
                  "purify": .init(count: 3, p50: 12.5, p90: 30.25, p99: 30.5, max: 30.5)],
        latencyWindow: 2048, throughputPerSecond: 41.5, totalThroughputPerSecond: 40.5,
        inboxes: ["mnist": .init(purified: 3)])

    static let bundle = LoadedBundle(inbox: "mnist", name: "mnist", version: "1.0.0", directory: "/models/mnist",
                                     purifierSHA256: String(repeating: "a", count: 64), classifierSHA256: nil, classifies: false)

    func status() async -> PipelineStatus {
        PipelineStatus(bundles: [Self.bundle])
    }

    func statistics() async -> PipelineStatistics { Self.statistics }

    func metrics() async -> String {
        "# TYPE purifyd_images_purified_total counter\npurifyd_images_purified_total 7\n"
    }

    func reload() async throws(ReloadRefusal) -> ReloadOutcome {
        ReloadOutcome(bundles: [Self.bundle], restartRequired: [], configuration: DaemonConfiguration(inboxes: []))
    }
}

/// The daemon's real control stack (a `ControlServer` answering through a
/// `DaemonControlHandler`) over one real inbox, `mnist`, that is not running, and a stand-in
/// pipeline; the socket lives in a temporary directory.
final class ServedDaemon: Sendable {
    static let version = "1.2.3-test"

    let root: TemporaryDirectory
    let socketPath: String
    let inbox: InboxService
    /// Set when `drain` with `exit` asks the daemon to shut down.
    let shutdownRequested = Locked(false)

    private init() throws {
        root = try TemporaryDirectory()
        socketPath = root.path + "/control.sock"
        let inboxPath = root.path + "/inbox"
        try FileManager.default.createDirectory(atPath: inboxPath, withIntermediateDirectories: true)
        inbox = try InboxService(
            configuration: InboxConfiguration(
                name: "mnist", path: inboxPath, outbox: root.path + "/outbox", bundlePath: "/unused",
                queueCapacity: 8, spoolDirectory: root.path + "/spool"
            ),
            processor: UnusedProcessor(),
            logger: testLogger
        )
    }

    /// Serves the control socket while `body` runs, then stops the server.
    static func serving(_ body: (ServedDaemon) async throws -> Void) async throws {
        let daemon = try ServedDaemon()
        let handler = DaemonControlHandler(inboxes: [daemon.inbox], version: version, pipeline: StandInPipeline()) {
            daemon.shutdownRequested.withLock { $0 = true }
        }
        let server = try ControlServer(configuration: .init(path: daemon.socketPath), handler: handler, logger: testLogger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            #expect(await eventually { FileManager.default.fileExists(atPath: daemon.socketPath) })
            try await body(daemon)
            server.stop()
            try await group.waitForAll()
        }
    }
}

/// Accepts one connection on a listening socket at `path`, reads the request line, writes
/// `reply` as given (no newline added) and closes: a daemon that answers badly.
func answerOnce(at path: String, with reply: [UInt8]) throws {
    let listener = try UnixSockets.bound(at: path, backlog: 8)
    try SystemThread.start(name: "test-answer") {
        let connection = accept(listener, nil, nil)
        close(listener)
        guard connection >= 0 else { return }
        var byte: UInt8 = 0
        while read(connection, &byte, 1) == 1, byte != UInt8(ascii: "\n") {}
        var offset = 0
        while offset < reply.count {
            let written = reply.withUnsafeBytes { write(connection, $0.baseAddress! + offset, $0.count - offset) }
            if written <= 0 { break }
            offset += written
        }
        close(connection)
    }
}
