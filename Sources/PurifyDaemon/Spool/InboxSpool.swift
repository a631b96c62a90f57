#if canImport(Glibc)
internal import Glibc
#endif
// With SwiftNIO in the module graph a release build attributes Glibc's `struct stat` to
// Dispatch's C module, which member-import visibility then wants imported.
internal import CDispatch
internal import Foundation
public import Logging
internal import PurifySystem
internal import Synchronization

/// A file the spool has claimed: moved by rename(2) out of the inbox into
/// `<state>/<inbox>/claimed/<claimID>_<originalName>`, where no producer can touch it.
public struct ClaimedFile: Sendable, Hashable {
    /// Unique across restarts; names the claimed file, its journal and its temporary files.
    public let claimID: String
    /// The name the file had in the inbox.
    public let originalName: String
    /// Where the claimed file is now (read it from here, with O_NOFOLLOW).
    public let path: String
    /// Its size in bytes when it was claimed.
    public let size: Int
}

/// What ``InboxSpool/claim(_:)`` did with an inbox entry.
public enum ClaimOutcome: Sendable, Equatable {
    /// Claimed: hand it to the pipeline, which must end it with ``InboxSpool/commit(_:output:outputExtension:report:)``
    /// or ``InboxSpool/fail(_:code:message:details:)``.
    case claimed(ClaimedFile)
    /// Left in the inbox: an in-progress name or a directory.
    case ignored
    /// Nothing was there any more (claimed already, or removed by its producer).
    case vanished
    /// Moved, unopened, to `failed/` with a report: not a regular file, empty, or over the size limit.
    case rejected(FailedFile)
}

/// A file moved to the inbox's failed directory, and its report.
public struct FailedFile: Sendable, Hashable {
    /// Where the input now is.
    public let path: String
    /// Where its `.error.json` report is.
    public let reportPath: String
    /// The error code the report gives.
    public let code: String
}

/// A committed output: the image, and its report (written last: its presence means done).
public struct CommittedOutput: Sendable, Hashable {
    /// The purified image in the outbox.
    public let outputPath: String
    /// Its report, `<output>.json`.
    public let reportPath: String
    /// Where the original went under the `archive` policy; nil when it was deleted.
    public let archivedPath: String?
}

/// The spool of one inbox (after Postfix and maildir): claims files by rename, commits outputs
/// through temporary names, fsync and rename, moves bad input to `failed/` with a JSON report,
/// and recovers whatever a crash left half done.
///
/// Layout: `<spool>/claimed/` holds claimed originals, `<spool>/journal/` one entry per commit
/// in progress (`<spool>` is the inbox's `spool_dir`, by default `<state>/<inbox>`). Files move
/// between the inbox, `claimed/`, `failed/` and the archive by rename(2), which fails across
/// mounts (bind mounts of one file system included, as systemd's ReadWritePaths= makes):
/// ``recover()`` checks this first and fails with ``DaemonError/Code/crossMount``.
///
/// A commit first writes and fsyncs its temporary files (`.purifyd-<inbox>-<claim>.*`,
/// dot-named so another inbox never picks them up), then writes a journal entry listing the
/// renames and removals that finish it, performs them in order (output, then report, then the
/// original's disposal), fsyncs the directories, and deletes the entry. Recovery replays any
/// journal entry left behind and requeues every claimed file without one, so a crash at any
/// point leaves each input either finished or claimed again.
///
/// Names never collide: an output `cat.png` whose name (or report name) is taken becomes
/// `cat-1.png`, `cat-2.png`, …; every rename uses RENAME_NOREPLACE.
///
/// Backpressure: at most `queueCapacity` files are claimed and unfinished at a time;
/// ``waitForCapacity()`` suspends the claim loop until ``commit(_:output:outputExtension:report:)``
/// or ``fail(_:code:message:details:)`` frees a slot.
///
/// `claim`, `commit`, `fail` and `recover` do blocking file I/O with fsync: call them from a
/// thread that may block, not from Swift's cooperative pool in a hot loop.
public final class InboxSpool: Sendable {
    /// Counters for status output and metrics.
    public struct Statistics: Sendable, Equatable {
        /// Claimed and not yet committed or failed.
        public var inFlight = 0
        /// The most that may be in flight (the inbox's `queue_capacity`).
        public var capacity = 0
        /// Whether the claim loop is waiting for a free slot right now.
        public var isWaitingForCapacity = false
        /// Files claimed since start (recovered ones not included).
        public var claimed = 0
        /// Files whose output and report were committed.
        public var committed = 0
        /// Claimed files the pipeline failed (moved to `failed/`).
        public var failed = 0
        /// Entries moved to `failed/` unopened at claim time.
        public var rejected = 0
        /// Claimed files found unfinished at start and requeued.
        public var recovered = 0
        /// Why writing into the outbox, `failed/` or the spool fails right now (a full disk, a
        /// quota, a read-only remount, an I/O error); `nil` while writes succeed. While set, the
        /// inbox claims nothing and retries the stalled files with backoff.
        public var writeFailure: String?
        /// Claimed files whose commit failed that way, held for a retry (still in flight).
        public var stalled = 0
        /// Write failures since start, one per episode.
        public var writeFailureEpisodes = 0
        /// Claimed files that disappeared from the spool before they were finished (removed by
        /// someone else): each is recorded in `failed/` with the code `vanished_from_spool`.
        public var vanished = 0
        /// How many times folders of the spool, the outbox or `failed/` were found missing
        /// and created again.
        public var foldersRecreated = 0
    }

