#if canImport(Glibc)
internal import Glibc
#endif
internal import CPurifySystem
public import Logging
public import ServiceLifecycle
internal import PurifySystem

/// Watches one inbox folder with Linux inotify and reports the names of files that may be ready
/// to claim through ``candidates``.
///
/// Uses Glibc's inotify directly rather than libinotifytools: that library keeps one global,
/// thread-unsafe instance and a static event buffer, which rules out one watcher per inbox.
///
/// - Reported: IN_CLOSE_WRITE (a producer wrote the file and closed it) and IN_MOVED_TO (a file
///   written elsewhere, or under a dot/temp name, was renamed in). Non-regular entries (symlinks,
///   FIFOs) are reported on IN_CREATE so the spool can reject them visibly, and so are hard links
///   (`ln`: a regular file with more than one name, which no close will follow) once settled.
///   Names the ``InboxEntryRules`` ignore are never reported. An entry whose name is not valid
///   UTF-8 is renamed in the inbox first, each invalid byte written `%XX` (a Swift `String`, and
///   so the spool and the reports, cannot carry such a name), and reported under its new name.
/// - Rescans: the folder is listed at start, when the kernel's event queue overflowed
///   (IN_Q_OVERFLOW: events were lost), when the inbox reappears, and on ``requestRescan()``.
///   A regular file modified less than `settleInterval` ago is not reported by a rescan (its
///   producer may still be writing; its close will raise an event) but is looked at again, alone,
///   once the interval has passed.
/// - An inbox that is deleted or moved away (IN_DELETE_SELF, IN_MOVE_SELF, IN_IGNORED) is watched
///   again, and rescanned, as soon as a directory is back at its path.
///
/// The blocking `poll` runs on a thread of the watcher's own, never on Swift's cooperative pool.
/// ``run()`` may be called once; it returns when graceful shutdown or cancellation stops the
/// thread, and ``candidates`` then ends.
public final class InboxWatcher: Service, Sendable {
    /// The watched folder.
    public let path: String
    /// The names of files that may be ready, deduplicated while they wait.
    public let candidates = InboxCandidates()

    /// Counters for status output.
    public struct Statistics: Sendable, Equatable {
        /// Whether the inbox folder is currently watched (false while it is missing).
        public var isWatching = false
        /// How many listings of the folder have completed (each counted once its finds are reported).
        public var rescans = 0
        /// How many IN_Q_OVERFLOW events arrived.
        public var overflows = 0
    }

    private struct Shared {
        var statistics = Statistics()
        var stopRequested = false
        var rescanRequested = false
        var started = false
        var exited = false
        var exitWaiter: CheckedContinuation<Void, Never>?
    }

    private let settleInterval: Double
    private let missingInboxPollInterval: Int32 = 250
    private let logger: Logger
    private let inotifyFD: Int32
    private let initialWatch: Int32?
    private let wakeFD: Int32
    private let shared = Locked(Shared())

