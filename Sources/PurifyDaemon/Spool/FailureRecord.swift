internal import Foundation
public import PurifyPipeline

/// What `failed/<name>.error.json` says about an input the daemon gave up on.
struct FailureRecord: Encodable {
    /// An error's code and message.
    struct Error: Encodable, Sendable, Equatable {
        var code: String
        var message: String
    }

    var inbox: String
    /// The input's name as it arrived.
    var input: String
    /// Its name in `failed/` (shortened or numbered when the original did not fit or was taken).
    var storedAs: String
    var claimID: String
    /// ISO 8601.
    var failedAt: String
    var error: Error
    var details: FailureDetails

    /// One line of JSON with sorted keys in snake case, and a newline.
    func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(self)) + [UInt8(ascii: "\n")]
    }
}

/// What a failure report says beyond the error: the pipeline stage that failed and the
/// pipeline's own report, and, for a claimed file that vanished, the error the pipeline had.
public struct FailureDetails: Encodable, Sendable {
    public var stage: String?
    public var report: PurificationReport?
    var pipelineError: FailureRecord.Error?

    public init(stage: String? = nil, report: PurificationReport? = nil) {
        self.stage = stage
        self.report = report
    }
}
