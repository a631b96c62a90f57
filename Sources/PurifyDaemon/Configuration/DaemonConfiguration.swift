public import Logging
public import PurifyEngine
public import PurifyHTTP
public import PurifyPipeline
internal import PurifySystem

/// Everything `purifyd` reads from its TOML configuration file, with defaults filled in and
/// relative paths resolved.
///
/// Parse one with ``DaemonConfiguration/init(toml:baseDirectory:)`` or
/// ``DaemonConfiguration/load(from:)``; `etc/purifyd/purifyd.toml` documents every key.
public struct DaemonConfiguration: Sendable, Equatable {
    /// The directory that holds each inbox's spool by default (`<state>/<inbox>/claimed`,
    /// `journal`, `failed`).
    public var stateDirectory: String
    /// The path of the control socket.
    public var controlSocketPath: String
    /// Peers whose uid is listed here may use the control socket (the daemon's own uid and root
    /// always may).
    public var allowedUIDs: [UInt32]
    /// Peers whose primary gid is listed here may use the control socket.
    public var allowedGIDs: [UInt32]
    /// How long SIGTERM / `drain` waits for in-flight files before the daemon gives up on them
    /// (they stay claimed and are recovered at the next start).
    public var drainDeadline: Duration
    /// The minimum level the daemon logs at.
    public var logLevel: Logger.Level
    /// How the inference engine that every inbox shares runs.
    public var engine: EngineConfiguration
    /// The watched folders, at least one.
    public var inboxes: [InboxConfiguration]
    /// The HTTP API (`[http]`); nil when the file has no such table.
    public var http: APIConfiguration?

    public init(
        stateDirectory: String = Defaults.stateDirectory,
        controlSocketPath: String = Defaults.controlSocketPath,
        allowedUIDs: [UInt32] = [],
        allowedGIDs: [UInt32] = [],
        drainDeadline: Duration = Defaults.drainDeadline,
        logLevel: Logger.Level = .info,
        engine: EngineConfiguration = EngineConfiguration(),
        inboxes: [InboxConfiguration],
        http: APIConfiguration? = nil
    ) {
        self.stateDirectory = stateDirectory
        self.controlSocketPath = controlSocketPath
        self.allowedUIDs = allowedUIDs
        self.allowedGIDs = allowedGIDs
        self.drainDeadline = drainDeadline
        self.logLevel = logLevel
        self.engine = engine
        self.inboxes = inboxes
        self.http = http
    }

    /// The defaults the parser fills in for keys a file leaves out.
    public enum Defaults {
        public static let stateDirectory = "/var/lib/purifyd"
        public static let controlSocketPath = "/run/purifyd/control.sock"
        public static let drainDeadline = Duration.seconds(30)
        public static let outputFormat = OutputFormat.same
        public static let jpegQuality = 90
        public static let classifierEnabled = true
        public static let queueCapacity = 64
        public static let limits = InputLimits(maxBytes: 32 << 20, maxPixels: 1 << 24, maxSide: 8192)
        public static let batching = BatchingConfiguration(maxBatch: 16, maxDelay: .milliseconds(10))
        public static let inputPolicy = InputPolicy.reject
        public static let memory = MemoryConfiguration(
            tileSide: PipelineConfiguration.Defaults.tileSide, batchPixels: PipelineConfiguration.Defaults.maxBatchPixels,
            pixelsInFlight: PipelineConfiguration.Defaults.maxPixelsInFlight)
    }
}

/// The `[engine]` table: the inference engine's threads and how many execution plans it keeps.
public struct EngineConfiguration: Sendable, Equatable {
    /// Compute threads; `nil` for one per online core.
    public var threads: Int?
    /// Bounds on the execution plans (one per input shape and batch size) each model keeps.
    public var planCache: PlanCacheLimits

    public init(threads: Int? = nil, planCache: PlanCacheLimits = PlanCacheLimits()) {
        self.threads = threads
        self.planCache = planCache
    }
}

