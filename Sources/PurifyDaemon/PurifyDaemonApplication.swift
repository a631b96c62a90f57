public import CoreMetrics
public import Logging
internal import PurifyControl
public import PurifyHTTP
internal import PurifySystem
public import ServiceLifecycle
internal import UnixSignals

/// The whole daemon minus the image pipeline, as one service (the shape of Hummingbird's
/// `Application`): an ``InboxService`` per configured inbox, the ``ControlServer`` answering
/// through a ``DaemonControlHandler``, the HTTP API (``APIServer``) when configured, and under
/// systemd the ``SystemdNotifyService``, all run in a `ServiceGroup`.
///
/// - SIGTERM and SIGINT shut down gracefully: the HTTP API stops accepting and answers the
///   requests it holds, inboxes stop claiming and wait for their files in
///   flight, for at most the configuration's drain deadline; then the rest is cancelled (what
///   was unfinished stays claimed and is recovered at the next start).
/// - SIGHUP calls ``PipelineControl/reload()`` when a pipeline is given.
/// - READY=1 goes out once the control socket (and the HTTP API, when configured) accepts
///   connections, with a one-line STATUS=.
///   Load the models before calling ``run()``, so that READY=1 means ready.
///
/// ``DaemonLauncher/run(configurationPath:environment:)`` parses the configuration, bootstraps
/// logging (``DaemonLogHandler/bootstrap(logLevel:environment:)``), loads the models into a
/// ``PurificationService``, and runs this with it.
public struct PurifyDaemonApplication: Service {
    /// The configuration the daemon runs with.
    public let configuration: DaemonConfiguration
    /// One service per configured inbox, in the configuration's order.
    public let inboxes: [InboxService]
    private let pipeline: (any PipelineControl)?
    private let backgroundServices: [any Service]
    private let http: HTTPFrontEnd?
    private let version: String
    private let environment: [String: String]
    private let logger: Logger

    /// - Parameters:
    ///   - processor: Receives every claimed file (the pipeline's entry point).
    ///   - pipeline: Answers `stats`, `reload` and SIGHUP, and adds to `status` and `metrics`.
    ///   - environment: The process environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, …).
    ///   - backgroundServices: What the inboxes depend on (``PurificationService``, which runs
    ///     the pipelines): run beside the rest, shut down after the inboxes have drained.
    ///   - http: The HTTP API, when the configuration has one.
    public init(
        configuration: DaemonConfiguration,
        processor: any ClaimedFileProcessor,
        pipeline: (any PipelineControl)?,
        version: String,
        environment: [String: String],
        logger: Logger,
        backgroundServices: [any Service] = [],
        http: HTTPFrontEnd? = nil
    ) throws {
        self.configuration = configuration
        var inboxes: [InboxService] = []
        for inbox in configuration.inboxes {
            inboxes.append(try InboxService(configuration: inbox, processor: processor, logger: logger))
        }
        self.inboxes = inboxes
        self.pipeline = pipeline
        self.backgroundServices = backgroundServices
        self.http = http
        self.version = version
        self.environment = environment
        self.logger = logger
    }

    /// A one-line summary for STATUS=: `2 inboxes: 3 in flight, 120 done, 1 failed`.
    public var statusSummary: String {
        let statuses = inboxes.map(\.status)
        let inFlight = statuses.reduce(0) { $0 + $1.spool.inFlight }
        let done = statuses.reduce(0) { $0 + $1.spool.committed }
        let failed = statuses.reduce(0) { $0 + $1.spool.failed + $1.spool.rejected }
        let paused = statuses.allSatisfy(\.isPaused) ? " (paused)" : ""
        return "\(statuses.count) inbox\(statuses.count == 1 ? "" : "es")\(paused): \(inFlight) in flight, \(done) done, \(failed) failed"
    }

    public func run() async throws {
        let notifier = SystemdNotifier(environment: environment)
        let groupBox = Locked<ServiceGroup?>(nil)
        let handler = DaemonControlHandler(inboxes: inboxes, version: version, pipeline: pipeline) {
            guard let group = groupBox.withLock({ $0 }) else { return }
            Task { await group.triggerGracefulShutdown() }
        }
        var controlConfiguration = ControlServer.Configuration(
            path: configuration.controlSocketPath,
            allowedUIDs: Set(configuration.allowedUIDs),
            allowedGIDs: Set(configuration.allowedGIDs)
        )
        let summary: @Sendable () -> String = { [self] in statusSummary }
        let logger = self.logger
        // Ready once every listener accepts: the control socket, and the HTTP API when there is
        // one (a port in use or a missing socket unit then fails the start, not a running service).
        let listenersToCome = Locked(http == nil ? 1 : 2)
        let listening: @Sendable () -> Void = {
            guard listenersToCome.withLock({ count in
                count -= 1
                return count == 0
            }) else { return }
            logger.notice("ready", metadata: ["status": "\(summary())"])
            do {
                try notifier?.notifyReady(status: summary())
            } catch {
                logger.warning("cannot notify the service manager", metadata: ["error": "\(error)"])
            }
        }
        controlConfiguration.onListening = listening
        let control = try ControlServer(configuration: controlConfiguration, handler: handler, logger: logger)

        // Shut down in reverse order: STOPPING=1 first, then the HTTP API answers what it holds,
        // then the control socket, then the inboxes drain, then the background services (the
        // pipelines) finish.
        var services: [any Service] = backgroundServices
        services += inboxes as [any Service]
        services.append(control)
        if let http {
            let routes = APIRoutes(configuration: http.configuration, backend: http.backend, metrics: http.metrics,
                                   metricsText: { await handler.prometheusText() }, logger: logger)
            services.append(APIServer(routes: routes, logger: logger) { _ in listening() })
        }
        if let pipeline { services.append(ReloadOnHangupService(pipeline: pipeline, inboxes: inboxes, logger: logger)) }
        if let notifier { services.append(SystemdNotifyService(notifier: notifier, environment: environment, status: summary)) }

        var groupConfiguration = ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        )
        groupConfiguration.maximumGracefulShutdownDuration = configuration.drainDeadline
        let group = ServiceGroup(configuration: groupConfiguration)
        groupBox.withLock { $0 = group }
        try await group.run()
        logger.notice("stopped", metadata: ["status": "\(summary())"])
    }
}

/// The HTTP API of a daemon: its settings, the pipelines that answer it, and where it counts
/// its requests (the registry `metrics` renders).
public struct HTTPFrontEnd: Sendable {
    public var configuration: APIConfiguration
    public var backend: any PurificationBackend
    public var metrics: any MetricsFactory

    public init(configuration: APIConfiguration, backend: any PurificationBackend, metrics: any MetricsFactory) {
        self.configuration = configuration
        self.backend = backend
        self.metrics = metrics
    }
}

/// Reloads the pipeline's configuration and models on SIGHUP until graceful shutdown.
struct ReloadOnHangupService: Service {
    let pipeline: any PipelineControl
    let inboxes: [InboxService]
    let logger: Logger

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            logger.info("SIGHUP: reloading the configuration and models")
            // The reload logs its own outcome, whoever asked for it.
            _ = try? await pipeline.reload(applyingTo: inboxes)
        }
    }
}
