internal import Logging
internal import PurifyEngine
internal import PurifyHTTP
internal import PurifyPipeline
internal import PurifyVersion
internal import PurifySystem

/// What the `purifyd` executable does, so that its `main` only parses arguments: check a
/// configuration, or load it with its models and run the daemon.
public enum DaemonLauncher {
    /// The daemon's version, as `purifyd --version` and the control socket's `version` give it.
    public static let version = PurifyVersion.string
    /// Where the daemon reads its configuration unless told otherwise.
    public static let defaultConfigurationPath = "/etc/purifyd/purifyd.toml"

    /// Parses the configuration at `path` and loads every inbox's bundle, as a start would, and
    /// returns a summary of what the daemon would run.
    ///
    /// - Throws: ``LaunchError`` with exit status 78 (EX_CONFIG) naming the key at fault, or 70
    ///   (EX_SOFTWARE) when the engine cannot start.
    public static func checkConfiguration(at path: String) async throws(LaunchError) -> String {
        let configuration = try load(path)
        let prepared = try await prepare(configuration, path: path, engine: try startEngine(configuration.engine))
        return "\(path): valid\n" + prepared.summary
    }

    /// Runs the daemon on the configuration at `configurationPath` until it shuts down (SIGTERM,
    /// SIGINT, or `drain` with `exit`): bootstraps logging (``DaemonLogHandler``), loads the
    /// models, then runs ``PurifyDaemonApplication`` with a ``PurificationService``, so that
    /// READY=1 goes out only once the models are loaded and the control socket listens.
    ///
    /// - Throws: ``LaunchError`` with a sysexits status: 78 for the configuration or a bundle (or
    ///   spool folders on different mounts), 69 when another daemon holds the control socket,
    ///   74 for a failed system call, 70 otherwise.
    public static func run(configurationPath: String, environment: [String: String]) async throws(LaunchError) {
        let configuration = try load(configurationPath)
        let logThreshold = DaemonLogHandler.bootstrap(logLevel: configuration.logLevel, environment: environment)
        let logger = Logger(label: "purifyd")
        do {
            try FileSystem.raiseOpenFileLimit()
        } catch {
            logger.warning("cannot raise the limit on open files", metadata: ["error": "\(error)"])
        }
        let engine = try startEngine(configuration.engine)
        let prepared = try await prepare(configuration, path: configurationPath, engine: engine)
        for entry in prepared.inboxes {
            let manifest = entry.bundle.manifest
            logger.notice("models loaded", metadata: [
                "inbox": "\(entry.inbox.name)", "bundle": "\(manifest.name)", "version": "\(manifest.version)",
                "directory": "\(entry.bundle.directory)",
            ])
        }
        let purification = PurificationService(prepared: prepared, configurationPath: configurationPath, engine: engine,
                                               logThreshold: logThreshold, logger: logger)
        do {
            let http = configuration.http.map {
                HTTPFrontEnd(configuration: $0, backend: purification, metrics: purification.metricsFactory)
            }
            let application = try PurifyDaemonApplication(
                configuration: configuration, processor: purification, pipeline: purification, version: version,
                environment: environment, logger: logger, backgroundServices: [purification], http: http)
            try await application.run()
        } catch let error as DaemonError {
            throw LaunchError(exitCode: exitCode(for: error), message: error.description)
        } catch let error as SystemError {
            throw LaunchError(exitCode: LaunchError.ioError, message: error.description)
        } catch {
            throw LaunchError(exitCode: LaunchError.software, message: "\(error)")
        }
    }

    private static func load(_ path: String) throws(LaunchError) -> DaemonConfiguration {
        do {
            return try DaemonConfiguration.load(from: path)
        } catch {
            throw LaunchError(exitCode: LaunchError.configuration, message: "\(path): \(error)")
        }
    }

    private static func startEngine(_ configuration: EngineConfiguration) throws(LaunchError) -> InferenceEngine {
        do {
            return try InferenceEngine(threadCount: configuration.threads, planCacheLimits: configuration.planCache)
        } catch {
            throw LaunchError(exitCode: LaunchError.software, message: "cannot start the inference engine: \(error)")
        }
    }

    private static func prepare(_ configuration: DaemonConfiguration, path: String, engine: InferenceEngine) async throws(LaunchError) -> PreparedPipelines {
        do {
            return try await PreparedPipelines.prepare(configuration, engine: engine)
        } catch {
            throw LaunchError(exitCode: LaunchError.configuration, message: "\(path): \(error)")
        }
    }

    private static func exitCode(for error: DaemonError) -> Int32 {
        switch error.code {
        case .crossMount: LaunchError.configuration
        case .controlSocketInUse: LaunchError.unavailable
        default: LaunchError.software
        }
    }
}

/// Why `purifyd` could not start or stopped on an error, with its sysexits exit status.
public struct LaunchError: Error, Sendable, Equatable, CustomStringConvertible {
    /// EX_UNAVAILABLE.
    public static let unavailable: Int32 = 69
    /// EX_SOFTWARE.
    public static let software: Int32 = 70
    /// EX_IOERR.
    public static let ioError: Int32 = 74
    /// EX_CONFIG.
    public static let configuration: Int32 = 78

    /// The process's exit status.
    public var exitCode: Int32
    /// What went wrong, naming the key or file at fault.
    public var message: String

    public init(exitCode: Int32, message: String) {
        self.exitCode = exitCode
        self.message = message
    }

    public var description: String { message }
}
