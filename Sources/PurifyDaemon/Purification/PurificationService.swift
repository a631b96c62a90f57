public import CoreMetrics
internal import Foundation
public import Logging
public import PurifyEngine
public import PurifyHTTP
internal import PurifyPipeline
internal import Prometheus
public import ServiceLifecycle
internal import PurifyImage
internal import PurifySystem

/// The daemon's image pipelines, one per inbox, as one service: it feeds each claimed file into
/// its inbox's ``Pipeline`` (``ClaimedFileProcessor``), runs the pipelines and reads their results,
/// and answers the pipeline's part of the control socket (``PipelineControl``): bundles in
/// `status`, stage latencies and throughput in `stats` and `metrics`, and `reload`. It is the
/// HTTP API's ``PurificationBackend`` too: a request goes into the pipeline of the first inbox
/// that runs the bundle it names, batched with that inbox's files.
///
/// Give it to ``PurifyDaemonApplication`` as the processor, the pipeline control and a
/// background service: the inboxes then shut down first, and on graceful shutdown the pipelines
/// finish what the inboxes handed them before this service returns. A cancellation (the drain
/// deadline) abandons what is still in flight; those files stay claimed and are recovered at the
/// next start.
///
/// A reload reads the configuration file again and loads every bundle; only when all of it
/// loads are the inboxes' pipelines replaced (the old ones finish the files they hold). Settings
/// the running spools and sockets fixed at start are listed in the reply as needing a restart.
public final class PurificationService: Service, ClaimedFileProcessor, PipelineControl, PurificationBackend {
    private struct State {
        /// The pipeline each inbox feeds, by inbox name.
        var pipelines: [String: InboxPipeline]
        var isRunning = false
        var isStopping = false
        var isReloading = false
        var reloads = 0
        var failedReloads = 0
        var lastError: String?
    }

    /// The configuration the daemon started with (its inboxes, spools and socket stay).
    public let startConfiguration: DaemonConfiguration
    /// The file `reload` reads; nil when there is none (then `reload` is unsupported).
    public let configurationPath: String?
    private let engine: InferenceEngine
    private let responses: APIResponses
    private let state: Locked<State>
    private let statistics = PurificationStatistics()
    /// swift-metrics' factory over the registry `metrics` renders: the HTTP API counts its
    /// requests there.
    public var metricsFactory: any MetricsFactory { statistics.factory }
    private let launches: AsyncStream<InboxPipeline>
    private let launcher: AsyncStream<InboxPipeline>.Continuation
    /// Every logger's level; a reload sets it to the new file's `log_level`.
    private let logThreshold: LogThreshold
    private let logger: Logger

    /// - Parameters:
    ///   - prepared: The pipelines to start with (``PreparedPipelines/prepare(_:engine:committers:)``).
    ///   - configurationPath: What `reload` reads.
    ///   - engine: What `reload` loads bundles through: the one `prepared` used.
    ///   - logThreshold: The loggers' shared level, which `reload` sets to the file's `log_level`.
    public init(prepared: PreparedPipelines, configurationPath: String?, engine: InferenceEngine,
                logThreshold: LogThreshold, logger: Logger) {
        self.startConfiguration = prepared.configuration
        self.configurationPath = configurationPath
        self.engine = engine
        self.logThreshold = logThreshold
        self.logger = logger
        responses = prepared.responses
        let buildInfo = MetricNameDescriptor(namespace: "purifyd", metricName: "build", unitName: "info",
                                             helpText: "The daemon's version; always 1.")
        statistics.registry.makeGauge(descriptor: buildInfo, labels: [("version", DaemonLauncher.version)]).set(1.0)
        (launches, launcher) = AsyncStream.makeStream()
        var pipelines: [String: InboxPipeline] = [:]
        for entry in prepared.inboxes {
            pipelines[entry.inbox.name] = entry
            launcher.yield(entry)
        }
        state = Locked(State(pipelines: pipelines))
    }