    /// The inbox this spool serves (output format, limits and batching for the pipeline too).
    public let configuration: InboxConfiguration
    /// `<spool>/claimed`: originals being processed.
    public let claimedDirectory: String
    /// `<spool>/journal`: commits in progress.
    public let journalDirectory: String

    private struct State {
        var statistics: Statistics
        var reservedNames: Set<String> = []
        var claimCounter: UInt32 = 0
        var capacityWaiter: CheckedContinuation<Void, Never>?
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
        /// Files whose commit failed on a write, oldest first, waiting for ``takeStalled()``.
        var stalledFiles: [ClaimedFile] = []
        var stallWaiter: CheckedContinuation<Void, Never>?
        var failedWrites = 0
        /// Claim IDs of held files handed out for a retry while writes fail: only one of them
        /// going through ends the episode. A commit that was already under way when writes
        /// began to fail may still fit (a nearly full disk), which says nothing of the rest.
        var probes: Set<String> = []
    }

    private let state: Locked<State>
    private let logger: Logger
    private let temporaryPrefix: String

    /// The spool of the inbox `configuration`, in its `spoolDirectory`.
    public init(configuration: InboxConfiguration, logger: Logger) {
        self.configuration = configuration
        self.claimedDirectory = FilePaths.join(configuration.spoolDirectory, "claimed")
        self.journalDirectory = FilePaths.join(configuration.spoolDirectory, "journal")
        self.temporaryPrefix = ".purifyd-\(configuration.name)-"
        var statistics = Statistics()
        statistics.capacity = configuration.queueCapacity
        self.state = Locked(State(statistics: statistics))
        var logger = logger
        logger[metadataKey: "inbox"] = "\(configuration.name)"
        self.logger = logger
    }

    /// A snapshot of the counters.
    public var statistics: Statistics {
        state.withLock { $0.statistics }
    }

    // MARK: - Start-up

    /// Creates the spool, outbox, failed and archive directories, checks that files can be
    /// renamed between them and the inbox, replays journal entries left
    /// by a crash, removes stale temporary files, and returns the claimed files that were not
    /// finished (oldest claim first). They count as in flight: process each of them.
    public func recover() throws -> [ClaimedFile] {
        for directory in ownDirectories { try FileSystem.createDirectories(directory, mode: 0o750) }
        try checkRenamesWork()

        for name in try FileSystem.contentsOfDirectory(journalDirectory) {
            let path = FilePaths.join(journalDirectory, name)
            if name.hasPrefix(".") {
                try FileSystem.removeIfPresent(path)
                continue
            }
            let journal = try SpoolJournal.read(from: path)
            logger.notice("finishing a commit interrupted by a crash", metadata: ["journal": "\(name)"])
            try journal.execute()
            try FileSystem.removeIfPresent(path)
        }
        for directory in [configuration.outbox, configuration.failedDirectory] {
            for name in try FileSystem.contentsOfDirectory(directory) where name.hasPrefix(temporaryPrefix) {
                try FileSystem.removeIfPresent(FilePaths.join(directory, name))
            }
        }

        var recovered: [ClaimedFile] = []
        for name in try FileSystem.contentsOfDirectory(claimedDirectory).sorted() {
            let path = FilePaths.join(claimedDirectory, name)
            guard let separator = name.firstIndex(of: "_"), separator != name.startIndex,
                  let entry = try FileSystem.entry(at: path)
            else {
                _ = try moveToFailed(from: path, originalName: name, claimID: newClaimID(),
                                     code: "unrecognised_spool_entry", message: "\(name) in the spool was not put there by purifyd")
                continue
            }
            let file = ClaimedFile(claimID: String(name[..<separator]), originalName: String(name[name.index(after: separator)...]),
                                   path: path, size: entry.size)
            recovered.append(file)
        }
        state.withLock { state in
            state.statistics.inFlight += recovered.count
            state.statistics.recovered += recovered.count
        }
        if !recovered.isEmpty {
            logger.notice("requeueing files claimed before a restart", metadata: ["count": "\(recovered.count)"])
        }
        return recovered
    }

