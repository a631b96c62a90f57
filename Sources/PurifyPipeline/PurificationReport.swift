public import Foundation

/// The JSON report written for every input, success or failure; its JSON Schema is
/// `Sources/PurifyPipeline/Resources/report.schema.json` (``PurificationReport/schemaURL``).
/// Keys are snake_case in JSON (``encoded()``); durations are milliseconds.
public struct PurificationReport: Sendable, Hashable, Codable {
    /// The version of the report format this module writes.
    public static let currentSchemaVersion = 1

    /// Whether the input was purified.
    public enum Status: String, Sendable, Hashable, Codable {
        case purified
        case failed
    }

    /// The input file.
    public struct Input: Sendable, Hashable, Codable {
        /// The request's name for it (its path relative to the folder it came from).
        public var name: String
        /// Where it was read from.
        public var path: String
        /// Its size; absent when it could not be read.
        public var bytes: Int?
        /// Its SHA-256, lowercase hex; absent when it could not be read.
        public var sha256: String?
        /// `"png"` or `"jpeg"` from its magic bytes; absent when unrecognised.
        public var format: String?
        /// Pixel width after EXIF orientation; absent when the header could not be read.
        public var width: Int?
        /// Pixel height after EXIF orientation.
        public var height: Int?
        /// The decoded channel layout: `"gray"`, `"gray_alpha"`, `"rgb"` or `"rgba"`.
        public var channels: String?
    }

    /// The model bundle that processed the input.
    public struct Bundle: Sendable, Hashable, Codable {
        /// The bundle's name.
        public var name: String
        /// The bundle's version.
        public var version: String
        /// The purifier file's SHA-256, lowercase hex.
        public var purifierSha256: String
        /// Absent when the bundle has no classifier.
        public var classifierSha256: String?
    }

    /// The purified image written.
    public struct Output: Sendable, Hashable, Codable {
        /// Where the committer put it.
        public var path: String
        /// `"png"` or `"jpeg"`.
        public var format: String
        public var bytes: Int
        /// The purified image's width: the input's, or the classifier's input width under the
        /// resize policy. Always written; optional for reports of earlier versions.
        public var width: Int?
        /// The purified image's height.
        public var height: Int?
        /// The JPEG quality (1...100) for a JPEG output; JPEG re-encoding itself alters fine
        /// perturbations. Absent for PNG, which is lossless.
        public var jpegQuality: Int?
    }

    /// The batch the image was purified in.
    public struct Batch: Sendable, Hashable, Codable {
        /// Images in the batch.
        public var size: Int
        /// The purifier's input width (the image reflect-padded to the bundle's multiple, or
        /// resized to the trained size for a fixed-size purifier).
        public var modelWidth: Int
        /// The purifier's input height.
        public var modelHeight: Int
    }

    /// How the image stood against the bundle's domain (the channels and sizes its purifier
    /// serves) and what the input policy did with it.
    public struct Domain: Sendable, Hashable, Codable {
        /// The input policy: `"reject"`, `"resize"` or `"tile"`.
        public var policy: String
        /// Whether the image lies inside the domain.
        public var inDomain: Bool
        /// What was done: `"as_is"` (inside the domain), `"resize"` (purified at the
        /// classifier's input size), `"tile"` (purified at its own size) or `"rejected"`.
        public var applied: String
        /// Whether each color channel went through a gray purifier on its own, so that a color
        /// image keeps its colors.
        public var perChannel: Bool
        /// The purifier runs the image took (tiles over every plane); absent when rejected.
        public var tiles: Int?
        /// The size purified; absent when rejected.
        public var width: Int?
        public var height: Int?
        /// Why the image lies outside the domain; absent inside it.
        public var outsideBecause: String?
    }

    /// Milliseconds per stage. `purify` and `classify` are the whole batch's time on the engine,
    /// waiting for its thread included (shared by the images in it; `purify` also covers
    /// assembling and splitting the batch); `batch_wait` is the time between decoding and the batch
    /// leaving for the engine; `total` runs from the first read to the image being committed.
    public struct Timings: Sendable, Hashable, Codable {
        public var read: Double?
        public var decode: Double?
        public var batchWait: Double?
        public var purify: Double?
        public var classify: Double?
        public var encode: Double?
        public var write: Double?
        public var total: Double