    // MARK: - Service

    public func run() async throws {
        state.withLock { $0.isRunning = true }
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for await entry in launches {
                    group.addTask { await self.drive(entry) }
                }
            }
        } onGracefulShutdown: {
            self.stop()
        }
    }

    /// Ends the input of every pipeline (they finish what they hold) and starts no more.
    private func stop() {
        let running: [InboxPipeline] = state.withLock { state in
            state.isStopping = true
            launcher.finish()
            return Array(state.pipelines.values)
        }
        for entry in running { entry.pipeline.finishInput() }
    }

    /// Runs one pipeline and reads its results until it has finished its input.
    private func drive(_ entry: InboxPipeline) async {
        let inbox = entry.inbox.name
        await withDiscardingTaskGroup { group in
            group.addTask {
                do {
                    try await entry.pipeline.run()
                } catch {
                    self.recordError("the pipeline of inbox \(inbox) failed: \(error)")
                }
            }
            for await result in entry.pipeline.results {
                if APIResponses.owns(result.request) {
                    statistics.record(result.report, committed: result.reportPath != nil, inbox: nil)
                    // The report could not even be encoded: the caller gets the failure.
                    if result.reportPath == nil { responses.finish(result.request, report: result.report) }
                    continue
                }
                statistics.record(result.report, committed: result.reportPath != nil, inbox: inbox)
                if result.reportPath == nil { await uncommitted(result, of: entry) }
            }
        }
    }

    /// A result the committer could not commit. A file still registered never reached the spool
    /// (its report could not even be encoded): it goes to `failed/`. A write failure left the
    /// file held by its spool, which retries it. Otherwise the spool's commit or fail threw, and
    /// the file stays claimed for recovery at the next start.
    private func uncommitted(_ result: PurificationResult, of entry: InboxPipeline) async {
        if entry.committer.wasStalled(result.request) { return }
        let reason = result.report.error?.message ?? "unknown"
        guard let (file, spool) = entry.committer.unregister(result.request) else {
            recordError("cannot commit \(result.request.name) (it stays claimed until the next start): \(reason)")
            return
        }
        await fail(file, of: spool, code: "commit", message: reason)
    }

    /// Moves `file` to `failed/` from a thread of its own (the spool fsyncs).
    private func fail(_ file: ClaimedFile, of spool: InboxSpool, code: String, message: String) async {
        do {
            _ = try await SystemThread.run(name: "purifyd-fail") { try spool.fail(file, code: code, message: message) }
        } catch {
            recordError("cannot move \(file.originalName) to failed/ (it stays claimed until the next start): \(error)")
        }
    }

    private func recordError(_ message: String) {
        logger.error("\(message)")
        state.withLock { $0.lastError = message }
    }

    // MARK: - ClaimedFileProcessor

    /// Submits `file` to its inbox's pipeline, suspending while that pipeline is full. The
    /// inbox's queue capacity keeps the pipeline from filling up, so the claim loop waits on the
    /// spool (and `status` says `backpressured`) rather than here.
    public func process(_ file: ClaimedFile, from spool: InboxSpool) async {
        let inbox = spool.configuration.name
        while true {
            guard let entry = state.withLock({ $0.pipelines[inbox] }) else {
                await fail(file, of: spool, code: "no_pipeline", message: "no pipeline serves inbox \(inbox)")
                return
            }
            let request = entry.committer.register(file, from: spool)
            do {
                try await entry.pipeline.submit(request)
                return
            } catch {
                _ = entry.committer.unregister(request)
                // A reload replaced the pipeline between the look-up and the submission.
                let replaced = state.withLock { !$0.isStopping && $0.pipelines[inbox]?.pipeline !== entry.pipeline }
                if replaced && !Task.isCancelled { continue }
                logger.notice("the pipeline stopped before taking a file; it stays claimed until the next start",
                              metadata: ["inbox": "\(inbox)", "file": "\(file.originalName)"])
                return
            }
        }
    }

    // MARK: - PipelineControl

    /// The bundle each running inbox has loaded, the reload counts and the last error.
    public func status() async -> PipelineStatus {
        let (pipelines, reloads, failedReloads, lastError) = state.withLock { ($0.pipelines, $0.reloads, $0.failedReloads, $0.lastError) }
        return PipelineStatus(bundles: Self.loadedBundles(startConfiguration, pipelines), succeededReloads: reloads,
                              failedReloads: failedReloads, lastError: lastError)
    }

    private static func loadedBundles(_ configuration: DaemonConfiguration, _ pipelines: [String: InboxPipeline]) -> [LoadedBundle] {
        configuration.inboxes.compactMap { inbox in
            guard let entry = pipelines[inbox.name] else { return nil }
            let manifest = entry.bundle.manifest
            let classifies = entry.pipeline.configuration.classifies
            return LoadedBundle(inbox: inbox.name, name: manifest.name, version: manifest.version, directory: entry.bundle.directory,
                                purifierSHA256: manifest.purifier.sha256,
                                classifierSHA256: classifies ? manifest.classifier?.sha256 : nil, classifies: classifies)
        }
    }

    public func statistics() async -> PipelineStatistics {
        statistics.statistics()
    }

    public func metrics() async -> String {
        let (pipelines, reloads, failedReloads) = state.withLock { ($0.pipelines, $0.reloads, $0.failedReloads) }
        var text = statistics.metrics()
        text += "# HELP purifyd_bundle_info The model bundle each inbox runs.\n# TYPE purifyd_bundle_info gauge\n"
        for name in pipelines.keys.sorted() {
            let manifest = pipelines[name]!.bundle.manifest
            text += "purifyd_bundle_info{inbox=\"\(name)\",bundle=\"\(manifest.name)\",version=\"\(manifest.version)\",purifier_sha256=\"\(manifest.purifier.sha256)\"} 1\n"
        }
        text += "# HELP purifyd_reloads_total Reloads of the configuration and models, by result.\n# TYPE purifyd_reloads_total counter\n"
        text += "purifyd_reloads_total{result=\"succeeded\"} \(reloads)\npurifyd_reloads_total{result=\"failed\"} \(failedReloads)\n"
        return text
    }

    /// Reads the configuration file again, loads its bundles and swaps every running inbox's
    /// pipeline for a new one; on any failure nothing changes. The outcome lists the bundles now
    /// loaded and the keys whose new values wait for a restart. Every outcome is logged once,
    /// here.
    public func reload() async throws(ReloadRefusal) -> ReloadOutcome {
        guard let configurationPath else {
            throw ReloadRefusal(reason: .noConfigurationFile, message: "the daemon was started without a configuration file")
        }
        let begun = state.withLock { state in
            guard !state.isReloading && !state.isStopping else { return false }
            state.isReloading = true
            return true
        }
        guard begun else {
            let message = "a reload is in progress, or the daemon is stopping"
            logger.warning("reload refused", metadata: ["reason": "\(message)"])
            throw ReloadRefusal(reason: .busy, message: message)
        }
        defer { state.withLock { $0.isReloading = false } }

        let prepared: PreparedPipelines
        let restartRequired: [String]
        do throws(ConfigurationError) {
            var configuration = try DaemonConfiguration.load(from: configurationPath)
            restartRequired = ConfigurationChanges.keysNeedingRestart(from: startConfiguration, to: configuration)
            // Only the inboxes that run get pipelines; new ones wait for a restart.
            let running = Set(startConfiguration.inboxes.map(\.name))
            configuration.inboxes.removeAll { !running.contains($0.name) }
            let committers = state.withLock { $0.pipelines.mapValues(\.committer) }
            prepared = try await PreparedPipelines.prepare(configuration, engine: engine, committers: committers,
                                                           responses: responses)
        } catch {
            let message = "\(configurationPath): \(error); keeping the running configuration and models"
            state.withLock { state in
                state.failedReloads += 1
                state.lastError = "reload: \(message)"
            }
            logger.error("reload failed", metadata: ["error": "\(message)"])
            throw ReloadRefusal(reason: .failed, message: message)
        }
        for entry in try swap(in: prepared) { entry.pipeline.finishInput() }
        logger.notice("reloaded the configuration and models", metadata: ["restart_required": "\(restartRequired)"])
        logThreshold.level = prepared.configuration.logLevel
        return ReloadOutcome(bundles: await status().bundles, restartRequired: restartRequired,
                             configuration: prepared.configuration)
    }

    /// Makes `prepared` the running pipelines and starts them; returns the ones they replace.
    private func swap(in prepared: PreparedPipelines) throws(ReloadRefusal) -> [InboxPipeline] {
        try state.withLock { state throws(ReloadRefusal) -> [InboxPipeline] in
            guard !state.isStopping else { throw ReloadRefusal(reason: .busy, message: "the daemon is stopping") }
            var replaced: [InboxPipeline] = []
            for entry in prepared.inboxes {
                if let old = state.pipelines.updateValue(entry, forKey: entry.inbox.name) { replaced.append(old) }
                launcher.yield(entry)
            }
            state.reloads += 1
            return replaced
        }
    }
}