/// One watched folder and what to do with the files that land in it.
public struct InboxConfiguration: Sendable, Equatable {
    /// A short identifier, unique in the file, used for the spool directory and in status output.
    public var name: String
    /// The folder producers drop files into.
    public var path: String
    /// The folder purified images and their reports go to.
    public var outbox: String
    /// The model bundle directory (`models/<name>/`).
    public var bundlePath: String
    /// The format purified images are written in.
    public var outputFormat: OutputFormat
    /// The JPEG quality (1–100) used when the output is JPEG.
    public var jpegQuality: Int
    /// Whether the bundle's classifier runs on the purified image and its result goes in the report.
    public var classifierEnabled: Bool
    /// Limits checked before decoding.
    public var limits: InputLimits
    /// How the pipeline batches images for the purifier.
    public var batching: BatchingConfiguration
    /// What happens to an image outside the bundle's domain.
    public var inputPolicy: InputPolicy
    /// The bounds on the pixels the inbox's pipeline holds.
    public var memory: MemoryConfiguration
    /// How many claimed files may be in flight; past it the daemon stops claiming and files wait
    /// in the inbox.
    public var queueCapacity: Int
    /// What happens to the original once its output and report are written.
    public var afterSuccess: AfterSuccessPolicy
    /// How often the inbox is listed again besides its inotify events; `nil` (the default)
    /// for never. Set it for an inbox on a network filesystem (NFS, SMB), where files written
    /// by another host raise no inotify event.
    public var rescanInterval: Duration?
    /// Where files that cannot be processed go, with a JSON report each.
    public var failedDirectory: String
    /// The inbox's spool: `claimed/` and `journal/`. Files move between the inbox, the spool,
    /// the failed and the archive directories by rename(2), so all must be on one mount.
    public var spoolDirectory: String

    public init(
        name: String,
        path: String,
        outbox: String,
        bundlePath: String,
        outputFormat: OutputFormat = DaemonConfiguration.Defaults.outputFormat,
        jpegQuality: Int = DaemonConfiguration.Defaults.jpegQuality,
        classifierEnabled: Bool = DaemonConfiguration.Defaults.classifierEnabled,
        limits: InputLimits = DaemonConfiguration.Defaults.limits,
        batching: BatchingConfiguration = DaemonConfiguration.Defaults.batching,
        inputPolicy: InputPolicy = DaemonConfiguration.Defaults.inputPolicy,
        memory: MemoryConfiguration = DaemonConfiguration.Defaults.memory,
        queueCapacity: Int = DaemonConfiguration.Defaults.queueCapacity,
        afterSuccess: AfterSuccessPolicy = .delete,
        rescanInterval: Duration? = nil,
        spoolDirectory: String,
        failedDirectory: String? = nil
    ) {
        self.name = name
        self.path = path
        self.outbox = outbox
        self.bundlePath = bundlePath
        self.outputFormat = outputFormat
        self.jpegQuality = jpegQuality
        self.classifierEnabled = classifierEnabled
        self.limits = limits
        self.batching = batching
        self.inputPolicy = inputPolicy
        self.memory = memory
        self.queueCapacity = queueCapacity
        self.afterSuccess = afterSuccess
        self.rescanInterval = rescanInterval
        self.spoolDirectory = spoolDirectory
        self.failedDirectory = failedDirectory ?? FilePaths.join(spoolDirectory, "failed")
    }
}

/// The format a purified image is written in.
public enum OutputFormat: String, Sendable, Equatable, CaseIterable {
    /// The input's own format (PNG stays PNG, JPEG stays JPEG).
    case same
    /// PNG (lossless).
    case png
    /// JPEG at the inbox's `jpegQuality`.
    case jpeg
}

/// Limits on an input, checked from the file size and the image header before decoding.
public struct InputLimits: Sendable, Equatable {
    /// The largest file accepted, in bytes (also enforced when the file is claimed).
    public var maxBytes: Int
    /// The most pixels (width × height) accepted.
    public var maxPixels: Int
    /// The longest side accepted, in pixels.
    public var maxSide: Int

    public init(maxBytes: Int, maxPixels: Int, maxSide: Int) {
        self.maxBytes = maxBytes
        self.maxPixels = maxPixels
        self.maxSide = maxSide
    }
}

/// Dynamic batching: a batch runs when it is full or its oldest image has waited `maxDelay`.
public struct BatchingConfiguration: Sendable, Equatable {
    /// The most images in one batch.
    public var maxBatch: Int
    /// How long the oldest image in a batch may wait for the batch to fill.
    public var maxDelay: Duration

    public init(maxBatch: Int, maxDelay: Duration) {
        self.maxBatch = maxBatch
        self.maxDelay = maxDelay
    }
}

/// The `[inbox.memory]` table: what bounds an inbox's memory by pixels rather than files.
public struct MemoryConfiguration: Sendable, Equatable {
    /// The side of the square tiles larger images are purified in.
    public var tileSide: Int
    /// The most pixels in one purifier batch.
    public var batchPixels: Int
    /// The most pixels decoded and not yet committed at once.
    public var pixelsInFlight: Int

    public init(tileSide: Int, batchPixels: Int, pixelsInFlight: Int) {
        self.tileSide = tileSide
        self.batchPixels = batchPixels
        self.pixelsInFlight = pixelsInFlight
    }
}

/// What happens to an original after its output and report are committed.
public enum AfterSuccessPolicy: Sendable, Equatable {
    /// The original is deleted.
    case delete
    /// The original is moved into this directory (never replacing a file already there).
    case archive(directory: String)
}
