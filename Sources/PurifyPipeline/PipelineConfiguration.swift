public import PurifySystem
public import PurifyImage

/// How a ``Pipeline`` batches, encodes and classifies.
public struct PipelineConfiguration: Sendable, Hashable {
    /// The most images purified in one engine run.
    public var maxBatchSize: Int
    /// How long the first image of an incomplete batch waits for others of its shape.
    public var maxBatchDelay: Duration
    /// The most items held between two stages (and waiting in the batcher): the bound that
    /// makes ``Pipeline/submit(_:)`` suspend when the pipeline is full.
    public var queueCapacity: Int
    /// Threads for reading, decoding and converting, and as many again for encoding and
    /// writing results.
    public var ioThreadCount: Int
    /// The output format; `nil` keeps each input's format.
    public var outputFormat: ImageFormat?
    /// Encoder settings, JPEG quality among them (reports state it).
    public var encodeOptions: EncodeOptions
    /// Whether the bundle's classifier runs on the input and the purified image.
    public var classifies: Bool
    /// Classes listed per image in reports.
    public var topK: Int
    /// The drop in the input's top-1 probability beyond which an image is suspected
    /// adversarial even when the top-1 class is unchanged (see
    /// ``PurificationReport/Classification/suspectedAdversarial``).
    public var probabilityDropThreshold: Double
    /// Bounds checked before decoding.
    public var decodeLimits: DecodeLimits
    /// Whether inputs may be symbolic links (a spool refuses them: `false`).
    public var followsSymlinks: Bool
    /// What happens to an image outside the bundle's domain.
    public var inputPolicy: InputPolicy
    /// The side of the square tiles a larger image is purified in (rounded down to the
    /// bundle's size multiple); neighbours overlap by an eighth of it.
    public var tileSide: Int
    /// The most pixels in one purifier batch: a batch of large tiles or images holds fewer
    /// than ``maxBatchSize``, which bounds the engine's activation memory.
    public var maxBatchPixels: Int
    /// The most pixels decoded and not yet committed at once: an image waits before decoding
    /// until its pixels fit, so that memory follows pixels, not file counts. An image larger
    /// than this runs alone.
    public var maxPixelsInFlight: Int

    /// The defaults of ``init(maxBatchSize:maxBatchDelay:queueCapacity:ioThreadCount:outputFormat:encodeOptions:classifies:topK:probabilityDropThreshold:decodeLimits:followsSymlinks:inputPolicy:tileSide:maxBatchPixels:maxPixelsInFlight:)``.
    public enum Defaults {
        public static let inputPolicy = InputPolicy.reject
        public static let tileSide = 256
        public static let maxBatchPixels = 1 << 19
        public static let maxPixelsInFlight = 1 << 25
    }

    /// Defaults: batches of up to 16 after at most 5 ms, 64 items per queue, 2 I/O threads,
    /// the input's format, JPEG quality 95, classification on with top-3 and a 0.5 drop
    /// threshold, default decode limits, symbolic links followed, images outside the domain
    /// rejected, tiles of 256, 2^19 pixels per batch and 2^25 in flight.
    public init(maxBatchSize: Int = 16, maxBatchDelay: Duration = .milliseconds(5), queueCapacity: Int = 64,
                ioThreadCount: Int = 2, outputFormat: ImageFormat? = nil,
                encodeOptions: EncodeOptions = EncodeOptions(), classifies: Bool = true, topK: Int = 3,
                probabilityDropThreshold: Double = 0.5, decodeLimits: DecodeLimits = .default,
                followsSymlinks: Bool = true, inputPolicy: InputPolicy = Defaults.inputPolicy,
                tileSide: Int = Defaults.tileSide, maxBatchPixels: Int = Defaults.maxBatchPixels,
                maxPixelsInFlight: Int = Defaults.maxPixelsInFlight) {
        self.maxBatchSize = maxBatchSize
        self.maxBatchDelay = maxBatchDelay
        self.queueCapacity = queueCapacity
        self.ioThreadCount = ioThreadCount
        self.outputFormat = outputFormat
        self.encodeOptions = encodeOptions
        self.classifies = classifies
        self.topK = topK
        self.probabilityDropThreshold = probabilityDropThreshold
        self.decodeLimits = decodeLimits
        self.followsSymlinks = followsSymlinks
        self.inputPolicy = inputPolicy
        self.tileSide = tileSide
        self.maxBatchPixels = maxBatchPixels
        self.maxPixelsInFlight = maxPixelsInFlight
    }
}

/// One input for the pipeline.
public struct PurificationRequest: Sendable, Hashable {
    /// The file to read; for an input given in memory (``contents``), what identifies it in
    /// its report and to the committer.
    public var inputPath: String
    /// The name outputs and reports are filed under: the input's path relative to the folder
    /// it was found in (`"digits/7.png"`), or its file name.
    public var name: String
    /// The input's bytes when it arrived in memory (a network request) rather than as a file;
    /// the pipeline drops them once it has read the header, and results carry `nil`.
    public var contents: [UInt8]?

    public init(inputPath: String, name: String, contents: [UInt8]? = nil) {
        self.inputPath = inputPath
        self.name = name
        self.contents = contents
    }
}

/// What became of one request, delivered once its report is committed (or could not be).
public struct PurificationResult: Sendable, Hashable {
    /// The request, as submitted.
    public var request: PurificationRequest
    /// The report, as committed.
    public var report: PurificationReport
    /// Where the report was written; `nil` when even the report could not be committed, in
    /// which case `report.error` says why.
    public var reportPath: String?

    /// Whether the input was purified and committed.
    public var succeeded: Bool { report.status == .purified && reportPath != nil }
}

/// Errors of the pipeline itself (an input's failure goes into its report instead).
public enum PipelineError: Error, Hashable, Sendable {
    /// The pipeline takes no more input: ``Pipeline/finishInput()`` was called or it stopped.
    case closed
    /// ``Pipeline/run()`` was called a second time.
    case alreadyRunning
    /// A ``PipelineConfiguration`` value is out of range, or does not fit the bundle.
    case invalidConfiguration(String)
    /// The pipeline's I/O threads could not be started.
    case threadsUnavailable(SystemError)
}
