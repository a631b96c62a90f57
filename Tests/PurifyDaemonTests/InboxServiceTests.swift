import Foundation
import Glibc
import Logging
import PurifyControl
@testable import PurifyDaemon
import PurifySystem
import PurifyTestSupport
import ServiceLifecycle
import Testing

/// Stands in for the pipeline: commits a copy of each file after a short delay, recording the
/// most files it ever saw in flight.
final class CopyingProcessor: ClaimedFileProcessor {
    let processed = Collected<String>()
    let maxInFlight = Locked(0)
    let delay: Duration

    init(delay: Duration = .milliseconds(2)) {
        self.delay = delay
    }

    func process(_ file: ClaimedFile, from spool: InboxSpool) async {
        let inFlight = spool.statistics.inFlight
        maxInFlight.withLock { $0 = max($0, inFlight) }
        let delay = self.delay
        let processed = self.processed
        Task.detached {
            try? await Task.sleep(for: delay)
            do {
                let bytes = try spool.contents(of: file)
                _ = try spool.commit(file, output: bytes, outputExtension: "png") { name in Array("{\"output\":\"\(name)\"}".utf8) }
                processed.append(file.originalName)
            } catch {
                Issue.record("commit failed: \(error)")
            }
        }
    }
}

/// Commits a copy of each file like ``CopyingProcessor``, but takes a failed commit in its
/// stride, as the daemon's pipeline does: the spool holds the file and retries it.
final class RetriedCopyingProcessor: ClaimedFileProcessor {
    let committed = Collected<String>()

    func process(_ file: ClaimedFile, from spool: InboxSpool) async {
        let committed = self.committed
        Task.detached {
            guard let bytes = try? spool.contents(of: file) else { return }
            if (try? spool.commit(file, output: bytes, outputExtension: "png", report: { name in Array("{\"output\":\"\(name)\"}".utf8) })) != nil {
                committed.append(file.originalName)
            }
        }
    }
}

@Suite("Inbox service (real files, inotify, service group)")
struct InboxServiceTests {
    struct Fixture {
        let root: TemporaryDirectory
        let inbox: String
        let staging: String
        let configuration: InboxConfiguration

        init(capacity: Int) throws {
            root = try TemporaryDirectory()
            inbox = try root.subdirectory("inbox")
            staging = try root.subdirectory("staging")
            configuration = InboxConfiguration(
                name: "mnist", path: inbox, outbox: root.path + "/outbox", bundlePath: "/unused",
                queueCapacity: capacity, spoolDirectory: root.path + "/spool"
            )
        }

        func drop(_ count: Int, prefix: String = "f") throws {
            for index in 0..<count {
                try writeFile(staging + "/\(prefix)\(index).png", "image \(index)")
                #expect(rename(staging + "/\(prefix)\(index).png", inbox + "/\(prefix)\(index).png") == 0)
            }
        }

