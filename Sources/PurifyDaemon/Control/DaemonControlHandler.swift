public import PurifyControl

/// What the image pipeline adds to the control socket's answers. The daemon executable
/// implements it over the pipeline; without one, `stats` and `reload` reply `unsupported`.
public protocol PipelineControl: Sendable {
    /// The pipeline's part of `status`: bundles loaded with their versions, reloads, last error.
    func status() async -> PipelineStatus
    /// What `stats` reports: latency percentiles per stage, throughput.
    func statistics() async -> PipelineStatistics
    /// Prometheus text-format lines appended to the daemon's own metrics.
    func metrics() async -> String
    /// Reloads the configuration and models, keeping the old ones if the new ones fail, and logs
    /// the outcome.
    func reload() async throws(ReloadRefusal) -> ReloadOutcome
}

/// A reload that succeeded: the bundles now loaded, the keys whose new values wait for a
/// restart, and the configuration now in force (the inboxes apply their part of it,
/// ``PipelineControl/reload(applyingTo:)``).
public struct ReloadOutcome: Sendable {
    public var bundles: [LoadedBundle]
    public var restartRequired: [String]
    public var configuration: DaemonConfiguration

    public init(bundles: [LoadedBundle], restartRequired: [String], configuration: DaemonConfiguration) {
        self.bundles = bundles
        self.restartRequired = restartRequired
        self.configuration = configuration
    }
}

extension PipelineControl {
    /// Reloads, then has the running inboxes apply their part of the new configuration
    /// (``InboxService/applyReloaded(_:to:)``). Every reload the daemon does, by command or by
    /// SIGHUP, goes through here.
    func reload(applyingTo inboxes: [InboxService]) async throws(ReloadRefusal) -> ReloadOutcome {
        let outcome = try await reload()
        InboxService.applyReloaded(outcome.configuration, to: inboxes)
        return outcome
    }
}

/// The control handler the daemon serves: `version`, `pause`, `resume`, `rescan`, `drain`,
/// `status` and `metrics` from the inbox services themselves; `stats` and `reload`, and the
/// pipeline's part of `status` and `metrics`, from a ``PipelineControl``.
///
/// `pause`, `resume`, `rescan` and `drain` act on every inbox, or on the one named by
/// `args.inbox`. `drain` with `args.exit = true` calls `requestShutdown` once it has drained.
public struct DaemonControlHandler: ControlCommandHandler {
    /// The inboxes the commands act on.
    public let inboxes: [InboxService]
    /// What `version` and `status` report.
    public let version: String
    /// The pipeline's part of the answers, nil while there is none.
    public let pipeline: (any PipelineControl)?
    private let startedAt: ContinuousClock.Instant
    private let requestShutdown: @Sendable () -> Void

    public init(
        inboxes: [InboxService],
        version: String,
        pipeline: (any PipelineControl)?,
        startedAt: ContinuousClock.Instant = .now,
        requestShutdown: @escaping @Sendable () -> Void
    ) {
        self.inboxes = inboxes
        self.version = version
        self.pipeline = pipeline
        self.startedAt = startedAt
        self.requestShutdown = requestShutdown
    }

    public func handle(_ request: ControlRequest) async throws(ControlError) -> [String: JSONValue] {
        switch request.command {
        case .version:
            return ["version": .string(version)]
        case .pause:
            let targets = try selectedInboxes(request)
            for inbox in targets { inbox.pause() }
            return ["paused": .array(targets.map { .string($0.configuration.name) })]
        case .resume:
            let targets = try selectedInboxes(request)
            for inbox in targets { inbox.resume() }
            return ["resumed": .array(targets.map { .string($0.configuration.name) })]
        case .rescan:
            let targets = try selectedInboxes(request)
            for inbox in targets { inbox.requestRescan() }
            return ["rescanning": .array(targets.map { .string($0.configuration.name) })]
        case .drain:
            let targets = try selectedInboxes(request)
            let exit: Bool
            switch request.arguments["exit"] {
            case nil: exit = false
            case .bool(let value)?: exit = value
            default: throw ControlError(code: ControlError.invalidArgument, message: "\"exit\" must be true or false")
            }
            await withTaskGroup(of: Void.self) { group in
                for inbox in targets { group.addTask { await inbox.drain() } }
            }
            if exit { requestShutdown() }
            return ["drained": .array(targets.map { .string($0.configuration.name) }), "exiting": .bool(exit)]
        case .status:
            var fields = await pipeline?.status().wireFields ?? [:]
            let statuses = inboxes.map(\.status)
            let state: String = if statuses.allSatisfy(\.isPaused) { "paused" } else if statuses.contains(where: { $0.spool.writeFailure != nil }) { "write_failing" } else if statuses.contains(where: \.spool.isWaitingForCapacity) { "backpressured" } else { "running" }
            fields["state"] = .string(state)
            fields["uptime_s"] = .double(Self.seconds(ContinuousClock.now - startedAt))
            fields["version"] = .string(version)
            fields["inboxes"] = .array(statuses.map(\.wireValue))
            return fields
        case .metrics:
            return ["format": "prometheus-text-0.0.4", "text": .string(await prometheusText())]
        case .stats:
            guard let pipeline else { throw Self.noPipeline(request.command) }
            return await pipeline.statistics().wireFields
        case .reload:
            guard let pipeline else { throw Self.noPipeline(request.command) }
            do throws(ReloadRefusal) {
                return try await pipeline.reload(applyingTo: inboxes).wireFields
            } catch {
                throw error.controlError
            }
        }
    }

