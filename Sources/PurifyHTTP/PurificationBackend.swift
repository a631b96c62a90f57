public import PurifyPipeline

/// What the HTTP API purifies with: the daemon's running pipelines. The API itself holds no
/// state between requests, so any number of daemons can serve one load balancer.
public protocol PurificationBackend: Sendable {
    /// The bundles a request may name, the default (the first inbox's) first.
    func servedBundles() -> [ServedBundle]

    /// Whether requests are taken: false before the pipelines run and once shutdown began.
    var isAcceptingRequests: Bool { get }

    /// Purifies `image` with the bundle named `bundle`, through the same pipeline (and the same
    /// dynamic batcher) as the inbox that serves that bundle, and returns its report and, when
    /// purified, the encoded image. Cancelling the calling task stops the wait; the image still
    /// goes through the pipeline and its result is dropped.
    ///
    /// - Throws: ``APIRefusal`` when the request never entered a pipeline.
    func purify(_ image: [UInt8], bundle: String, name: String, requestID: String) async throws(APIRefusal) -> PurifiedImage
}

/// A model bundle the API serves, as `GET /v1/bundles` lists it.
public struct ServedBundle: Sendable, Hashable, Codable {
    /// The name requests choose it by (`?bundle=`).
    public var name: String
    public var version: String
    public var purifierSha256: String
    /// Whether reports carry the classifier's verdict on the input and the purified image.
    public var classifies: Bool
    /// What happens to an image outside the bundle's domain: `reject`, `resize` or `tile`.
    public var inputPolicy: String
    /// The largest input accepted, in bytes.
    public var maxBytes: Int
    /// The most pixels accepted.
    public var maxPixels: Int
    /// The inbox whose pipeline (and batcher) requests for this bundle share.
    public var inbox: String

    public init(name: String, version: String, purifierSha256: String, classifies: Bool, inputPolicy: String,
                maxBytes: Int, maxPixels: Int, inbox: String) {
        self.name = name
        self.version = version
        self.purifierSha256 = purifierSha256
        self.classifies = classifies
        self.inputPolicy = inputPolicy
        self.maxBytes = maxBytes
        self.maxPixels = maxPixels
        self.inbox = inbox
    }
}

/// What the pipeline made of one request: its report (status `purified` or `failed`) and the
/// purified image, encoded as the report's `output.format` says.
public struct PurifiedImage: Sendable {
    public var report: PurificationReport
    /// The encoded image; nil when the report's status is `failed`.
    public var image: [UInt8]?

    public init(report: PurificationReport, image: [UInt8]?) {
        self.report = report
        self.image = image
    }
}

/// Why a request was not purified before it reached a pipeline.
public struct APIRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Reason: String, Sendable {
        /// No running pipeline serves the bundle named.
        case unknownBundle = "unknown_bundle"
        /// The daemon is starting or shutting down.
        case unavailable
    }

    public var reason: Reason
    public var message: String

    public init(_ reason: Reason, _ message: String) {
        self.reason = reason
        self.message = message
    }

    public var description: String { message }
}
