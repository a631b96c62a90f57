import Foundation
import Glibc
import Logging
import PurifyDaemon
import PurifyTestSupport
import ServiceLifecycle
import Synchronization
import Testing

@Suite("systemd glue")
struct SystemdTests {
    /// Generous: in a full parallel `swift test` on two loaded cores, the assembled daemon has
    /// taken over 5 s to send READY=1 (0.1 s when run alone).
    static let notifyTimeout = Duration.seconds(30)

    @Test("sd_notify datagrams reach a path socket and an abstract one", arguments: [false, true])
    func notify(abstract: Bool) throws {
        let directory = try TemporaryDirectory()
        let socket = try abstract ? NotifySocket(abstractWithTimeout: Self.notifyTimeout)
            : NotifySocket(address: directory.path + "/notify", receiveTimeout: Self.notifyTimeout)
        let notifier = try #require(SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.address]))
        try notifier.notifyReady(status: "ready: 2 inboxes\nwatching")
        #expect(socket.receive() == "READY=1\nSTATUS=ready: 2 inboxes watching")
        try notifier.notifyStatus("3 in flight")
        #expect(socket.receive() == "STATUS=3 in flight")
        try notifier.notifyWatchdog()
        #expect(socket.receive() == "WATCHDOG=1")
    }

    @Test("no notifier outside a Type=notify service")
    func noNotifier() {
        #expect(SystemdNotifier(environment: [:]) == nil)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "relative"]) == nil)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "@"]) == nil)
    }

    @Test("the watchdog interval is half of WATCHDOG_USEC, for this process only")
    func watchdogInterval() throws {
        let notifier = try #require(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/run/systemd/notify"]))
        #expect(SystemdNotifyService(notifier: notifier, environment: ["WATCHDOG_USEC": "30000000"]).watchdogInterval == .seconds(15))
        #expect(SystemdNotifyService(notifier: notifier, environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(getpid())"]).watchdogInterval == .seconds(15))
        #expect(SystemdNotifyService(notifier: notifier, environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"]).watchdogInterval == nil)
        #expect(SystemdNotifyService(notifier: notifier, environment: [:]).watchdogInterval == nil)
    }

    @Test("the notify service pings the watchdog, then sends STOPPING=1 on graceful shutdown")
    func notifyService() async throws {
        let directory = try TemporaryDirectory()
        let socket = try NotifySocket(address: directory.path + "/notify", receiveTimeout: Self.notifyTimeout)
        let notifier = try #require(SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.address]))
        let service = SystemdNotifyService(notifier: notifier, watchdogInterval: .milliseconds(20), stoppingStatus: "draining")
        let group = ServiceGroup(configuration: .init(services: [service], logger: testLogger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await Task.sleep(for: .milliseconds(150))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        var messages: [String] = []
        while let message = socket.receive(), !message.isEmpty {
            messages.append(message)
            if message.hasPrefix("STOPPING") { break }
        }
        #expect(messages.filter { $0 == "WATCHDOG=1" }.count >= 3)
        #expect(messages.last == "STOPPING=1\nSTATUS=draining")
    }

    @Test("journal lines carry <N> priorities and no timestamp; terminal lines a timestamp")
    func logFormats() {
        let lines = Collected<String>()
        var journal = Logger(label: "purifyd") { DaemonLogHandler(label: $0, format: .journal, threshold: LogThreshold(.debug), write: { lines.append($0) }) }
        journal[metadataKey: "inbox"] = "mnist"
        journal.warning("disk\nalmost full", metadata: ["path": "/a b"])
        journal.error("boom")
        journal.debug("detail")
        journal.trace("dropped below the level")
        #expect(lines.all == [
            "<4>disk almost full inbox=mnist path=\"/a b\"\n",
            "<3>boom inbox=mnist\n",
            "<7>detail inbox=mnist\n",
        ])
        let terminalLines = Collected<String>()
        let terminal = Logger(label: "purifyd") { DaemonLogHandler(label: $0, format: .terminal, write: { terminalLines.append($0) }) }
        terminal.notice("started")
        let line = terminalLines.all.first
        #expect(line?.hasSuffix(" notice purifyd: started\n") == true)
        #expect(line?.first?.isNumber == true)
    }

    @Test("loggers made with one threshold follow a change of its level at once")
    func sharedThreshold() {
        let lines = Collected<String>()
        let threshold = LogThreshold(.info)
        let first = Logger(label: "a") { DaemonLogHandler(label: $0, format: .journal, threshold: threshold, write: { lines.append($0) }) }
        let second = Logger(label: "b") { DaemonLogHandler(label: $0, format: .journal, threshold: threshold, write: { lines.append($0) }) }
        first.debug("hidden")
        threshold.level = .debug
        first.debug("shown")
        second.debug("shown too")
        threshold.level = .error
        second.warning("hidden again")
        #expect(lines.all == ["<7>shown\n", "<7>shown too\n"])
    }

    @Test("JOURNAL_STREAM selects the journal format only when it names standard error")
    func journalDetection() {
        var status = stat()
        fstat(2, &status)
        #expect(DaemonLogHandler.Format.detect(environment: ["JOURNAL_STREAM": "\(status.st_dev):\(status.st_ino)"]) == .journal)
        #expect(DaemonLogHandler.Format.detect(environment: ["JOURNAL_STREAM": "\(status.st_dev):\(status.st_ino &+ 1)"]) == .terminal)
        #expect(DaemonLogHandler.Format.detect(environment: ["JOURNAL_STREAM": "garbage"]) == .terminal)
        #expect(DaemonLogHandler.Format.detect(environment: [:]) == .terminal)
    }
}