    /// Changes how many files may be in flight (a reload's new `queue_capacity`); a claim that
    /// waits for room goes on at once when the new capacity leaves some.
    public func setCapacity(_ capacity: Int) {
        precondition(capacity >= 1, "a spool needs room for one file")
        state.withLock { $0.statistics.capacity = capacity }
        resumeCapacityWaiter(when: \.hasRoom)
    }

    // MARK: - Claiming

    /// Suspends until fewer than `queueCapacity` files are in flight and writes succeed (one
    /// waiter at a time: the inbox's claim loop). Returns at once when the calling task is
    /// cancelled.
    public func waitForCapacity() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state in
                    if state.statistics.hasRoom || Task.isCancelled { return true }
                    precondition(state.capacityWaiter == nil, "InboxSpool.waitForCapacity() supports a single waiter")
                    state.capacityWaiter = continuation
                    state.statistics.isWaitingForCapacity = true
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            resumeCapacityWaiter(when: { _ in true })
        }
    }

    /// Claims the inbox entry `name` by renaming it into the spool, then decides with `lstat` on
    /// the claimed entry (which no one else can swap any more) whether it can be processed.
    public func claim(_ name: String) throws -> ClaimOutcome {
        guard InboxEntryRules.disposition(name: name, kind: nil) != .ignore else { return .ignored }
        let source = FilePaths.join(configuration.path, name)
        guard let before = try FileSystem.entry(at: source) else { return .vanished }
        if before.kind == .directory { return .ignored }

        let claimID = newClaimID()
        let claimedName = "\(claimID)_\(name)"
        if claimedName.utf8.count > Int(NAME_MAX) {
            return .rejected(try reject(from: source, originalName: name, claimID: claimID,
                                        code: "name_too_long", message: "the name is too long to claim (\(name.utf8.count) bytes)"))
        }
        let claimedPath = FilePaths.join(claimedDirectory, claimedName)
        var renamed = false
        for attempt in 0..<2 {
            do {
                renamed = try FileSystem.renameWithoutReplacing(source, to: claimedPath)
                break
            } catch {
                // ENOENT means the file went away, unless it is still there: then `claimed/` is
                // missing (removed by hand), and is created again once.
                guard error.errno == .noSuchFileOrDirectory else { throw error }
                if try !FileSystem.exists(source) { return .vanished }
                guard attempt == 0, recreateMissingDirectories() else { throw error }
            }
        }
        guard renamed else {
            throw DaemonError(code: .spoolConflict, message: "claim \(claimedPath) exists already")
        }
        // A rename into the spool went through: a failure that stopped claims (or commits) is
        // over, or the next commit will say otherwise.
        writesSucceeded()
        guard let entry = try FileSystem.entry(at: claimedPath) else { return .vanished }

        switch InboxEntryRules.disposition(name: name, kind: entry.kind) {
        case .ignore:
            // A directory took the file's place between lstat and rename: give it back.
            _ = try FileSystem.renameWithoutReplacing(claimedPath, to: source)
            return .ignored
        case .reject(let reason):
            return .rejected(try reject(from: claimedPath, originalName: name, claimID: claimID,
                                        code: "not_regular_file", message: "\(name) is \(reason)"))
        case .process:
            if entry.size == 0 {
                return .rejected(try reject(from: claimedPath, originalName: name, claimID: claimID,
                                            code: "empty_file", message: "\(name) is empty"))
            }
            if entry.size > configuration.limits.maxBytes {
                return .rejected(try reject(from: claimedPath, originalName: name, claimID: claimID, code: "too_large",
                                            message: "\(name) has \(entry.size) bytes; the limit is \(configuration.limits.maxBytes)"))
            }
            state.withLock { state in
                state.statistics.inFlight += 1
                state.statistics.claimed += 1
            }
            return .claimed(ClaimedFile(claimID: claimID, originalName: name, path: claimedPath, size: entry.size))
        }
    }

    /// Suspends until no file is in flight (every claim committed or failed), or the calling
    /// task is cancelled. Used to drain.
    public func waitUntilIdle() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let idle = state.withLock { state in
                    if state.statistics.inFlight == 0 || Task.isCancelled { return true }
                    state.idleWaiters.append(continuation)
                    return false
                }
                if idle { continuation.resume() }
            }
        } onCancel: {
            resumeIdleWaiters(force: true)
        }
    }

    /// Reads a claimed file whole: opened with O_NOFOLLOW, checked with fstat to be a regular
    /// file of at most `limits.maxBytes` bytes (``DaemonError/Code/inputRejected`` otherwise).
    public func contents(of file: ClaimedFile) throws -> [UInt8] {
        do throws(RegularFileReadError) {
            return try FileSystem.readRegularFile(atPath: file.path, maxBytes: configuration.limits.maxBytes)
        } catch {
            if case .failed(let failure) = error { throw failure }
            throw DaemonError(code: .inputRejected, message: error.description)
        }
    }

    // MARK: - Finishing

    /// Commits a purified image: writes `output` as `<original stem>.<outputExtension>` in the
    /// outbox (or `<stem>-<n>.<ext>` if taken) and then the report `<output name>.json`, each
    /// through a temporary file, fsync and rename; then deletes or archives the original.
    ///
    /// Frees the file's in-flight slot once it succeeds. When a write fails for a reason that
    /// time may cure (``isWriteFailure(_:)``: a full disk, a quota, a read-only file system, an
    /// I/O error, a permission), its temporary files are removed and the file is held, still in
    /// flight, for ``takeStalled(backoff:)``; the inbox stops claiming until a write succeeds again.
    /// After any other throw the slot is freed and the file stays claimed for the next start.
    /// - Parameter report: Makes the report's bytes, given the output's final file name.
    public func commit(
        _ file: ClaimedFile,
        output: some Collection<UInt8>,
        outputExtension: String,
        report: (_ outputName: String) throws -> [UInt8]
    ) throws -> CommittedOutput {
        let outbox = configuration.outbox
        let outputTemporary = FilePaths.join(outbox, "\(temporaryPrefix)\(file.claimID).output")
        let reportTemporary = FilePaths.join(outbox, "\(temporaryPrefix)\(file.claimID).report")
        return try finishing(file, removingOnFailure: [outputTemporary, reportTemporary]) {
            let stem = FilePaths.splitExtension(file.originalName).stem
            let outputName = try reserveName("\(stem).\(outputExtension)", in: outbox, companionSuffix: ".json")
            defer { releaseName(outputName, in: outbox) }
            let reportName = outputName + ".json"
            let reportBytes = try report(outputName)

            try FileSystem.writeNewFileReplacingLeftover(outputTemporary, bytes: output)
            try FileSystem.writeNewFileReplacingLeftover(reportTemporary, bytes: reportBytes)

            var journal = SpoolJournal(renames: [
                .init(from: outputTemporary, to: FilePaths.join(outbox, outputName)),
                .init(from: reportTemporary, to: FilePaths.join(outbox, reportName)),
            ])
            var archivedPath: String?
            var archiveName: String?
            switch configuration.afterSuccess {
            case .delete:
                journal.removals = [file.path]
            case .archive(let directory):
                let name = try reserveName(file.originalName, in: directory, companionSuffix: nil)
                archiveName = name
                archivedPath = FilePaths.join(directory, name)
                journal.renames.append(.init(from: file.path, to: archivedPath!))
            }
            defer {
                if let archiveName, case .archive(let directory) = configuration.afterSuccess {
                    releaseName(archiveName, in: directory)
                }
            }
            try run(journal, claimID: file.claimID)
            state.withLock { $0.statistics.committed += 1 }
            return CommittedOutput(outputPath: FilePaths.join(outbox, outputName), reportPath: FilePaths.join(outbox, reportName),
                                   archivedPath: archivedPath)
        }
    }

    /// Moves a claimed file that cannot be processed to the failed directory, with a report
    /// `<name>.error.json` giving `code`, `message` and any `details`.
    ///
    /// Frees the file's in-flight slot once it succeeds; a write failure holds the file as
    /// ``commit(_:output:outputExtension:report:)`` does.
    ///
    /// A claimed file that is no longer in the spool (someone removed it) is recorded with the
    /// code `vanished_from_spool`, the pipeline's error among the details, and counted in
    /// ``Statistics/vanished``.
    public func fail(_ file: ClaimedFile, code: String, message: String, details: FailureDetails = FailureDetails()) throws -> FailedFile {
        var (code, message, details) = (code, message, details)
        let vanished = (try? FileSystem.exists(file.path)) == false
        if vanished {
            details.pipelineError = FailureRecord.Error(code: code, message: message)
            (code, message) = ("vanished_from_spool", "\(file.path) disappeared from the spool before it was finished")
            logger.warning("a claimed file disappeared from the spool; recorded in failed/",
                           metadata: ["file": "\(file.originalName)", "claimed_as": "\(file.path)"])
        }
        let reportTemporary = FilePaths.join(configuration.failedDirectory, "\(temporaryPrefix)\(file.claimID).error")
        return try finishing(file, removingOnFailure: [reportTemporary]) {
            let failed = try moveToFailed(from: file.path, originalName: file.originalName, claimID: file.claimID,
                                          code: code, message: message, details: details)
            state.withLock { state in
                state.statistics.failed += 1
                if vanished { state.statistics.vanished += 1 }
            }
            return failed
        }
    }

    /// Runs `body`, the commit or the failure of `file`: frees the file's slot once it
    /// succeeds; after a throw, settles the file (``settle(_:after:removing:)``) and rethrows.
    private func finishing<Result>(_ file: ClaimedFile, removingOnFailure temporaries: [String], _ body: () throws -> Result) throws -> Result {
        do {
            let result = try body()
            finished(file)
            return result
        } catch {
            settle(file, after: error, removing: temporaries)
            throw error
        }
    }

    // MARK: - Write failures

    /// Whether `error` is a write failure that time may cure: ENOSPC, EDQUOT, EIO, EROFS,
    /// EACCES or EPERM from a system call, or ENOENT and ENOTDIR, which in a commit mean that a
    /// folder of the outbox, `failed/` or the spool was removed (the spool creates it again).
    public static func isWriteFailure(_ error: any Error) -> Bool {
        guard let errno = (error as? SystemError)?.errno else { return false }
        return [.noSpace, .diskQuotaExceeded, .ioError, .readOnlyFileSystem, .permissionDenied, .notPermitted,
                .noSuchFileOrDirectory, .notDirectory].contains(errno)
    }

    /// Waits for files held after write failures and takes them for another attempt: while
    /// writes still fail, the oldest alone (a probe), no sooner than `backoff` after the call;
    /// once a write has succeeded (during the backoff too), all of them. They stay in flight.
    /// Returns `[]` when the calling task is cancelled.
    public func takeStalled(backoff: Duration) async -> [ClaimedFile] {
        while !Task.isCancelled {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = state.withLock { state in
                        if !state.stalledFiles.isEmpty || Task.isCancelled { return true }
                        state.stallWaiter = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            } onCancel: {
                state.withLock { state in
                    defer { state.stallWaiter = nil }
                    return state.stallWaiter
                }?.resume()
            }
            // The backoff ends early once writes succeed again: the held files then go at once.
            let deadline = ContinuousClock.now + backoff
            while state.withLock({ $0.statistics.writeFailure != nil }), ContinuousClock.now < deadline {
                guard (try? await Task.sleep(for: min(.milliseconds(100), deadline - .now))) != nil else { return [] }
            }
            let taken: [ClaimedFile] = state.withLock { state in
                guard !state.stalledFiles.isEmpty else { return [] }
                if state.statistics.writeFailure != nil {
                    state.statistics.stalled -= 1
                    let probe = state.stalledFiles.removeFirst()
                    state.probes.insert(probe.claimID)
                    return [probe]
                }
                defer {
                    state.stalledFiles = []
                    state.statistics.stalled = 0
                }
                return state.stalledFiles
            }
            if !taken.isEmpty { return taken }
        }
        return []
    }

    /// Finishes the commit of a held file whose journal entry was written before a write failed
    /// (the failure came while performing it): replays the entry rather than purifying the
    /// file again, which would write its output twice. Returns false when the file has no
    /// journal entry; true when it has one, whether the replay went through or the file is
    /// held again.
    public func finishJournaledCommit(_ file: ClaimedFile) -> Bool {
        let path = FilePaths.join(journalDirectory, "\(file.claimID).json")
        guard (try? FileSystem.exists(path)) == true else { return false }
        do {
            let journal = try SpoolJournal.read(from: path)
            try journal.execute()
            try FileSystem.removeIfPresent(path)
            let intoFailed = journal.renames.first.map { FilePaths.directory(of: $0.to) == configuration.failedDirectory } ?? false
            state.withLock { state in
                if intoFailed { state.statistics.failed += 1 } else { state.statistics.committed += 1 }
            }
            finished(file)
        } catch {
            settle(file, after: error, removing: [])
        }
        return true
    }

    /// Lets go of the files held after write failures, freeing their slots: they stay claimed
    /// and are recovered at the next start. For a shutdown, so that draining need not wait for
    /// the disk.
    public func abandonStalled() {
        let count = state.withLock { state in
            defer {
                state.stalledFiles = []
                state.statistics.stalled = 0
            }
            return state.stalledFiles.count
        }
        for _ in 0..<count { releaseSlot() }
        wakeStallWaiter()
    }

    /// Records a claim that failed on a write (the inbox's own file system read-only or full:
    /// a claim is a rename into the spool) as a write failure: the same episode as a failed
    /// commit, visible in ``Statistics/writeFailure``, one log line per episode. The claim loop
    /// retries the name with backoff; the next claim that goes through ends the episode.
    public func claimFailed(_ error: any Error) {
        if state.withLock({ Self.recordFailedWrite(error, in: &$0) }) {
            logger.error("claiming fails on a write; it is retried with backoff until writes succeed",
                         metadata: ["error": "\(error)", "inbox_path": "\(configuration.path)"])
        }
    }

    /// Counts a failed write; starts an episode and returns true when none is going on.
    private static func recordFailedWrite(_ error: any Error, in state: inout State) -> Bool {
        state.failedWrites += 1
        guard state.statistics.writeFailure == nil else { return false }
        state.statistics.writeFailure = "\(error)"
        state.statistics.writeFailureEpisodes += 1
        return true
    }

    /// A file's commit or failure went through: its slot is free, and a write failure is over
    /// if the file was a held one retried, or none is held.
    private func finished(_ file: ClaimedFile) {
        let endsEpisode = state.withLock { state in
            state.probes.remove(file.claimID) != nil || (state.stalledFiles.isEmpty && state.probes.isEmpty)
        }
        if endsEpisode { writesSucceeded() }
        releaseSlot()
    }

    /// Ends a write-failure episode, if one is going on: claiming resumes (once there is room)
    /// and the held files are retried.
    private func writesSucceeded() {
        let recovered: (message: String, failedWrites: Int)? = state.withLock { state in
            guard let failure = state.statistics.writeFailure else { return nil }
            state.statistics.writeFailure = nil
            defer { state.failedWrites = 0 }
            return (failure, state.failedWrites)
        }
        if let recovered {
            logger.notice("writes succeed again; claiming resumes and the held files are retried",
                          metadata: ["after": "\(recovered.message)", "failed_attempts": "\(recovered.failedWrites)"])
            wakeStallWaiter()
            resumeCapacityWaiter(when: \.hasRoom)
        }
    }

    /// A commit or failure threw: holds the file after a write failure (one log line per
    /// episode), frees its slot otherwise; removes its temporary files either way.
    private func settle(_ file: ClaimedFile, after error: any Error, removing temporaries: [String]) {
        for temporary in temporaries { _ = try? FileSystem.removeIfPresent(temporary) }
        state.withLock { _ = $0.probes.remove(file.claimID) }
        guard Self.isWriteFailure(error) else {
            releaseSlot()
            return
        }
        if let errno = (error as? SystemError)?.errno, errno == .noSuchFileOrDirectory || errno == .notDirectory {
            _ = recreateMissingDirectories()
        }
        let firstOfEpisode = state.withLock { state in
            state.stalledFiles.append(file)
            state.statistics.stalled += 1
            return Self.recordFailedWrite(error, in: &state)
        }
        if firstOfEpisode {
            logger.error("writes fail; claiming stops and the files are retried with backoff until writes succeed",
                         metadata: ["error": "\(error)", "outbox": "\(configuration.outbox)"])
        }
        wakeStallWaiter()
    }

    private func wakeStallWaiter() {
        state.withLock { state in
            defer { state.stallWaiter = nil }
            return state.stallWaiter
        }?.resume()
    }

    // MARK: - Internals

    /// The folders the spool writes into, created at start and again whenever one goes missing.
    private var ownDirectories: [String] {
        var directories = [claimedDirectory, journalDirectory, configuration.outbox, configuration.failedDirectory]
        if case .archive(let directory) = configuration.afterSuccess { directories.append(directory) }
        return directories
    }

    /// Creates whichever of the spool's folders someone removed (one log line naming them);
    /// returns whether any was missing and is back.
    private func recreateMissingDirectories() -> Bool {
        let missing = ownDirectories.filter { (try? FileSystem.entry(at: $0)) == nil }
        guard !missing.isEmpty else { return false }
        var created: [String] = []
        for directory in missing {
            do {
                try FileSystem.createDirectories(directory, mode: 0o750)
                created.append(directory)
            } catch {
                logger.error("a folder of the spool is missing and cannot be created", metadata: ["folder": "\(directory)", "error": "\(error)"])
            }
        }
        guard !created.isEmpty else { return false }
        state.withLock { $0.statistics.foldersRecreated += 1 }
        logger.warning("folders of the spool were removed; created them again", metadata: ["folders": "\(created.joined(separator: ", "))"])
        return true
    }

    /// Moves a probe file from `claimed/` through the inbox, `failed/` and the archive and
    /// back: each of those renames is one the spool relies on.
    private func checkRenamesWork() throws {
        let probeName = "\(temporaryPrefix)probe-\(getpid())"
        let home = FilePaths.join(claimedDirectory, probeName)
        try FileSystem.removeIfPresent(home)
        try FileSystem.writeNewFile(home, bytes: [])
        defer { _ = try? FileSystem.removeIfPresent(home) }
        var directories = [configuration.path, configuration.failedDirectory]
        if case .archive(let directory) = configuration.afterSuccess { directories.append(directory) }
        for directory in directories {
            let away = FilePaths.join(directory, probeName)
            do {
                try FileSystem.rename(home, to: away)
            } catch {
                guard error.errno == .crossDevice else { throw error }
                throw DaemonError(
                    code: .crossMount,
                    message: "\(directory) and the spool \(configuration.spoolDirectory) are on different mounts; "
                        + "rename(2) cannot move files between them. Set spool_dir (and failed_dir, archive_dir) "
                        + "under the same mount as the inbox \(configuration.path)."
                )
            }
            try FileSystem.rename(away, to: home)
        }
    }

    private func reject(from path: String, originalName: String, claimID: String, code: String, message: String) throws -> FailedFile {
        let failed = try moveToFailed(from: path, originalName: originalName, claimID: claimID, code: code, message: message)
        state.withLock { $0.statistics.rejected += 1 }
        logger.info("rejected an inbox entry", metadata: ["file": "\(originalName)", "code": "\(code)"])
        return failed
    }

    private func moveToFailed(
        from path: String, originalName: String, claimID: String, code: String, message: String, details: FailureDetails = FailureDetails()
    ) throws -> FailedFile {
        let directory = configuration.failedDirectory
        // Room for the report's suffix and a `-<n>` that a taken name gets: a name too long to
        // claim must still fit in failed/.
        let storable = FilePaths.truncated(originalName, toBytes: Int(NAME_MAX) - ".error.json".utf8.count - 8)
        let name = try reserveName(storable, in: directory, companionSuffix: ".error.json")
        defer { releaseName(name, in: directory) }
        let report = FailureRecord(inbox: configuration.name, input: originalName, storedAs: name, claimID: claimID,
                                   failedAt: Date.now.ISO8601Format(), error: .init(code: code, message: message), details: details)
        let reportTemporary = FilePaths.join(directory, "\(temporaryPrefix)\(claimID).error")
        try FileSystem.writeNewFileReplacingLeftover(reportTemporary, bytes: try report.encoded())
        let failedPath = FilePaths.join(directory, name)
        let reportPath = failedPath + ".error.json"
        try run(SpoolJournal(renames: [.init(from: path, to: failedPath), .init(from: reportTemporary, to: reportPath)]), claimID: claimID)
        logger.info("moved to failed", metadata: ["file": "\(originalName)", "code": "\(code)", "reason": "\(message)"])
        return FailedFile(path: failedPath, reportPath: reportPath, code: code)
    }

    /// Writes the journal entry durably, performs it, and removes it.
    private func run(_ journal: SpoolJournal, claimID: String) throws {
        let path = FilePaths.join(journalDirectory, "\(claimID).json")
        try FileSystem.replaceFileAtomically(path, bytes: journal.encoded(), temporaryPath: FilePaths.join(journalDirectory, ".\(claimID).json"))
        try journal.execute()
        try FileSystem.removeIfPresent(path)
    }

    /// The first of `name`, `stem-1.ext`, `stem-2.ext`, … that is neither on disk (with or
    /// without `companionSuffix`) nor reserved by a commit in progress; reserved until released.
    private func reserveName(_ name: String, in directory: String, companionSuffix: String?) throws -> String {
        let (stem, fileExtension) = FilePaths.splitExtension(name)
        var attempt = 0
        while true {
            let candidate = attempt == 0 ? name : "\(stem)-\(attempt)" + (fileExtension.map { ".\($0)" } ?? "")
            attempt += 1
            let path = FilePaths.join(directory, candidate)
            if try FileSystem.exists(path) { continue }
            if let companionSuffix, try FileSystem.exists(path + companionSuffix) { continue }
            let reserved = state.withLock { state in state.reservedNames.insert(path).inserted }
            if reserved { return candidate }
        }
    }

    private func releaseName(_ name: String, in directory: String) {
        let path = FilePaths.join(directory, name)
        _ = state.withLock { $0.reservedNames.remove(path) }
    }

    private func releaseSlot() {
        state.withLock { $0.statistics.inFlight -= 1 }
        resumeCapacityWaiter(when: \.hasRoom)
        resumeIdleWaiters(force: false)
    }

    private func resumeIdleWaiters(force: Bool) {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLock { state in
            guard force || state.statistics.inFlight == 0 else { return [] }
            defer { state.idleWaiters = [] }
            return state.idleWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    private func resumeCapacityWaiter(when condition: (Statistics) -> Bool) {
        let waiter: CheckedContinuation<Void, Never>? = state.withLock { state in
            guard let waiter = state.capacityWaiter, condition(state.statistics) else { return nil }
            state.capacityWaiter = nil
            state.statistics.isWaitingForCapacity = false
            return waiter
        }
        waiter?.resume()
    }

    /// `<nanoseconds since the epoch, hex>-<per-process counter, hex>`: unique across restarts.
    private func newClaimID() -> String {
        let nanoseconds = FileSystem.wallClockNanoseconds()
        let counter = state.withLock { state in
            state.claimCounter &+= 1
            return state.claimCounter
        }
        return String(nanoseconds, radix: 16) + "-" + String(counter, radix: 16)
    }
}

extension InboxSpool.Statistics {
    /// Whether the claim loop may claim: a free slot, and writes succeeding.
    var hasRoom: Bool { inFlight < capacity && writeFailure == nil }
}

/// The renames and removals that finish one commit, written durably before any of them is
/// performed so that recovery can finish them after a crash. Performing an entry again is
/// harmless: a rename whose source is gone has happened already.
struct SpoolJournal: Codable, Equatable {
    struct Rename: Codable, Equatable {
        var from: String
        var to: String
    }

    var renames: [Rename]
    var removals: [String] = []

    static func read(from path: String) throws -> SpoolJournal {
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            return try JSONDecoder().decode(SpoolJournal.self, from: data)
        } catch {
            throw DaemonError(code: .malformedJournal, message: "\(path): \(error)")
        }
    }

    func encoded() -> [UInt8] {
        // Encoding an array of strings cannot fail.
        Array(try! JSONEncoder().encode(self))
    }

    /// Performs the renames in order, then the removals, then fsyncs every directory involved.
    /// Live readers see the renames in order (the report after its output); after a crash the
    /// journal entry, removed only once the directories are synced, replays whatever did not
    /// reach the disk.
    func execute() throws {
        var directories: Set<String> = []
        for rename in renames where try FileSystem.exists(rename.from) {
            guard try FileSystem.renameWithoutReplacing(rename.from, to: rename.to) else {
                throw DaemonError(code: .spoolConflict, message: "\(rename.to) appeared while \(rename.from) was being committed there")
            }
            directories.insert(FilePaths.directory(of: rename.from))
            directories.insert(FilePaths.directory(of: rename.to))
        }
        for removal in removals where try FileSystem.removeIfPresent(removal) {
            directories.insert(FilePaths.directory(of: removal))
        }
        for directory in directories.sorted() {
            try FileSystem.synchronizeDirectory(directory)
        }
    }
}