        public init(total: Double = 0) {
            self.total = total
        }
    }

    /// How much purification changed the image, over every color sample (alpha excluded) of
    /// the input and of the purified 8-bit image, both scaled to [0, 1].
    public struct Change: Sendable, Hashable, Codable {
        /// The Euclidean norm of the difference.
        public var l2: Double
        /// The largest absolute difference.
        public var linf: Double
        /// 10·log10(1 / mean squared difference); `nil` (JSON null) when the images are equal.
        public var psnrDb: Double?
        /// Color samples compared (width × height × color channels).
        public var samples: Int

        enum CodingKeys: String, CodingKey {
            case l2, linf, psnrDb, samples
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(l2, forKey: .l2)
            try container.encode(linf, forKey: .linf)
            try container.encode(psnrDb, forKey: .psnrDb)  // null, not omitted, when equal
            try container.encode(samples, forKey: .samples)
        }
    }

    /// One class and its probability.
    public struct ClassScore: Sendable, Hashable, Codable {
        public var label: String
        /// The class's index in the classifier's output.
        public var index: Int
        public var probability: Double
    }

    /// The classifier's view of the input and of the purified image.
    public struct Classification: Sendable, Hashable, Codable {
        /// The top-k classes of the input, most probable first.
        public var input: [ClassScore]
        /// The top-k classes of the purified image, most probable first.
        public var purified: [ClassScore]
        /// Whether both have the same top-1 class.
        public var agree: Bool
        /// The probability of the input's top-1 class on the input minus on the purified image.
        public var top1ProbabilityDrop: Double
        /// The rule's threshold on ``top1ProbabilityDrop``.
        public var probabilityDropThreshold: Double
        /// `!agree || top1ProbabilityDrop > probabilityDropThreshold`: purification changed the
        /// classifier's mind, or shook it, which is what removing an adversarial perturbation
        /// does and what a clean image rarely shows.
        public var suspectedAdversarial: Bool
    }

    /// Why an input failed.
    public struct Failure: Sendable, Hashable, Codable {
        /// A stable code: an image error's name (`"truncated"`, `"corrupt"`, `"unsupported"`,
        /// `"too_large"`, `"empty"`, `"io"`, `"out_of_memory"`, `"invalid_argument"`,
        /// `"encoding_failed"`), ``outOfDomain``, or `"inference"` for a failure of the engine.
        public var code: String

        /// The code of an image outside the bundle's domain under the reject policy.
        public static let outOfDomain = "out_of_domain"
        /// The stage that failed.
        public var stage: Stage
        public var message: String
    }

    /// The pipeline's stages, as failures name them.
    public enum Stage: String, Sendable, Hashable, Codable {
        case read, decode, purify, classify, encode, commit
    }

    /// ``currentSchemaVersion`` when written by this module.
    public var schemaVersion: Int
    /// Whether the input was purified or failed.
    public var status: Status
    /// The input file, as far as it could be read.
    public var input: Input
    /// The bundle that processed it.
    public var bundle: Bundle
    /// Present when purified.
    public var output: Output?
    /// Present when the image reached the purifier: its (last) batch.
    public var batch: Batch?
    /// Present when the image was decoded and planned, or rejected as out of its domain.
    public var domain: Domain?
    /// Milliseconds per stage reached.
    public var timingsMs: Timings
    /// Present when purified.
    public var change: Change?
    /// Present when purified and the pipeline classifies.
    public var classification: Classification?
    /// Present when failed.
    public var error: Failure?
}

extension PurificationReport {
    /// The report as pretty-printed JSON with sorted snake_case keys.
    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(self)) + [UInt8(ascii: "\n")]
    }

    /// Reads a report written by ``encoded()``.
    public init(json: [UInt8]) throws {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        self = try decoder.decode(PurificationReport.self, from: Data(json))
    }

    /// The report's JSON Schema (draft 2020-12), a resource of this module.
    public static var schemaURL: URL? {
        Foundation.Bundle.module.url(forResource: "report.schema", withExtension: "json")
    }
}