        func outputs() throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: configuration.outbox).filter { !$0.hasPrefix(".") }
        }
    }

    /// Runs `service` in a ServiceGroup while `body` runs, then shuts the group down gracefully.
    private func running(_ service: InboxService, _ body: () async throws -> Void) async throws {
        let group = ServiceGroup(configuration: .init(services: [service], logger: testLogger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            #expect(await eventually { service.status.watcher.rescans >= 1 })
            try await body()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    @Test("a burst larger than the queue is processed exactly once, never more in flight than the capacity")
    func burst() async throws {
        let fixture = try Fixture(capacity: 3)
        let processor = CopyingProcessor()
        let service = try InboxService(configuration: fixture.configuration, processor: processor, settleInterval: .zero, logger: testLogger)
        try await running(service) {
            try writeFile(fixture.inbox + "/.in-progress.png")
            try fixture.drop(300)
            #expect(await eventually(timeout: .seconds(60)) { processor.processed.all.count == 300 })
        }
        #expect(Set(processor.processed.all).count == 300)
        #expect(processor.maxInFlight.withLock { $0 } <= 3)
        #expect(try fixture.outputs().count == 600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.inbox) == [".in-progress.png"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: service.spool.claimedDirectory).isEmpty)
        #expect(service.spool.statistics.committed == 300)
    }

    @Test("with rescan_interval_s the inbox is listed again on its own, as a network filesystem needs")
    func periodicRescan() async throws {
        let fixture = try Fixture(capacity: 4)
        var configuration = fixture.configuration
        configuration.rescanInterval = .milliseconds(100)
        let service = try InboxService(configuration: configuration, processor: CopyingProcessor(), settleInterval: .zero, logger: testLogger)
        try await running(service) {
            #expect(await eventually(timeout: .seconds(10)) { service.status.watcher.rescans >= 4 })
        }
        let quiet = try InboxService(configuration: fixture.configuration, processor: CopyingProcessor(), settleInterval: .zero, logger: testLogger)
        try await running(quiet) {
            try await Task.sleep(for: .milliseconds(500))
            #expect(quiet.status.watcher.rescans == 1)
        }
    }

    @Test("a full outbox stops claiming, shows in status, leaves no temporary file, and resumes by itself once space is freed: nothing lost, nothing written twice")
    func fullOutbox() async throws {
        let fixture = try Fixture(capacity: 4)
        let outbox = fixture.configuration.outbox
        try FileManager.default.createDirectory(atPath: outbox, withIntermediateDirectories: true)
        // A real full disk: a 64 KiB tmpfs (each file takes a 4 KiB page) as the outbox. It needs
        // root, as CI has; mount(8) failing fails the test.
        try runCommand("/bin/mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", outbox)
        defer { try? runCommand("/bin/umount", outbox) }
        let processor = RetriedCopyingProcessor()
        let service = try InboxService(configuration: fixture.configuration, processor: processor, settleInterval: .zero, logger: testLogger)
        let freed = try fixture.root.subdirectory("freed")
        /// Moves the finished outputs out of the outbox, as an operator freeing space would
        /// (commits in progress keep their dot-named temporary files).
        func freeSpace() {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: outbox)) ?? [] where !name.hasPrefix(".") {
                try? FileManager.default.moveItem(atPath: outbox + "/" + name, toPath: freed + "/" + name)
            }
        }
        try await running(service) {
            try fixture.drop(40)
            #expect(await eventually(timeout: .seconds(30)) { service.status.spool.writeFailure != nil })
            let stuck = service.status.spool
            #expect(stuck.committed < 40 && stuck.stalled >= 1)
            try await Task.sleep(for: .milliseconds(500))
            #expect(service.status.spool.claimed == stuck.claimed, "claiming went on while writes failed")
            #expect(try FileManager.default.contentsOfDirectory(atPath: outbox).allSatisfy { !$0.hasPrefix(".purifyd-") },
                    "a temporary file was left in the outbox")
            // No restart: freeing space is enough, and the backlog drains as room is made.
            #expect(await eventually(timeout: .seconds(90)) {
                freeSpace()
                return service.status.spool.committed == 40
            })
            #expect(service.status.spool.writeFailure == nil && service.status.spool.stalled == 0)
            #expect(service.status.spool.writeFailureEpisodes >= 1)
        }
        freeSpace()
        let outputs = try FileManager.default.contentsOfDirectory(atPath: freed)
        #expect(outputs.filter { $0.hasSuffix(".png") }.sorted() == (0..<40).map { "f\($0).png" }.sorted(),
                "an output is missing or was written twice")
        #expect(outputs.count == 80)
        #expect(Set(processor.committed.all).count == 40)
        #expect(try FileManager.default.contentsOfDirectory(atPath: service.spool.claimedDirectory).isEmpty)
    }


    @Test("pause stops claiming (files wait in the inbox); resume picks them up")
    func pauseAndResume() async throws {
        let fixture = try Fixture(capacity: 8)
        let processor = CopyingProcessor()
        let service = try InboxService(configuration: fixture.configuration, processor: processor, settleInterval: .zero, logger: testLogger)
        let handler = DaemonControlHandler(inboxes: [service], version: "1.2.3", pipeline: nil, requestShutdown: {})
        try await running(service) {
            #expect(try await handler.handle(ControlRequest(id: 1, command: .pause)) == ["paused": ["mnist"]])
            try fixture.drop(5)
            #expect(await eventually { service.status.waitingInInbox == 5 })
            try await Task.sleep(for: .milliseconds(200))
            #expect(processor.processed.all.isEmpty)
            #expect(service.status.waitingInInbox == 5)
            let status = try await handler.handle(ControlRequest(id: 2, command: .status))
            #expect(status["state"] == "paused")
            #expect(try await handler.handle(ControlRequest(id: 3, command: .resume)) == ["resumed": ["mnist"]])
            #expect(await eventually { processor.processed.all.count == 5 })
        }
    }

    @Test("files claimed before a crash are processed at the next start")
    func recoveryAtStart() async throws {
        let fixture = try Fixture(capacity: 4)
        // A first run claims two files and "crashes" before committing them.
        let crashed = InboxSpool(configuration: fixture.configuration, logger: testLogger)
        _ = try crashed.recover()
        try fixture.drop(2, prefix: "early")
        for name in ["early0.png", "early1.png"] {
            guard case .claimed = try crashed.claim(name) else { Issue.record("\(name) not claimed"); return }
        }
        let processor = CopyingProcessor()
        let service = try InboxService(configuration: fixture.configuration, processor: processor, settleInterval: .zero, logger: testLogger)
        try await running(service) {
            #expect(await eventually { Set(processor.processed.all) == ["early0.png", "early1.png"] })
        }
        #expect(service.spool.statistics.recovered == 2)
        #expect(try Set(fixture.outputs()) == ["early0.png", "early0.png.json", "early1.png", "early1.png.json"])
    }

    @Test("drain waits for the files in flight; status, metrics, rescan and version answer")
    func controlCommands() async throws {
        let fixture = try Fixture(capacity: 4)
        let processor = CopyingProcessor(delay: .milliseconds(300))
        let service = try InboxService(configuration: fixture.configuration, processor: processor, settleInterval: .zero, logger: testLogger)
        let shutdownRequested = Locked(false)
        let handler = DaemonControlHandler(inboxes: [service], version: "1.2.3", pipeline: nil, requestShutdown: { shutdownRequested.withLock { $0 = true } })
        try await running(service) {
            try fixture.drop(3)
            #expect(await eventually { service.spool.statistics.inFlight == 3 })
            let drained = try await handler.handle(ControlRequest(id: 1, command: .drain, arguments: ["exit": true]))
            #expect(drained == ["drained": ["mnist"], "exiting": true])
            #expect(service.spool.statistics.inFlight == 0 && processor.processed.all.count == 3)
            #expect(shutdownRequested.withLock { $0 })

            let status = try await handler.handle(ControlRequest(id: 2, command: .status))
            guard case .array(let inboxes)? = status["inboxes"], case .object(let inbox)? = inboxes.first else {
                Issue.record("no inboxes in status")
                return
            }
            #expect(inbox["committed"] == 3)
            #expect(inbox["paused"] == true)
            #expect(status["version"] == "1.2.3")

            let metrics = try await handler.handle(ControlRequest(id: 3, command: .metrics))
            guard case .string(let text)? = metrics["text"] else { Issue.record("no metrics text"); return }
            #expect(text.contains("# TYPE purifyd_files_committed_total counter\npurifyd_files_committed_total{inbox=\"mnist\"} 3\n"))

            let rescans = service.status.watcher.rescans
            #expect(try await handler.handle(ControlRequest(id: 4, command: .rescan, arguments: ["inbox": "mnist"])) == ["rescanning": ["mnist"]])
            #expect(await eventually { service.status.watcher.rescans == rescans + 1 })
            #expect(try await handler.handle(ControlRequest(id: 5, command: .version)) == ["version": "1.2.3"])
            await #expect(throws: ControlError(code: ControlError.invalidArgument, message: "no inbox named \"nope\"")) {
                try await handler.handle(ControlRequest(id: 6, command: .pause, arguments: ["inbox": "nope"]))
            }
            await #expect(throws: ControlError.self) { try await handler.handle(ControlRequest(id: 7, command: .reload)) }
        }
    }

    @Test("a claim that fails on a write shows in status and is retried until it goes through, without a rescan; a removed claimed/ is created again")
    func claimError() async throws {
        let fixture = try Fixture(capacity: 4)
        let processor = CopyingProcessor()
        let service = try InboxService(configuration: fixture.configuration, processor: processor, settleInterval: .zero, logger: testLogger)
        let handler = DaemonControlHandler(inboxes: [service], version: "1", pipeline: nil, requestShutdown: {})
        let claimed = service.spool.claimedDirectory
        try await running(service) {
            // A file where claimed/ should be: every claim (a rename into it) fails with ENOTDIR.
            try FileManager.default.removeItem(atPath: claimed)
            try writeFile(claimed, "in the way")
            try fixture.drop(1, prefix: "stuck")
            #expect(await eventually { service.status.lastError != nil })
            #expect(try FileManager.default.contentsOfDirectory(atPath: fixture.inbox) == ["stuck0.png"])
            let status = try await handler.handle(ControlRequest(id: 1, command: .status))
            guard case .array(let inboxes)? = status["inboxes"], case .object(let inbox)? = inboxes.first,
                  case .string(let lastError)? = inbox["last_error"], case .string(let writeFailure)? = inbox["write_failure"] else {
                Issue.record("no last_error or write_failure in status")
                return
            }
            #expect(status["state"] == "write_failing")
            #expect(lastError.hasPrefix("stuck0.png: renameat2"))
            #expect(writeFailure.contains("Not a directory"))
            // Once claimed/ is a folder again, the retry (1 s, then 2 s, …) claims the file.
            try FileManager.default.removeItem(atPath: claimed)
            try FileManager.default.createDirectory(atPath: claimed, withIntermediateDirectories: false)
            #expect(await eventually { processor.processed.all == ["stuck0.png"] })
            #expect(service.status.spool.writeFailure == nil && service.status.spool.writeFailureEpisodes == 1)
            // claimed/ removed: the next claim creates it again.
            try FileManager.default.removeItem(atPath: claimed)
            try fixture.drop(1, prefix: "again")
            #expect(await eventually { processor.processed.all == ["stuck0.png", "again0.png"] })
            #expect(service.status.spool.foldersRecreated == 1 && service.status.spool.writeFailure == nil)
        }
    }

    @Test("a spool on another mount than its inbox is refused at start", .enabled(if: FileManager.default.fileExists(atPath: "/dev/shm")))
    func crossMount() throws {
        let root = try TemporaryDirectory()
        let inbox = try root.subdirectory("inbox")
        let spoolRoot = "/dev/shm/purifyd-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: spoolRoot) }
        var inboxStatus = stat(), shmStatus = stat()
        stat(root.path, &inboxStatus)
        stat("/dev/shm", &shmStatus)
        try #require(inboxStatus.st_dev != shmStatus.st_dev, "/dev/shm must be another file system for this test")
        let configuration = InboxConfiguration(name: "x", path: inbox, outbox: root.path + "/outbox", bundlePath: "/unused", spoolDirectory: spoolRoot)
        let error = #expect(throws: DaemonError.self) { try InboxSpool(configuration: configuration, logger: testLogger).recover() }
        #expect(error?.code == .crossMount)
    }
}
