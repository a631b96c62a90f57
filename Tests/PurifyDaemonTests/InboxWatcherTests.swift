import Foundation
import Glibc
@testable import PurifyDaemon
import PurifySystem
import PurifyTestSupport
import Testing

@Suite("Inbox entry rules")
struct InboxEntryRulesTests {
    @Test("in-progress names are ignored whatever they are", arguments: [".name.Xa81bc", ".hidden", "image.tmp", "image.TMP", "image.png.part", ""])
    func inProgressNames(name: String) {
        #expect(InboxEntryRules.disposition(name: name, kind: nil) == .ignore)
        #expect(InboxEntryRules.disposition(name: name, kind: .regular) == .ignore)
    }

    @Test("regular files with ordinary names are processed", arguments: ["cat.png", "scan 01.JPG", "noextension", "a.tmp.png", "part"])
    func ordinaryNames(name: String) {
        #expect(InboxEntryRules.disposition(name: name, kind: nil) == .process)
        #expect(InboxEntryRules.disposition(name: name, kind: .regular) == .process)
    }

    @Test("directories are left alone; links, FIFOs, sockets and devices are rejected")
    func nonRegular() {
        #expect(InboxEntryRules.disposition(name: "sub", kind: .directory) == .ignore)
        for kind in [FileKind.symbolicLink, .fifo, .socket, .characterDevice, .blockDevice, .unknown] {
            guard case .reject = InboxEntryRules.disposition(name: "x.png", kind: kind) else {
                Issue.record("\(kind) is not rejected")
                continue
            }
        }
    }

    @Test("inotify event buffers parse, names NUL-padded")
    func parseEvents() {
        var bytes: [UInt8] = []
        func append(_ watch: Int32, _ mask: UInt32, _ name: String, padded length: Int) {
            withUnsafeBytes(of: watch.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: mask.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: UInt32(0)) { bytes += $0 }
            withUnsafeBytes(of: UInt32(length).littleEndian) { bytes += $0 }
            bytes += Array(name.utf8) + Array(repeating: 0, count: length - name.utf8.count)
        }
        append(1, UInt32(IN_CLOSE_WRITE), "a.png", padded: 16)
        append(-1, UInt32(IN_Q_OVERFLOW), "", padded: 0)
        append(1, UInt32(IN_MOVED_TO), "bb.jpg", padded: 32)
        #expect(InotifyEvent.parse(bytes[...]) == [
            InotifyEvent(watch: 1, mask: UInt32(IN_CLOSE_WRITE), cookie: 0, name: "a.png"),
            InotifyEvent(watch: -1, mask: UInt32(IN_Q_OVERFLOW), cookie: 0, name: ""),
            InotifyEvent(watch: 1, mask: UInt32(IN_MOVED_TO), cookie: 0, name: "bb.jpg"),
        ])
        // A truncated trailing event is dropped, not misread.
        #expect(InotifyEvent.parse(bytes[0..<(bytes.count - 4)]).count == 2)
    }
}

