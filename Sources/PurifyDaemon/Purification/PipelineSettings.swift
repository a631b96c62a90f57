public import PurifyImage
public import PurifyPipeline

extension InboxConfiguration {
    /// The pipeline settings of this inbox: its batching, output format, JPEG quality,
    /// classifier switch, decode limits, input policy and memory bounds, a queue as deep as its `queue_capacity` (so the
    /// spool's in-flight bound, which `status` reports, is the one that stops the claiming), and
    /// symbolic links refused.
    public var pipelineConfiguration: PipelineConfiguration {
        PipelineConfiguration(
            maxBatchSize: batching.maxBatch,
            maxBatchDelay: batching.maxDelay,
            queueCapacity: queueCapacity,
            outputFormat: outputFormat.imageFormat,
            encodeOptions: EncodeOptions(jpegQuality: jpegQuality),
            classifies: classifierEnabled,
            decodeLimits: DecodeLimits(maxBytes: limits.maxBytes, maxPixels: limits.maxPixels, maxSide: limits.maxSide),
            followsSymlinks: false,
            inputPolicy: inputPolicy,
            tileSide: memory.tileSide,
            maxBatchPixels: memory.batchPixels,
            maxPixelsInFlight: memory.pixelsInFlight
        )
    }
}

extension OutputFormat {
    /// The encoder's format; `nil` for ``same`` (each input keeps its own).
    public var imageFormat: ImageFormat? {
        switch self {
        case .same: nil
        case .png: .png
        case .jpeg: .jpeg
        }
    }
}
