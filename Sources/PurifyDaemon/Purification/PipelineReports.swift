/// The bundle one inbox runs, as `status` and a reload report it.
public struct LoadedBundle: Sendable, Equatable {
    public var inbox: String
    public var name: String
    public var version: String
    /// The bundle's folder.
    public var directory: String
    public var purifierSHA256: String
    /// The classifier's checksum, nil when the inbox does not classify.
    public var classifierSHA256: String?
    /// Whether the inbox classifies inputs and outputs.
    public var classifies: Bool

    public init(inbox: String, name: String, version: String, directory: String, purifierSHA256: String,
                classifierSHA256: String?, classifies: Bool) {
        self.inbox = inbox
        self.name = name
        self.version = version
        self.directory = directory
        self.purifierSHA256 = purifierSHA256
        self.classifierSHA256 = classifierSHA256
        self.classifies = classifies
    }
}

/// The pipeline's part of `status`.
public struct PipelineStatus: Sendable, Equatable {
    /// Per running inbox, in the configuration's order.
    public var bundles: [LoadedBundle]
    public var succeededReloads: Int
    public var failedReloads: Int
    /// The pipeline's last error (a failed commit or reload), nil while there was none.
    public var lastError: String?

    public init(bundles: [LoadedBundle], succeededReloads: Int = 0, failedReloads: Int = 0, lastError: String? = nil) {
        self.bundles = bundles
        self.succeededReloads = succeededReloads
        self.failedReloads = failedReloads
        self.lastError = lastError
    }
}

/// What `stats` reports: latency per stage over the most recent results, throughput, and counts
/// per inbox.
public struct PipelineStatistics: Sendable, Equatable {
    /// Latency percentiles of one stage, in milliseconds.
    public struct StageLatency: Sendable, Equatable {
        /// Results the stage timed since start.
        public var count: Int
        public var p50: Double
        public var p90: Double
        public var p99: Double
        public var max: Double

        public init(count: Int, p50: Double, p90: Double, p99: Double, max: Double) {
            self.count = count
            self.p50 = p50
            self.p90 = p90
            self.p99 = p99
            self.max = max
        }
    }

    /// Results of one inbox.
    public struct InboxCounts: Sendable, Equatable {
        public var purified = 0
        public var failed = 0
        /// Results whose report could not be committed (the input stays claimed).
        public var uncommitted = 0

        public init(purified: Int = 0, failed: Int = 0, uncommitted: Int = 0) {
            self.purified = purified
            self.failed = failed
            self.uncommitted = uncommitted
        }
    }

    /// By stage name (`read`, `decode`, `batch_wait`, `purify`, `classify`, `encode`, `write`,
    /// `total`); stages that timed nothing yet are absent.
    public var latency: [String: StageLatency]
    /// How many recent results the percentiles cover.
    public var latencyWindow: Int
    /// Results per second over the last minute, or since start when that is shorter.
    public var throughputPerSecond: Double
    /// Results per second since start.
    public var totalThroughputPerSecond: Double
    public var inboxes: [String: InboxCounts]

    public init(latency: [String: StageLatency], latencyWindow: Int, throughputPerSecond: Double,
                totalThroughputPerSecond: Double, inboxes: [String: InboxCounts]) {
        self.latency = latency
        self.latencyWindow = latencyWindow
        self.throughputPerSecond = throughputPerSecond
        self.totalThroughputPerSecond = totalThroughputPerSecond
        self.inboxes = inboxes
    }
}

/// Why a reload did not happen; the running configuration and models stay.
public struct ReloadRefusal: Error, Sendable, Equatable {
    public enum Reason: Sendable, Equatable {
        /// The daemon was started without a configuration file.
        case noConfigurationFile
        /// A reload is under way, or the daemon is stopping.
        case busy
        /// The new configuration or its models failed to load.
        case failed
    }

    public var reason: Reason
    /// What happened, for the reply and the log.
    public var message: String
}
