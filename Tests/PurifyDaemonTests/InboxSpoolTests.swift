import Foundation
import Glibc
import PurifyControl
@testable import PurifyDaemon
import PurifySystem
import PurifyTestSupport
import Testing

@Suite("Inbox spool (real files)")
struct InboxSpoolTests {
    struct Fixture {
        let root: TemporaryDirectory
        let inbox: String
        let spool: InboxSpool

        init(capacity: Int = 8, afterSuccess: (String) -> AfterSuccessPolicy = { _ in .delete }, maxBytes: Int = 1 << 20) throws {
            root = try TemporaryDirectory()
            inbox = try root.subdirectory("inbox")
            let configuration = InboxConfiguration(
                name: "test", path: inbox, outbox: root.path + "/outbox", bundlePath: "/unused",
                limits: InputLimits(maxBytes: maxBytes, maxPixels: 1 << 20, maxSide: 1024), queueCapacity: capacity,
                afterSuccess: afterSuccess(root.path + "/archive"), spoolDirectory: root.path + "/state/test",
                failedDirectory: root.path + "/failed"
            )
            spool = InboxSpool(configuration: configuration, logger: testLogger)
        }

        var outbox: String { spool.configuration.outbox }
        var failed: String { spool.configuration.failedDirectory }

        func contents(_ directory: String) throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        }

        /// Recovers the spool and claims "1.png", "2.png", … until it is full; returns the claims.
        @discardableResult
        func fill() throws -> [ClaimedFile] {
            _ = try spool.recover()
            return try (1...spool.configuration.queueCapacity).map { try claim("\($0).png") }
        }

        func claim(_ name: String, contents: String = "image bytes") throws -> ClaimedFile {
            try writeFile(inbox + "/" + name, contents)
            guard case .claimed(let file) = try spool.claim(name) else {
                throw DaemonError(code: .spoolConflict, message: "\(name) was not claimed")
            }
            return file
        }