@Suite("Inbox watcher (real inotify)")
struct InboxWatcherTests {
    /// Runs a watcher on `inbox` while `body` drops files, collecting every reported name.
    private func watching(
        _ inbox: String,
        settle: Duration = .zero,
        beforeRun: (InboxWatcher) throws -> Void = { _ in },
        _ body: (InboxWatcher, Collected<String>) async throws -> Void
    ) async throws {
        let watcher = try InboxWatcher(path: inbox, settleInterval: settle, logger: testLogger)
        try beforeRun(watcher)
        let seen = Collected<String>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await watcher.run() }
            group.addTask { for await name in watcher.candidates { seen.append(name) } }
            #expect(await eventually { watcher.statistics.rescans >= 1 })
            try await body(watcher, seen)
            watcher.stop()
            try await group.waitForAll()
        }
    }

    @Test("cp, write-then-mv and rsync-style renames are each seen exactly once; dot and temp files never")
    func dropStyles() async throws {
        let root = try TemporaryDirectory()
        let inbox = try root.subdirectory("inbox")
        let staging = try root.subdirectory("staging")
        try await watching(inbox) { _, seen in
            try writeFile(staging + "/source.png", String(repeating: "x", count: 100_000))
            try runCommand("/bin/cp", staging + "/source.png", inbox + "/copied.png")
            try writeFile(staging + "/moved.png")
            try runCommand("/bin/mv", staging + "/moved.png", inbox + "/moved.png")
            try writeFile(inbox + "/.synced.png.Ab12Cd")
            try runCommand("/bin/mv", inbox + "/.synced.png.Ab12Cd", inbox + "/synced.png")
            try writeFile(inbox + "/.hidden.png")
            try writeFile(inbox + "/upload.png.part")
            try writeFile(inbox + "/download.tmp")
            #expect(await eventually { seen.all.count >= 3 })
            try await Task.sleep(for: .milliseconds(300))
            #expect(seen.all.sorted() == ["copied.png", "moved.png", "synced.png"])
        }
    }

    @Test("an entry whose name is not UTF-8 is renamed with %XX escapes and reported under that name, found by the rescan or an event")
    func nonUTF8Names() async throws {
        let root = try TemporaryDirectory()
        let inbox = try root.subdirectory("inbox")
        try writeRawNamedFile(in: inbox, Array("before-".utf8) + [0xFF, 0xFE] + Array(".png".utf8))
        try writeRawNamedFile(in: inbox, Array("caf".utf8) + [0xE9] + Array(".png".utf8))
        try writeRawNamedFile(in: inbox, [UInt8(ascii: ".")] + [0xFF] + Array(".part".utf8))
        try await watching(inbox) { _, seen in
            try writeRawNamedFile(in: inbox, Array("after-".utf8) + [0xC0, 0xAF] + Array(".png".utf8))
            #expect(await eventually { Set(seen.all).count >= 3 })
            try await Task.sleep(for: .milliseconds(300))
            #expect(Set(seen.all) == ["before-%FF%FE.png", "caf%E9.png", "after-%C0%AF.png"])
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: inbox)
        #expect(Set(names.filter { !$0.hasPrefix(".") }) == ["before-%FF%FE.png", "caf%E9.png", "after-%C0%AF.png"])
        // The in-progress name is its producer's business: left as it is.
        #expect(names.filter { $0.hasPrefix(".") }.count == 1)
    }

    /// Creates a file whose name is the bytes `name` (which need not be UTF-8) in `directory`.
    private func writeRawNamedFile(in directory: String, _ name: [UInt8]) throws {
        let path = Array(directory.utf8) + [UInt8(ascii: "/")] + name + [0]
        let fd = path.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_WRONLY | O_CREAT | O_EXCL, 0o644) }
        }
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        _ = write(fd, "data", 4)
        close(fd)
    }

    @Test("files already present are found by the start-up rescan; fresh ones only once they settle")
    func startupRescan() async throws {
        let root = try TemporaryDirectory()
        let inbox = try root.subdirectory("inbox")
        try writeFile(inbox + "/old.png")
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -60)], ofItemAtPath: inbox + "/old.png")
        try writeFile(inbox + "/.dot.png")
        try writeFile(inbox + "/fresh.png")
        let freshModified = try #require(try FileManager.default.attributesOfItem(atPath: inbox + "/fresh.png")[.modificationDate] as? Date)
        let settle = 0.6
        let watcher = try InboxWatcher(path: inbox, settleInterval: .milliseconds(600), logger: testLogger)
        let seen = Collected<(name: String, at: Date)>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await watcher.run() }
            group.addTask { for await name in watcher.candidates { seen.append((name, Date())) } }
            #expect(await eventually { Set(seen.all.map(\.name)).count == 2 })
            try await Task.sleep(for: .milliseconds(200))
            watcher.stop()
            try await group.waitForAll()
        }
        // One listing, the start-up one. A name may still come twice: a command another test spawns
        // can hold a copy of the descriptor that wrote the file between its fork and its exec, and
        // the last close, which raises IN_CLOSE_WRITE, is then the child's, after the watch exists.
        #expect(watcher.statistics.rescans == 1)
        #expect(Set(seen.all.map(\.name)) == ["fresh.png", "old.png"])
        let oldSeen = try #require(seen.all.firstIndex { $0.name == "old.png" })
        let freshSeen = try #require(seen.all.firstIndex { $0.name == "fresh.png" })
        #expect(oldSeen < freshSeen)
        #expect(seen.all[freshSeen].at.timeIntervalSince(freshModified) >= settle)
    }

    @Test("a hard link made into the inbox is reported once, without waiting for a rescan")
    func hardLink() async throws {
        let root = try TemporaryDirectory()
        let inbox = try root.subdirectory("inbox")
        let staging = try root.subdirectory("staging")
        try writeFile(staging + "/made-earlier.png")
        try await watching(inbox) { watcher, seen in
            let rescans = watcher.statistics.rescans
            #expect(link(staging + "/made-earlier.png", inbox + "/linked.png") == 0)
            #expect(await eventually { seen.all == ["linked.png"] })
            try await Task.sleep(for: .milliseconds(200))
            #expect(seen.all == ["linked.png"])
            #expect(watcher.statistics.rescans == rescans)
        }
    }

    @Test("a FIFO and a symlink are reported (for rejection) when created")
    func nonRegularEntries() async throws {
        let root = try TemporaryDirectory()
        let inbox = try root.subdirectory("inbox")
        try await watching(inbox) { _, seen in
            #expect(mkfifo(inbox + "/pipe.png", 0o600) == 0)
            #expect(symlink("/etc/passwd", inbox + "/link.png") == 0)
            #expect(await eventually { Set(seen.all) == ["pipe.png", "link.png"] })
        }
    }

    @Test("an inbox deleted and created again is watched again and rescanned")
    func vanishingInbox() async throws {
        let root = try TemporaryDirectory()
        let inbox = try root.subdirectory("inbox")
        try await watching(inbox) { watcher, seen in
            try FileManager.default.removeItem(atPath: inbox)
            #expect(await eventually { !watcher.statistics.isWatching })
            try FileManager.default.createDirectory(atPath: inbox, withIntermediateDirectories: false)
            #expect(await eventually { watcher.statistics.isWatching })
            try writeFile(inbox + "/after.png")
            #expect(await eventually { seen.all == ["after.png"] })
        }
    }

    @Test("an inbox missing at start is watched once it appears")
    func missingAtStart() async throws {
        let root = try TemporaryDirectory()
        let inbox = root.path + "/later"
        let watcher = try InboxWatcher(path: inbox, settleInterval: .zero, logger: testLogger)
        #expect(!watcher.statistics.isWatching)
        let seen = Collected<String>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await watcher.run() }
            group.addTask { for await name in watcher.candidates { seen.append(name) } }
            try FileManager.default.createDirectory(atPath: inbox, withIntermediateDirectories: false)
            // Once the first listing is done, the new file can only be reported by its event.
            #expect(await eventually { watcher.statistics.isWatching && watcher.statistics.rescans >= 1 })
            try writeFile(inbox + "/x.png")
            #expect(await eventually { seen.all == ["x.png"] })
            watcher.stop()
            try await group.waitForAll()
        }
    }

    @Test("IN_Q_OVERFLOW triggers a rescan that finds the files whose events were lost")
    func overflowRescans() async throws {
        let root = try TemporaryDirectory()
        let inbox = try root.subdirectory("inbox")
        let staging = try root.subdirectory("staging")
        let maxQueued = Int(try String(contentsOfFile: "/proc/sys/fs/inotify/max_queued_events", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 16384
        let fileCount = maxQueued + 500
        for index in 0..<fileCount {
            let fd = open(staging + "/f\(index).png", O_CREAT | O_WRONLY, 0o600)
            close(fd)
        }
        // The watch exists from init; nothing reads it yet, so these renames overflow the queue.
        let watcher = try InboxWatcher(path: inbox, settleInterval: .zero, logger: testLogger)
        for index in 0..<fileCount {
            #expect(rename(staging + "/f\(index).png", inbox + "/f\(index).png") == 0)
        }
        let seen = Collected<String>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await watcher.run() }
            group.addTask { for await name in watcher.candidates { seen.append(name) } }
            #expect(await eventually { watcher.statistics.overflows == 1 })
            #expect(await eventually { watcher.statistics.rescans == 2 })
            #expect(await eventually { Set(seen.all).count == fileCount })
            watcher.stop()
            try await group.waitForAll()
        }
    }

    @Test("requestRescan lists the folder again")
    func requestedRescan() async throws {
        let root = try TemporaryDirectory()
        let inbox = try root.subdirectory("inbox")
        try await watching(inbox) { watcher, seen in
            // A file still open for writing has raised no IN_CLOSE_WRITE: only a rescan (with
            // no settle interval) finds it.
            let descriptor = open(inbox + "/open.png", O_CREAT | O_WRONLY, 0o600)
            #expect(descriptor >= 0)
            defer { close(descriptor) }
            #expect(write(descriptor, "x", 1) == 1)
            try await Task.sleep(for: .milliseconds(200))
            #expect(seen.all.isEmpty)
            watcher.requestRescan()
            #expect(await eventually { seen.all == ["open.png"] })
        }
    }
}