// MARK: - PurificationBackend

extension PurificationService {
    /// Every bundle the inboxes run, once, in the order of the first inbox that runs it.
    public func servedBundles() -> [ServedBundle] {
        let pipelines = state.withLock { $0.pipelines }
        var seen = Set<String>()
        var bundles: [ServedBundle] = []
        for inbox in startConfiguration.inboxes {
            guard let entry = pipelines[inbox.name], seen.insert(entry.bundle.manifest.name).inserted else { continue }
            let configuration = entry.pipeline.configuration
            bundles.append(ServedBundle(
                name: entry.bundle.manifest.name, version: entry.bundle.manifest.version,
                purifierSha256: entry.bundle.manifest.purifier.sha256, classifies: configuration.classifies,
                inputPolicy: configuration.inputPolicy.rawValue, maxBytes: configuration.decodeLimits.maxBytes,
                maxPixels: configuration.decodeLimits.maxPixels, inbox: inbox.name))
        }
        return bundles
    }

    public var isAcceptingRequests: Bool {
        state.withLock { $0.isRunning && !$0.isStopping }
    }

    public func purify(_ image: [UInt8], bundle: String, name: String, requestID: String) async throws(APIRefusal) -> PurifiedImage {
        while true {
            let (entry, stopping): (InboxPipeline?, Bool) = state.withLock { state in
                for inbox in startConfiguration.inboxes {
                    if let entry = state.pipelines[inbox.name], entry.bundle.manifest.name == bundle { return (entry, state.isStopping) }
                }
                return (nil, state.isStopping)
            }
            guard !stopping else { throw APIRefusal(.unavailable, "the daemon is stopping") }
            guard let entry else {
                let names = servedBundles().map(\.name).joined(separator: ", ")
                throw APIRefusal(.unknownBundle, "no inbox runs a bundle named \"\(bundle)\" (served: \(names))")
            }
            let request = responses.register(image: image, name: name, requestID: requestID)
            do {
                try await entry.pipeline.submit(request)
            } catch {
                responses.unregister(request)
                if Task.isCancelled { throw APIRefusal(.unavailable, "the request was cancelled while the pipeline was full") }
                // A reload replaced the pipeline between the look-up and the submission.
                let replaced = state.withLock { !$0.isStopping && $0.pipelines[entry.inbox.name]?.pipeline !== entry.pipeline }
                if replaced { continue }
                throw APIRefusal(.unavailable, "the pipeline stopped before taking the request")
            }
            guard let result = await responses.wait(for: request) else {
                throw APIRefusal(.unavailable, "the request was cancelled before its result")
            }
            return result
        }
    }
}