    /// Creates the inotify instance and adds the watch, so events are queued from here on; they
    /// are read once ``run()`` starts the thread.
    ///
    /// - Parameters:
    ///   - path: The inbox folder (it may be missing at start; it is watched once it appears).
    ///   - settleInterval: How old a file's modification time must be before a rescan reports it.
    ///   - logger: Where vanishing inboxes and overflows are logged.
    public init(path: String, settleInterval: Duration = .seconds(2), logger: Logger) throws {
        self.path = path
        let components = settleInterval.components
        self.settleInterval = Double(components.seconds) + Double(components.attoseconds) / 1e18
        self.logger = logger
        self.inotifyFD = try SystemCall.retrying("inotify_init1") { inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC)) }
        do {
            self.wakeFD = try SystemCall.retrying("eventfd") { CPurify_eventfdNonblocking() }
        } catch {
            close(inotifyFD)
            throw error
        }
        let watch = inotify_add_watch(inotifyFD, path, Self.watchMask)
        self.initialWatch = watch >= 0 ? watch : nil
        shared.withLock { $0.statistics.isWatching = watch >= 0 }
    }

    deinit {
        close(inotifyFD)
        close(wakeFD)
    }

    /// A snapshot of the watcher's counters.
    public var statistics: Statistics {
        shared.withLock { $0.statistics }
    }

    /// Asks the watcher thread to list the folder again (the control socket's `rescan`).
    public func requestRescan() {
        shared.withLock { $0.rescanRequested = true }
        wake()
    }

    public func run() async throws {
        let alreadyStarted = shared.withLock { shared in
            defer { shared.started = true }
            return shared.started
        }
        guard !alreadyStarted else {
            throw DaemonError(code: .alreadyStarted, message: "InboxWatcher.run() called twice for \(path)")
        }
        try SystemThread.start(name: "inotify") { [self] in
            watchLoop()
            candidates.finish()
            let waiter = shared.withLock { shared in
                shared.exited = true
                defer { shared.exitWaiter = nil }
                return shared.exitWaiter
            }
            waiter?.resume()
        }
        await withTaskCancellationOrGracefulShutdownHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let exited = shared.withLock { shared in
                    if !shared.exited { shared.exitWaiter = continuation }
                    return shared.exited
                }
                if exited { continuation.resume() }
            }
        } onCancelOrGracefulShutdown: {
            self.stop()
        }
    }

    /// Stops the watcher thread; ``run()`` then returns and ``candidates`` ends.
    public func stop() {
        shared.withLock { $0.stopRequested = true }
        wake()
    }

    private func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, MemoryLayout<UInt64>.size)
    }

    // MARK: - The watcher thread

    private static let watchMask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF)
        | UInt32(IN_ONLYDIR) | UInt32(IN_EXCL_UNLINK)

    /// The watcher thread's body: everything here is confined to that thread except `shared`.
    private func watchLoop() {
        var watch = initialWatch
        var rescanNeeded = true
        var unsettled: Set<String> = []
        var unsettledDue: Double?
        var reportedMissing = false
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)

        while true {
            let requests = shared.withLock { shared in
                defer { shared.rescanRequested = false }
                return (stop: shared.stopRequested, rescan: shared.rescanRequested)
            }
            if requests.stop { return }
            if requests.rescan { rescanNeeded = true }

            if watch == nil {
                let descriptor = inotify_add_watch(inotifyFD, path, Self.watchMask)
                if descriptor >= 0 {
                    watch = descriptor
                    rescanNeeded = true
                    if reportedMissing { logger.notice("inbox is back; watching it again", metadata: ["inbox": "\(path)"]) }
                    reportedMissing = false
                } else if !reportedMissing {
                    let reason = String(cString: strerror(errno))
                    logger.warning("cannot watch inbox; retrying until it exists", metadata: ["inbox": "\(path)", "reason": "\(reason)"])
                    reportedMissing = true
                }
                shared.withLock { $0.statistics.isWatching = watch != nil }
            }
            if rescanNeeded, watch != nil {
                rescanNeeded = false
                unsettled = rescan()
                unsettledDue = nextDue(unsettled)
            }

            var timeout: Int32 = -1
            if watch == nil {
                timeout = missingInboxPollInterval
            } else if let unsettledDue {
                timeout = Int32(max(0, min(60_000, (unsettledDue - FileSystem.wallClockNow()) * 1000 + 1)))
            }
            var descriptors = [
                pollfd(fd: inotifyFD, events: Int16(POLLIN), revents: 0),
                pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&descriptors, 2, timeout)
            if ready < 0, errno != EINTR {
                logger.error("poll failed on the inotify descriptor", metadata: ["inbox": "\(path)", "errno": "\(errno)"])
                return
            }
            if descriptors[1].revents != 0 {
                var counter: UInt64 = 0
                _ = read(wakeFD, &counter, MemoryLayout<UInt64>.size)
            }
            if descriptors[0].revents != 0 {
                // Hard links raise no close: like a rescan's finds, they are reported once settled.
                unsettled.formUnion(reportSettled(readEvents(buffer: &buffer, watch: &watch, rescanNeeded: &rescanNeeded)))
                unsettledDue = unsettledDue ?? nextDue(unsettled)
            }
            if let due = unsettledDue, FileSystem.wallClockNow() >= due {
                unsettled = reportSettled(unsettled)
                unsettledDue = nextDue(unsettled)
            }
        }
    }

    /// Drains the inotify descriptor and acts on each event. Returns the hard links created in
    /// the inbox, for the caller to report once settled.
    private func readEvents(buffer: inout [UInt8], watch: inout Int32?, rescanNeeded: inout Bool) -> [String] {
        var linked: [String] = []
        while true {
            let count = buffer.withUnsafeMutableBytes { read(inotifyFD, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            if count <= 0 { return linked }
            for event in InotifyEvent.parse(buffer[0..<count]) {
                if event.mask & UInt32(IN_Q_OVERFLOW) != 0 {
                    logger.warning("inotify queue overflowed; rescanning", metadata: ["inbox": "\(path)"])
                    shared.withLock { $0.statistics.overflows += 1 }
                    rescanNeeded = true
                    continue
                }
                guard let current = watch, event.watch == current else { continue }
                if event.mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT) != 0 {
                    logger.warning("inbox vanished; watching for it to come back", metadata: ["inbox": "\(path)"])
                    if event.mask & UInt32(IN_IGNORED) == 0 { inotify_rm_watch(inotifyFD, current) }
                    watch = nil
                    shared.withLock { $0.statistics.isWatching = false }
                    continue
                }
                guard event.mask & UInt32(IN_ISDIR) == 0, !event.name.isEmpty,
                      InboxEntryRules.disposition(name: event.name, kind: nil) != .ignore
                else { continue }
                if let rawName = event.rawName {
                    // Renamed to a UTF-8 name, whose IN_MOVED_TO reports it.
                    _ = renameToUTF8(rawName)
                    continue
                }
                if event.mask & UInt32(IN_CLOSE_WRITE | IN_MOVED_TO) != 0 {
                    candidates.enqueue(event.name)
                } else if event.mask & UInt32(IN_CREATE) != 0 {
                    // Regular files announce themselves when closed; anything else, and a new
                    // name for an existing file, never will.
                    guard let entry = try? FileSystem.entry(at: FilePaths.join(path, event.name)) else { continue }
                    if entry.kind == .regular {
                        if entry.links > 1 { linked.append(event.name) }
                    } else if entry.kind != .directory {
                        candidates.enqueue(event.name)
                    }
                }
            }
        }
    }

    /// Lists the folder and reports every entry that may be ready. Returns the regular files
    /// too fresh to report yet.
    private func rescan() -> Set<String> {
        defer { shared.withLock { $0.statistics.rescans += 1 } }
        let rawNames: [[UInt8]]
        do {
            rawNames = try FileSystem.rawContentsOfDirectory(path)
        } catch {
            logger.warning("cannot list inbox", metadata: ["inbox": "\(path)", "error": "\(error)"])
            return []
        }
        let names = rawNames.compactMap { rawName -> String? in
            let name = String(decoding: rawName, as: UTF8.self)
            guard InboxEntryRules.disposition(name: name, kind: nil) != .ignore else { return nil }
            return String(validating: rawName, as: UTF8.self) ?? renameToUTF8(rawName)
        }
        return reportSettled(names)
    }

    /// Renames an entry whose name is not valid UTF-8 to a name that is (each invalid byte
    /// written `%XX`, then `-1`, `-2`, … before the extension if taken), so that it can be
    /// claimed, reported and named in `failed/` like any other. Returns the new name, or nil
    /// when the entry is gone or cannot be renamed (logged).
    private func renameToUTF8(_ rawName: [UInt8]) -> String? {
        guard let escaped = FilePaths.escapingInvalidUTF8(rawName) else { return String(decoding: rawName, as: UTF8.self) }
        // A folder is left alone whatever its name.
        guard let entry = try? FileSystem.entry(rawName: rawName, in: path), entry.kind != .directory else { return nil }
        let (stem, fileExtension) = FilePaths.splitExtension(escaped)
        for attempt in 0..<100 {
            let candidate = attempt == 0 ? escaped : "\(stem)-\(attempt)" + (fileExtension.map { ".\($0)" } ?? "")
            do {
                if try FileSystem.renameWithoutReplacing(rawName: rawName, in: path, to: candidate) {
                    logger.notice("renamed an inbox entry whose name is not UTF-8", metadata: ["inbox": "\(path)", "name": "\(candidate)"])
                    return candidate
                }
            } catch {
                if error.errno != .noSuchFileOrDirectory {
                    logger.error("cannot rename an inbox entry whose name is not UTF-8",
                                 metadata: ["inbox": "\(path)", "name": "\(escaped)", "error": "\(error)"])
                }
                return nil
            }
        }
        return nil
    }

    /// Reports each of `names` that is still there and settled (or not a regular file); returns
    /// the regular files still too fresh.
    private func reportSettled(_ names: some Sequence<String>) -> Set<String> {
        let now = FileSystem.wallClockNow()
        var unsettled: Set<String> = []
        for name in names {
            guard let entry = try? FileSystem.entry(at: FilePaths.join(path, name)), entry.kind != .directory else { continue }
            if entry.kind == .regular, now - entry.modified < settleInterval {
                unsettled.insert(name)
            } else {
                candidates.enqueue(name)
            }
        }
        return unsettled
    }

    /// When to look at the unsettled files again: one settle interval from now.
    private func nextDue(_ unsettled: Set<String>) -> Double? {
        unsettled.isEmpty ? nil : FileSystem.wallClockNow() + settleInterval
    }
}