    private func selectedInboxes(_ request: ControlRequest) throws(ControlError) -> [InboxService] {
        switch request.arguments["inbox"] {
        case nil:
            return inboxes
        case .string(let name)?:
            let selected = inboxes.filter { $0.configuration.name == name }
            guard !selected.isEmpty else {
                throw ControlError(code: ControlError.invalidArgument, message: "no inbox named \"\(name)\"")
            }
            return selected
        default:
            throw ControlError(code: ControlError.invalidArgument, message: "\"inbox\" must be an inbox name")
        }
    }

    /// The `metrics` reply's text (the HTTP API's `/metrics` too): the inboxes' counters, then
    /// the pipeline's.
    func prometheusText() async -> String {
        metricsText() + (await pipeline?.metrics() ?? "")
    }

    /// The daemon's own counters in the Prometheus text format.
    private func metricsText() -> String {
        let statuses = inboxes.map(\.status)
        let families: [(name: String, type: String, help: String, value: (InboxService.Status) -> Int)] = [
            ("purifyd_files_claimed_total", "counter", "Files claimed from the inbox.", { $0.spool.claimed }),
            ("purifyd_files_committed_total", "counter", "Files whose output and report were committed.", { $0.spool.committed }),
            ("purifyd_files_failed_total", "counter", "Files moved to failed/ by the pipeline.", { $0.spool.failed }),
            ("purifyd_files_rejected_total", "counter", "Entries rejected unopened (not regular, empty, too large).", { $0.spool.rejected }),
            ("purifyd_files_recovered_total", "counter", "Claimed files requeued at start.", { $0.spool.recovered }),
            ("purifyd_inbox_rescans_total", "counter", "Inbox listings (start, overflow, request).", { $0.watcher.rescans }),
            ("purifyd_inotify_overflows_total", "counter", "IN_Q_OVERFLOW events.", { $0.watcher.overflows }),
            ("purifyd_files_in_flight", "gauge", "Files claimed and not yet finished.", { $0.spool.inFlight }),
            ("purifyd_inbox_waiting", "gauge", "Files seen in the inbox and not yet claimed.", { $0.waitingInInbox }),
            ("purifyd_inbox_paused", "gauge", "1 while claiming is paused.", { $0.isPaused ? 1 : 0 }),
            ("purifyd_inbox_backpressured", "gauge", "1 while claiming waits for the pipeline.", { $0.spool.isWaitingForCapacity ? 1 : 0 }),
            ("purifyd_inbox_write_failing", "gauge", "1 while writes fail (full disk, quota, read-only, I/O error) and claiming waits.", { $0.spool.writeFailure != nil ? 1 : 0 }),
            ("purifyd_files_stalled", "gauge", "Files held for a retry after a write failure.", { $0.spool.stalled }),
            ("purifyd_write_failure_episodes_total", "counter", "Episodes of failing writes.", { $0.spool.writeFailureEpisodes }),
            ("purifyd_files_vanished_total", "counter", "Claimed files removed from the spool by someone else before they were finished.", { $0.spool.vanished }),
            ("purifyd_spool_folders_recreated_total", "counter", "Times folders of the spool, outbox or failed/ were found removed and created again.", { $0.spool.foldersRecreated }),
            ("purifyd_inbox_watching", "gauge", "1 while the inbox folder is watched (0 while it is missing).", { $0.watcher.isWatching ? 1 : 0 }),
        ]
        var text = ""
        for family in families {
            text += "# HELP \(family.name) \(family.help)\n# TYPE \(family.name) \(family.type)\n"
            for status in statuses {
                text += "\(family.name){inbox=\"\(status.name)\"} \(family.value(status))\n"
            }
        }
        return text
    }

    private static func noPipeline(_ command: ControlCommand) -> ControlError {
        ControlError(code: ControlError.unsupported, message: "\(command.rawValue) needs the image pipeline, which is not running")
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