        func commit(_ file: ClaimedFile, extension fileExtension: String = "png") throws -> CommittedOutput {
            try spool.commit(file, output: Array("purified \(file.originalName)".utf8), outputExtension: fileExtension) { outputName in
                Array("{\"output\":\"\(outputName)\"}".utf8)
            }
        }
    }

    @Test("claim moves the file into the spool; commit writes output then report and deletes the original")
    func claimAndCommit() throws {
        let fixture = try Fixture()
        #expect(try fixture.spool.recover().isEmpty)
        let file = try fixture.claim("cat.jpg")
        #expect(file.originalName == "cat.jpg")
        #expect(try fixture.contents(fixture.inbox).isEmpty)
        #expect(try fixture.contents(fixture.spool.claimedDirectory) == ["\(file.claimID)_cat.jpg"])
        #expect(fixture.spool.statistics.inFlight == 1)

        let committed = try fixture.commit(file)
        #expect(committed.outputPath == fixture.outbox + "/cat.png")
        #expect(committed.reportPath == fixture.outbox + "/cat.png.json")
        #expect(committed.archivedPath == nil)
        #expect(try fixture.contents(fixture.outbox) == ["cat.png", "cat.png.json"])
        #expect(try String(contentsOfFile: committed.outputPath, encoding: .utf8) == "purified cat.jpg")
        #expect(try String(contentsOfFile: committed.reportPath, encoding: .utf8) == "{\"output\":\"cat.png\"}")
        #expect(try fixture.contents(fixture.spool.claimedDirectory).isEmpty)
        #expect(try fixture.contents(fixture.spool.journalDirectory).isEmpty)
        let statistics = fixture.spool.statistics
        #expect(statistics.inFlight == 0 && statistics.claimed == 1 && statistics.committed == 1)
    }

    @Test("outputs never overwrite another input's output or report")
    func nameCollisions() throws {
        let fixture = try Fixture()
        _ = try fixture.spool.recover()
        try writeFile(fixture.outbox + "/dog.png.json", "a stray report")
        let first = try fixture.claim("cat.jpg")
        let second = try fixture.claim("cat.png")
        let third = try fixture.claim("dog.gif")
        #expect(try fixture.commit(first).outputPath.hasSuffix("/cat.png"))
        #expect(try fixture.commit(second).outputPath.hasSuffix("/cat-1.png"))
        #expect(try fixture.commit(third).outputPath.hasSuffix("/dog-1.png"))
        #expect(try fixture.contents(fixture.outbox) == ["cat-1.png", "cat-1.png.json", "cat.png", "cat.png.json", "dog-1.png", "dog-1.png.json", "dog.png.json"])
        #expect(try String(contentsOfFile: fixture.outbox + "/dog.png.json", encoding: .utf8) == "a stray report")
    }

    @Test("the archive policy moves originals aside, never replacing an archived file")
    func archivePolicy() throws {
        let fixture = try Fixture(afterSuccess: { .archive(directory: $0) })
        _ = try fixture.spool.recover()
        let archive = fixture.root.path + "/archive"
        let first = try fixture.claim("scan.png", contents: "first")
        #expect(try fixture.commit(first).archivedPath == archive + "/scan.png")
        let second = try fixture.claim("scan.png", contents: "second")
        #expect(try fixture.commit(second).archivedPath == archive + "/scan-1.png")
        #expect(try String(contentsOfFile: archive + "/scan.png", encoding: .utf8) == "first")
        #expect(try String(contentsOfFile: archive + "/scan-1.png", encoding: .utf8) == "second")
    }

    @Test("a failure moves the file to failed/ with a JSON report")
    func failure() throws {
        let fixture = try Fixture()
        _ = try fixture.spool.recover()
        let file = try fixture.claim("broken.jpg", contents: "not a jpeg")
        let failed = try fixture.spool.fail(file, code: "decode_failed", message: "Premature end of JPEG file", details: FailureDetails(stage: "decode"))
        #expect(failed.path == fixture.failed + "/broken.jpg")
        #expect(try String(contentsOfFile: failed.path, encoding: .utf8) == "not a jpeg")
        let report = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: URL(fileURLWithPath: failed.reportPath)))
        guard case .object(let members) = report else { Issue.record("report is not an object"); return }
        #expect(members["input"] == "broken.jpg")
        #expect(members["error"] == ["code": "decode_failed", "message": "Premature end of JPEG file"])
        #expect(members["details"] == ["stage": "decode"])
        #expect(fixture.spool.statistics.failed == 1 && fixture.spool.statistics.inFlight == 0)
        #expect(try fixture.contents(fixture.failed) == ["broken.jpg", "broken.jpg.error.json"])
    }

    @Test("FIFOs, symlinks, empty and oversized files are rejected unopened; the link target is untouched")
    func rejections() throws {
        let fixture = try Fixture(maxBytes: 10)
        _ = try fixture.spool.recover()
        try writeFile(fixture.root.path + "/target", "secret")
        #expect(symlink(fixture.root.path + "/target", fixture.inbox + "/link.png") == 0)
        #expect(mkfifo(fixture.inbox + "/pipe.png", 0o600) == 0)
        try writeFile(fixture.inbox + "/empty.png", "")
        try writeFile(fixture.inbox + "/big.png", String(repeating: "x", count: 11))
        var codes: [String: String] = [:]
        for name in ["link.png", "pipe.png", "empty.png", "big.png"] {
            guard case .rejected(let failed) = try fixture.spool.claim(name) else {
                Issue.record("\(name) was not rejected")
                continue
            }
            codes[name] = failed.code
            #expect(FileManager.default.fileExists(atPath: failed.reportPath))
        }
        #expect(codes == ["link.png": "not_regular_file", "pipe.png": "not_regular_file", "empty.png": "empty_file", "big.png": "too_large"])
        #expect(try String(contentsOfFile: fixture.root.path + "/target", encoding: .utf8) == "secret")
        #expect(try fixture.contents(fixture.inbox).isEmpty)
        #expect(fixture.spool.statistics.rejected == 4 && fixture.spool.statistics.inFlight == 0)
    }

    @Test("contents(of:) reads a claimed file and refuses links, FIFOs and oversized files")
    func contents() throws {
        let fixture = try Fixture(maxBytes: 16)
        _ = try fixture.spool.recover()
        let file = try fixture.claim("ok.png", contents: "0123456789")
        #expect(try fixture.spool.contents(of: file) == Array("0123456789".utf8))
        // Entries no claim would hand out, placed in the spool to check the reader's own guards.
        let claimed = fixture.spool.claimedDirectory
        #expect(symlink(file.path, claimed + "/x_link.png") == 0)
        #expect(mkfifo(claimed + "/x_pipe.png", 0o600) == 0)
        try writeFile(claimed + "/x_big.png", String(repeating: "x", count: 17))
        for name in ["link.png", "pipe.png", "big.png"] {
            let entry = ClaimedFile(claimID: "x", originalName: name, path: claimed + "/x_" + name, size: 0)
            let error = #expect(throws: DaemonError.self) { try fixture.spool.contents(of: entry) }
            #expect(error?.code == .inputRejected)
        }
    }

    @Test("vanished entries, in-progress names and directories are not claimed")
    func notClaimed() throws {
        let fixture = try Fixture()
        _ = try fixture.spool.recover()
        #expect(try fixture.spool.claim("gone.png") == .vanished)
        try writeFile(fixture.inbox + "/.partial.png")
        #expect(try fixture.spool.claim(".partial.png") == .ignored)
        _ = try fixture.root.subdirectory("inbox/folder")
        #expect(try fixture.spool.claim("folder") == .ignored)
        #expect(try fixture.contents(fixture.inbox) == [".partial.png", "folder"])
        #expect(fixture.spool.statistics.claimed == 0)
    }

    @Test("a claimed file removed by someone else is recorded in failed/ as vanished_from_spool, once")
    func vanishedClaim() throws {
        let fixture = try Fixture()
        _ = try fixture.spool.recover()
        let file = try fixture.claim("gone.png")
        try FileManager.default.removeItem(atPath: file.path)
        let failed = try fixture.spool.fail(file, code: "read_failed", message: "No such file or directory")
        #expect(failed.code == "vanished_from_spool")
        let report = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: URL(fileURLWithPath: failed.reportPath)))
        guard case .object(let members) = report, case .object(let details)? = members["details"] else {
            Issue.record("report is not an object with details")
            return
        }
        #expect(members["input"] == "gone.png")
        #expect(details["pipeline_error"] == ["code": "read_failed", "message": "No such file or directory"])
        let statistics = fixture.spool.statistics
        #expect(statistics.vanished == 1 && statistics.failed == 1 && statistics.inFlight == 0 && statistics.writeFailure == nil)
        #expect(try fixture.contents(fixture.failed) == ["gone.png.error.json"])
    }

    @Test("spool folders removed while running are created again: the claim and the commit go through")
    func removedFolders() async throws {
        let fixture = try Fixture()
        _ = try fixture.spool.recover()
        try FileManager.default.removeItem(atPath: fixture.spool.claimedDirectory)
        let file = try fixture.claim("a.png")
        #expect(FileManager.default.fileExists(atPath: file.path))
        try FileManager.default.removeItem(atPath: fixture.outbox)
        try FileManager.default.removeItem(atPath: fixture.spool.journalDirectory)
        // The commit finds the outbox gone: the file is held, the folders come back, and the
        // retry commits it.
        #expect(throws: SystemError.self) { try fixture.commit(file) }
        #expect(fixture.spool.statistics.writeFailure != nil && fixture.spool.statistics.stalled == 1)
        #expect(FileManager.default.fileExists(atPath: fixture.outbox) && FileManager.default.fileExists(atPath: fixture.spool.journalDirectory))
        #expect(await fixture.spool.takeStalled(backoff: .zero) == [file])
        #expect(try fixture.commit(file).outputPath == fixture.outbox + "/a.png")
        let statistics = fixture.spool.statistics
        #expect(statistics.writeFailure == nil && statistics.committed == 1 && statistics.foldersRecreated == 2)
        #expect(try fixture.contents(fixture.outbox) == ["a.png", "a.png.json"])
    }

    @Test("a write-failure episode ends when a held file retried goes through, not when a commit already under way does")
    func episodeEndsWithARetry() async throws {
        let fixture = try Fixture()
        _ = try fixture.spool.recover()
        let held = try fixture.claim("held.png")
        let underWay = try fixture.claim("under-way.png")
        // A file where the outbox should be: the commit fails with ENOTDIR and is held.
        try FileManager.default.removeItem(atPath: fixture.outbox)
        try writeFile(fixture.outbox, "in the way")
        #expect(throws: SystemError.self) { try fixture.commit(held) }
        #expect(fixture.spool.statistics.writeFailure != nil && fixture.spool.statistics.stalled == 1)
        try FileManager.default.removeItem(atPath: fixture.outbox)
        try FileManager.default.createDirectory(atPath: fixture.outbox, withIntermediateDirectories: false)
        _ = try fixture.commit(underWay)
        #expect(fixture.spool.statistics.writeFailure != nil, "a commit that was under way ended the episode")
        #expect(await fixture.spool.takeStalled(backoff: .zero) == [held])
        _ = try fixture.commit(held)
        let statistics = fixture.spool.statistics
        #expect(statistics.writeFailure == nil && statistics.writeFailureEpisodes == 1 && statistics.inFlight == 0)
    }

    @Test("the backoff before retrying held files ends as soon as writes succeed again")
    func backoffEndsEarly() async throws {
        let fixture = try Fixture()
        _ = try fixture.spool.recover()
        let held = try fixture.claim("held.png")
        try FileManager.default.removeItem(atPath: fixture.outbox)
        try writeFile(fixture.outbox, "in the way")
        #expect(throws: SystemError.self) { try fixture.commit(held) }
        try FileManager.default.removeItem(atPath: fixture.outbox)
        try FileManager.default.createDirectory(atPath: fixture.outbox, withIntermediateDirectories: false)
        let started = ContinuousClock.now
        let retry = Task { await fixture.spool.takeStalled(backoff: .seconds(60)) }
        try await Task.sleep(for: .milliseconds(200))
        // A claim that goes through (a rename into the spool) shows that writes succeed.
        _ = try fixture.claim("next.png")
        #expect(await retry.value == [held])
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    @Test("a name too long to claim is moved to failed/ under a shortened name, its report naming the original")
    func nameTooLong() throws {
        let fixture = try Fixture()
        _ = try fixture.spool.recover()
        let name = String(repeating: "L", count: 251) + ".png"
        try writeFile(fixture.inbox + "/" + name)
        guard case .rejected(let failed) = try fixture.spool.claim(name) else {
            Issue.record("a 255-byte name was not rejected")
            return
        }
        #expect(failed.code == "name_too_long")
        #expect(FilePaths.lastComponent(of: failed.reportPath).utf8.count <= Int(NAME_MAX))
        let report = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: URL(fileURLWithPath: failed.reportPath)))
        guard case .object(let members) = report else { Issue.record("report is not an object"); return }
        #expect(members["input"] == .string(name))
        #expect(try fixture.contents(fixture.inbox).isEmpty)
    }

    @Test("recovery requeues claimed files with no journal and removes stale temporary files")
    func recoverUnfinished() throws {
        let fixture = try Fixture()
        _ = try fixture.spool.recover()
        let file = try fixture.claim("a.png")
        // A crash while the output was being written: its temporary file is left in the outbox.
        try writeFile(fixture.outbox + "/.purifyd-test-\(file.claimID).output", "half")
        try writeFile(fixture.outbox + "/.purifyd-other-\(file.claimID).output", "another inbox's")

        let restarted = InboxSpool(configuration: fixture.spool.configuration, logger: testLogger)
        let recovered = try restarted.recover()
        #expect(recovered == [file])
        #expect(restarted.statistics.inFlight == 1 && restarted.statistics.recovered == 1)
        #expect(try fixture.contents(fixture.outbox) == [".purifyd-other-\(file.claimID).output"])
        _ = try restarted.commitTestOutput(recovered[0])
        #expect(try fixture.contents(fixture.outbox).filter { !$0.hasPrefix(".") } == ["a.png", "a.png.json"])
    }

    @Test("recovery finishes a commit whose journal was written, wherever the crash hit", arguments: [0, 1, 2])
    func recoverJournal(completedRenames: Int) throws {
        let fixture = try Fixture()
        _ = try fixture.spool.recover()
        let file = try fixture.claim("b.jpg")
        // Reproduce the state a crash leaves: temporary files written, journal durable, and
        // `completedRenames` of the journal's renames done.
        let outputTemporary = fixture.outbox + "/.purifyd-test-\(file.claimID).output"
        let reportTemporary = fixture.outbox + "/.purifyd-test-\(file.claimID).report"
        try writeFile(outputTemporary, "output")
        try writeFile(reportTemporary, "report")
        let journal = SpoolJournal(renames: [
            .init(from: outputTemporary, to: fixture.outbox + "/b.png"),
            .init(from: reportTemporary, to: fixture.outbox + "/b.png.json"),
        ], removals: [file.path])
        try Data(journal.encoded()).write(to: URL(fileURLWithPath: fixture.spool.journalDirectory + "/\(file.claimID).json"))
        for rename in journal.renames.prefix(completedRenames) {
            #expect(Glibc.rename(rename.from, rename.to) == 0)
        }

        let restarted = InboxSpool(configuration: fixture.spool.configuration, logger: testLogger)
        #expect(try restarted.recover().isEmpty)
        #expect(try fixture.contents(fixture.outbox) == ["b.png", "b.png.json"])
        #expect(try String(contentsOfFile: fixture.outbox + "/b.png.json", encoding: .utf8) == "report")
        #expect(try fixture.contents(fixture.spool.claimedDirectory).isEmpty)
        #expect(try fixture.contents(fixture.spool.journalDirectory).isEmpty)
    }

    @Test("waitForCapacity holds the claim loop while the queue is full")
    func backpressure() async throws {
        let fixture = try Fixture(capacity: 2)
        let first = try fixture.fill()[0]
        let resumed = Locked(false)
        let spool = fixture.spool
        let waiter = Task {
            await spool.waitForCapacity()
            resumed.withLock { $0 = true }
        }
        #expect(await eventually { spool.statistics.isWaitingForCapacity })
        try await Task.sleep(for: .milliseconds(100))
        #expect(!resumed.withLock { $0 })
        _ = try fixture.commit(first)
        await waiter.value
        #expect(resumed.withLock { $0 })
        #expect(!spool.statistics.isWaitingForCapacity)
    }

    @Test("a larger capacity (a reload) lets a waiting claim go on; a smaller one holds the next")
    func capacityChange() async throws {
        let fixture = try Fixture(capacity: 1)
        try fixture.fill()
        let spool = fixture.spool
        let waiter = await spool.taskWaitingForCapacity()
        spool.setCapacity(2)
        await waiter.value
        #expect(spool.statistics.capacity == 2)
        #expect(!spool.statistics.isWaitingForCapacity)
        _ = try fixture.claim("2.png")
        spool.setCapacity(1)
        let held = await spool.taskWaitingForCapacity()
        held.cancel()
        await held.value
    }

    @Test("waitForCapacity returns when its task is cancelled")
    func backpressureCancelled() async throws {
        let fixture = try Fixture(capacity: 1)
        try fixture.fill()
        let spool = fixture.spool
        let waiter = await spool.taskWaitingForCapacity()
        waiter.cancel()
        await waiter.value
        #expect(!spool.statistics.isWaitingForCapacity)
    }
}

private extension InboxSpool {
    /// A task waiting for room in the spool, returned once the spool reports it waiting.
    func taskWaitingForCapacity() async -> Task<Void, Never> {
        let waiter = Task { await waitForCapacity() }
        #expect(await eventually { self.statistics.isWaitingForCapacity })
        return waiter
    }

    func commitTestOutput(_ file: ClaimedFile) throws -> CommittedOutput {
        try commit(file, output: Array("out".utf8), outputExtension: "png") { _ in Array("{}".utf8) }
    }
}
