public import Logging
internal import PurifySystem
public import ServiceLifecycle

/// What the daemon hands claimed files to: the image pipeline implements it.
public protocol ClaimedFileProcessor: Sendable {
    /// Takes over `file`, which the processor must end with ``InboxSpool/commit(_:output:outputExtension:report:)``
    /// or ``InboxSpool/fail(_:code:message:details:)`` on `spool`.
    ///
    /// Return as soon as the file is queued: the claim loop awaits this call, and the spool's
    /// `queue_capacity` (not this method) is what bounds the work in flight.
    func process(_ file: ClaimedFile, from spool: InboxSpool) async
}

/// One inbox as a service: recovers its spool, watches the folder, and claims each candidate
/// file for the pipeline, one at a time, while the pipeline has room and ingestion is not paused.
///
/// On graceful shutdown it stops claiming at once (files wait in the inbox), then waits for the
/// files in flight to be committed or failed; a cancellation (the service group's drain deadline)
/// ends that wait, leaving unfinished files claimed for recovery at the next start.
public final class InboxService: Service, Sendable {
    /// The inbox.
    public let configuration: InboxConfiguration
    /// Its spool; the processor commits and fails files through it.
    public let spool: InboxSpool
    /// Its watcher.
    public let watcher: InboxWatcher

    /// What `status` reports for one inbox.
    public struct Status: Sendable, Equatable {
        /// The inbox's name.
        public var name: String
        /// Whether claiming is paused (by `pause` or `drain`).
        public var isPaused: Bool
        /// Names seen in the inbox and not yet claimed.
        public var waitingInInbox: Int
        public var spool: InboxSpool.Statistics
        public var watcher: InboxWatcher.Statistics
        /// The last error claiming a file, if any.
        public var lastError: String?
    }

    private struct Control {
        var isPaused = false
        var isStopping = false
        var resumeWaiter: CheckedContinuation<Void, Never>?
        var lastError: String?
        /// The claim loop has taken a name from the watcher and waits (paused, or for capacity)
        /// before claiming it: the file is still in the inbox.
        var holdsName = false
    }

    private let processor: any ClaimedFileProcessor
    private let control = Locked(Control())
    private let logger: Logger

    public init(
        configuration: InboxConfiguration,
        processor: any ClaimedFileProcessor,
        settleInterval: Duration = .seconds(2),
        logger: Logger
    ) throws {
        self.configuration = configuration
        self.processor = processor
        var logger = logger
        logger[metadataKey: "inbox"] = "\(configuration.name)"
        self.logger = logger
        self.spool = InboxSpool(configuration: configuration, logger: logger)
        self.watcher = try InboxWatcher(path: configuration.path, settleInterval: settleInterval, logger: logger)
    }

    public var status: Status {
        let (isPaused, lastError, held) = control.withLock { ($0.isPaused, $0.lastError, $0.holdsName ? 1 : 0) }
        return Status(
            name: configuration.name,
            isPaused: isPaused,
            waitingInInbox: watcher.candidates.count + held,
            spool: spool.statistics,
            watcher: watcher.statistics,
            lastError: lastError
        )
    }

    /// Stops claiming new files; those in flight still finish.
    public func pause() {
        control.withLock { $0.isPaused = true }
    }

    /// Claims again after ``pause()``.
    public func resume() {
        let waiter: CheckedContinuation<Void, Never>? = control.withLock { control in
            control.isPaused = false
            defer { control.resumeWaiter = nil }
            return control.resumeWaiter
        }
        waiter?.resume()
    }

