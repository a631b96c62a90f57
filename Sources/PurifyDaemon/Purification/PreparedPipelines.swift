public import PurifyEngine
public import PurifyPipeline
internal import PurifyHTTP

/// One inbox's pipeline, built and not yet running: the model bundle it loaded, the pipeline over
/// it, and the committer that ends every file through the inbox's spool.
public struct InboxPipeline: Sendable {
    /// The inbox's configuration as the pipeline was built from it.
    public let inbox: InboxConfiguration
    /// The inbox's models.
    public let bundle: ModelBundle
    /// The pipeline; ``PurificationService`` runs it.
    public let pipeline: Pipeline
    /// Ends its files through the inbox's spool.
    public let committer: SpoolCommitter
}

/// The pipelines of every inbox of a configuration, their bundles loaded (each folder once) and
/// checked: what `purifyd --check-config` validates, what the daemon starts with, and what a
/// reload swaps in.
public struct PreparedPipelines: Sendable {
    /// The configuration they were built from.
    public let configuration: DaemonConfiguration
    /// One per inbox, in the configuration's order.
    public let inboxes: [InboxPipeline]
    /// Where the pipelines commit HTTP API requests: back to their callers.
    public let responses: APIResponses

    /// Loads the bundle of every inbox of `configuration` through `engine` and builds each
    /// inbox's pipeline; an inbox whose name is in `committers` reuses that committer (a reload
    /// keeps the ones files in flight are registered with), and the pipelines answer API
    /// requests through `responses` (a new one when nil).
    ///
    /// - Throws: ``ConfigurationError`` naming the inbox key at fault (`inbox[0].bundle` for a
    ///   bundle that does not load, `inbox[0].classifier` for a classifier the bundle lacks).
    public static func prepare(
        _ configuration: DaemonConfiguration,
        engine: InferenceEngine,
        committers: [String: SpoolCommitter] = [:],
        responses: APIResponses? = nil
    ) async throws(ConfigurationError) -> PreparedPipelines {
        let responses = responses ?? APIResponses()
        var bundles: [String: ModelBundle] = [:]
        var inboxes: [InboxPipeline] = []
        for (index, inbox) in configuration.inboxes.enumerated() {
            let bundle: ModelBundle
            if let loaded = bundles[inbox.bundlePath] {
                bundle = loaded
            } else {
                do {
                    bundle = try await ModelBundle.load(from: inbox.bundlePath, engine: engine)
                } catch {
                    throw ConfigurationError(keyPath: "inbox[\(index)].bundle", message: error.description)
                }
                bundles[inbox.bundlePath] = bundle
            }
            if inbox.classifierEnabled && bundle.classifier == nil {
                throw ConfigurationError(keyPath: "inbox[\(index)].classifier",
                                         message: "bundle \(bundle.manifest.name) has no classifier; set classifier = false")
            }
            let committer = committers[inbox.name] ?? SpoolCommitter()
            let pipeline: Pipeline
            do {
                pipeline = try Pipeline(bundle: bundle, configuration: inbox.pipelineConfiguration,
                                        committer: RequestRouter(spool: committer, responses: responses))
            } catch {
                throw ConfigurationError(keyPath: "inbox[\(index)]", message: "\(error)")
            }
            inboxes.append(InboxPipeline(inbox: inbox, bundle: bundle, pipeline: pipeline, committer: committer))
        }
        return PreparedPipelines(configuration: configuration, inboxes: inboxes, responses: responses)
    }

    /// What `--check-config` prints: the daemon's settings, then each inbox with its folders,
    /// bundle, output, batching, limits and disposal.
    public var summary: String {
        let daemon = configuration
        func milliseconds(_ duration: Duration) -> Int64 {
            duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        }
        func ids(_ list: [UInt32]) -> String { list.isEmpty ? "-" : list.map(String.init).joined(separator: ",") }
        var lines = [
            "control socket   \(daemon.controlSocketPath) (uids \(ids(daemon.allowedUIDs)), gids \(ids(daemon.allowedGIDs)))",
            "state directory  \(daemon.stateDirectory)",
            "drain deadline   \(daemon.drainDeadline.components.seconds) s",
            "log level        \(daemon.logLevel)",
            "http             \(daemon.http.map { "\($0.listener), bodies up to \($0.maxBodyBytes) bytes, \($0.maxInFlight) in flight, \($0.tokens.isEmpty ? "no tokens" : "\($0.tokens.count) bearer tokens")" } ?? "off")",
        ]
        for entry in inboxes {
            let inbox = entry.inbox
            let manifest = entry.bundle.manifest
            let format = inbox.outputFormat == .same ? "the input's format" : inbox.outputFormat.rawValue
            let afterSuccess = switch inbox.afterSuccess {
            case .delete: "delete the original"
            case .archive(let directory): "archive the original in \(directory)"
            }
            lines += [
                "inbox \(inbox.name)",
                "  path           \(inbox.path)",
                "  outbox         \(inbox.outbox)",
                "  spool          \(inbox.spoolDirectory)",
                "  failed         \(inbox.failedDirectory)",
                "  bundle         \(manifest.name) \(manifest.version) (\(entry.bundle.directory)), purifier sha256 \(manifest.purifier.sha256)",
                "  classifier     \(inbox.classifierEnabled ? "on" : "off")",
                "  output         \(format), JPEG quality \(inbox.jpegQuality)",
                "  queue          \(inbox.queueCapacity) files in flight, batches of \(inbox.batching.maxBatch) within \(milliseconds(inbox.batching.maxDelay)) ms",
                "  limits         \(inbox.limits.maxBytes) bytes, \(inbox.limits.maxPixels) pixels, \(inbox.limits.maxSide) a side",
                "  after success  \(afterSuccess)",
            ]
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