/// One event parsed from the buffer `read(2)` returns on an inotify descriptor: a 16-byte
/// header (`wd`, `mask`, `cookie`, `len`) followed by `len` NUL-padded name bytes.
/// (`inotify_event.name` is a flexible array member, which Swift does not import.)
struct InotifyEvent: Equatable {
    var watch: Int32
    var mask: UInt32
    var cookie: UInt32
    /// The entry's name; U+FFFD stands for bytes that are not UTF-8.
    var name: String
    /// The name's bytes when they are not valid UTF-8 (the entry can be reached only by them).
    var rawName: [UInt8]? = nil

    static let headerSize = 16

    static func parse(_ bytes: ArraySlice<UInt8>) -> [InotifyEvent] {
        var events: [InotifyEvent] = []
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset + headerSize <= raw.count {
                let watch = raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)
                let mask = raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
                let cookie = raw.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
                let length = Int(raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
                let nameStart = offset + headerSize
                guard nameStart + length <= raw.count else { break }
                let nameBytes = raw[nameStart..<(nameStart + length)].prefix(while: { $0 != 0 })
                let valid = String(validating: nameBytes, as: UTF8.self)
                events.append(InotifyEvent(watch: watch, mask: mask, cookie: cookie, name: valid ?? String(decoding: nameBytes, as: UTF8.self),
                                           rawName: valid == nil ? Array(nameBytes) : nil))
                offset = nameStart + length
            }
        }
        return events
    }
}