    /// Applies to each running inbox what a reloaded configuration may change while it runs:
    /// its queue capacity. Inboxes the configuration does not name are left alone.
    public static func applyReloaded(_ configuration: DaemonConfiguration, to services: [InboxService]) {
        let reloaded = Dictionary(configuration.inboxes.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for service in services {
            if let inbox = reloaded[service.configuration.name] { service.spool.setCapacity(inbox.queueCapacity) }
        }
    }

    /// Lists the inbox again.
    public func requestRescan() {
        watcher.requestRescan()
    }

    /// Pauses claiming and waits until nothing is in flight (or the calling task is cancelled).
    public func drain() async {
        pause()
        await spool.waitUntilIdle()
    }

    public func run() async throws {
        for file in try spool.recover() {
            await processor.process(file, from: spool)
        }
        // Files written by another host on a network filesystem raise no inotify event here.
        let periodicRescans = configuration.rescanInterval.map { interval in
            Task { [watcher] in
                while (try? await Task.sleep(for: interval)) != nil { watcher.requestRescan() }
            }
        }
        defer { periodicRescans?.cancel() }
        let retries = Task { await retryStalledFiles() }
        defer { retries.cancel() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.watcher.run() }
            await withTaskCancellationOrGracefulShutdownHandler {
                await claimLoop()
            } onCancelOrGracefulShutdown: {
                self.stop()
            }
            try await group.waitForAll()
        }
        await spool.waitUntilIdle()
    }

    private func claimLoop() async {
        for await name in watcher.candidates {
            control.withLock { $0.holdsName = true }
            // A pause that arrives while waiting for capacity holds the next claim too.
            repeat {
                await waitWhilePaused()
                await spool.waitForCapacity()
            } while control.withLock({ $0.isPaused && !$0.isStopping }) && !Task.isCancelled
            if control.withLock({ $0.isStopping }) || Task.isCancelled {
                control.withLock { $0.holdsName = false }
                return
            }
            await claimRetryingWrites(name)
            control.withLock { $0.holdsName = false }
        }
    }

    /// Claims `name` and hands it to the processor. A claim that fails on a write (the inbox's
    /// file system read-only or full) is retried with backoff, the spool showing the failure,
    /// until it goes through or the service stops; any other failure leaves the file where it
    /// was (in the inbox, or claimed for recovery at the next start), and the loop goes on.
    private func claimRetryingWrites(_ name: String) async {
        var backoff = Self.firstRetry
        while true {
            do {
                if case .claimed(let file) = try spool.claim(name) {
                    await processor.process(file, from: spool)
                }
                return
            } catch {
                guard InboxSpool.isWriteFailure(error) else {
                    logger.error("cannot claim a file", metadata: ["file": "\(name)", "error": "\(error)"])
                    control.withLock { $0.lastError = "\(name): \(error)" }
                    return
                }
                spool.claimFailed(error)
                control.withLock { $0.lastError = "\(name): \(error)" }
            }
            guard (try? await Task.sleep(for: backoff)) != nil, !control.withLock({ $0.isStopping }) else { return }
            backoff = min(backoff * 2, Self.lastRetry)
        }
    }

    /// Hands the files whose commit failed on a write back to the processor: one at a time,
    /// with backoff from 1 s to 60 s, while writes keep failing; all of them once one succeeds.
    private func retryStalledFiles() async {
        var backoff = Self.firstRetry
        var episode = spool.statistics.writeFailureEpisodes
        while !Task.isCancelled {
            let files = await spool.takeStalled(backoff: backoff)
            if files.isEmpty { return }
            if control.withLock({ $0.isStopping }) {
                spool.abandonStalled()
                return
            }
            // Each episode starts again from the first delay, even one that began while the
            // last backoff ran.
            let statistics = spool.statistics
            if statistics.writeFailure == nil || statistics.writeFailureEpisodes != episode {
                backoff = Self.firstRetry
                episode = statistics.writeFailureEpisodes
            } else {
                backoff = min(backoff * 2, Self.lastRetry)
            }
            for file in files where !spool.finishJournaledCommit(file) {
                await processor.process(file, from: spool)
            }
        }
    }

    static let firstRetry = Duration.seconds(1)
    static let lastRetry = Duration.seconds(60)

    private func waitWhilePaused() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let proceed = control.withLock { control in
                if !control.isPaused || control.isStopping { return true }
                control.resumeWaiter = continuation
                return false
            }
            if proceed { continuation.resume() }
        }
    }

    private func stop() {
        let waiter: CheckedContinuation<Void, Never>? = control.withLock { control in
            control.isStopping = true
            defer { control.resumeWaiter = nil }
            return control.resumeWaiter
        }
        waiter?.resume()
        watcher.stop()
        // Files held after write failures stay claimed for the next start.
        spool.abandonStalled()
    }
}
