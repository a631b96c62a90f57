import PurifySystem
import Crypto
import Foundation
public import PurifyEngine
public import PurifyImage
import TOMLKit

/// The contents of a bundle's `bundle.toml`, with the keys `python -m purifyd_train export`
/// writes (training/purifyd_train/export.py, `bundle_toml`). Sizes are `[height, width]`.
public struct BundleManifest: Sendable, Hashable, Decodable {
    /// The `[input]` table: what the models take.
    public struct Input: Sendable, Hashable, Decodable {
        /// Color channels the models take: 1 (gray) or 3 (RGB).
        public var channels: Int
        /// The image size the models were trained at, `[height, width]`.
        public var trainedSize: [Int]
        /// The smallest image, `[height, width]`, the purifier serves as it is: with
        /// ``maxSize``, the bundle's domain. Images outside it meet the input policy.
        public var minSize: [Int]
        /// The largest image, `[height, width]`, the purifier serves as it is.
        public var maxSize: [Int]

        enum CodingKeys: String, CodingKey {
            case channels
            case trainedSize = "trained_size"
            case minSize = "min_size"
            case maxSize = "max_size"
        }
    }

    /// The `[purifier]` table.
    public struct Purifier: Sendable, Hashable, Decodable {
        /// The ONNX file, relative to the bundle's folder.
        public var file: String
        /// The file's SHA-256, lowercase hex.
        public var sha256: String
        /// Whether the purifier runs at any size that is a multiple of ``sizeMultiple``; if
        /// not, images are resized to the trained size and back.
        public var fullyConvolutional: Bool
        /// The multiple both sides must be padded to.
        public var sizeMultiple: Int
        /// How images are padded to the multiple; only `"reflect-centered"` is known.
        public var padding: String

        enum CodingKeys: String, CodingKey {
            case file, sha256, padding
            case fullyConvolutional = "fully_convolutional"
            case sizeMultiple = "size_multiple"
        }
    }

    /// The `[classifier]` table.
    public struct Classifier: Sendable, Hashable, Decodable {
        /// The ONNX file, relative to the bundle's folder.
        public var file: String
        /// The file's SHA-256, lowercase hex.
        public var sha256: String
        /// The network's architecture, for people.
        public var architecture: String?
        /// The fixed input size, `[height, width]`.
        public var inputSize: [Int]
        /// What the output holds: `"probabilities"` (softmax applied) or `"logits"`.
        public var output: String
        /// One label per output class, in order.
        public var labels: [String]
        /// How images are brought to ``inputSize``: `"bilinear"` (antialiased, Pillow's), the
        /// only method known and the default.
        public var resize: String?
        /// Per channel, subtracted from [0, 1] pixels before the classifier; zeros if absent.
        public var mean: [Double]?
        /// Per channel, what the pixels are divided by after ``mean``; ones if absent.
        public var std: [Double]?

        enum CodingKeys: String, CodingKey {
            case file, sha256, architecture, output, labels, resize, mean, std
            case inputSize = "input_size"
        }
    }

    /// The `[training]` table: what the purifier was trained against.
    public struct Training: Sendable, Hashable, Decodable {
        /// The attacks that made the training pairs.
        public var attacks: [String]
        /// Their ℓ∞ budget on [0, 1] pixels.
        public var epsilonLinf: Double

        enum CodingKeys: String, CodingKey {
            case attacks
            case epsilonLinf = "epsilon_linf"
        }
    }

    /// The bundle's name, e.g. `"mnist"`.
    public var name: String
    /// The bundle's version, e.g. `"1.0.0"`.
    public var version: String
    /// A line about the bundle.
    public var description: String?
    /// What the models take.
    public var input: Input
    /// The purifier model.
    public var purifier: Purifier
    /// Absent for a bundle without a classifier.
    public var classifier: Classifier?
    /// How the purifier was trained, for people and cards.
    public var training: Training?
}

/// A model bundle (`models/<name>/`) read, verified against its checksums and loaded.
public struct ModelBundle: Sendable {
    /// The bundle's folder.
    public let directory: String
    /// What `bundle.toml` says.
    public let manifest: BundleManifest
    /// The purifier, NCHW float32 in [0, 1] in and out.
    public let purifier: InferenceModel
    /// The classifier, if the bundle has one: NCHW float32 in [0, 1] in, one row per image out.
    public let classifier: InferenceModel?

    /// The color layout the models take.
    public var colorLayout: ChannelLayout { manifest.input.channels == 1 ? .gray : .rgb }

    /// Reads `directory/bundle.toml`, checks each model file's SHA-256 against it and loads the
    /// models through `engine`, checking their inputs and outputs against the manifest.
    ///
    /// - Throws: ``BundleError``, naming the file at fault.
    public static func load(from directory: String, engine: InferenceEngine) async throws(BundleError) -> ModelBundle {
        // The bytes hashed are the bytes loaded: a file swapped after the check is never run.
        let (manifest, purifierBytes, classifierBytes): (BundleManifest, Data, Data?)
        do {
            (manifest, purifierBytes, classifierBytes) = try await SystemThread.run(name: "purify-bundle") { () throws -> (BundleManifest, Data, Data?) in
                let manifest = try readManifest(in: directory)
                let purifier = try verifiedContents(of: manifest.purifier.file, expected: manifest.purifier.sha256, in: directory)
                let classifier = try manifest.classifier.map { description throws(BundleError) in
                    try verifiedContents(of: description.file, expected: description.sha256, in: directory)
                }
                return (manifest, purifier, classifier)
            }
        } catch let error as BundleError {
            throw error
        } catch {
            throw BundleError(.unreadable, "\(directory): \(error)")
        }
        let purifier = try await loadModel(purifierBytes, file: manifest.purifier.file, in: directory, engine: engine)
        try checkPurifier(purifier, manifest: manifest)
        var classifier: InferenceModel?
        if let description = manifest.classifier, let classifierBytes {
            let model = try await loadModel(classifierBytes, file: description.file, in: directory, engine: engine)
            try checkClassifier(model, description: description, channels: manifest.input.channels)
            classifier = model
        }
        return ModelBundle(directory: directory, manifest: manifest, purifier: purifier, classifier: classifier)
    }

    private static func path(_ file: String, in directory: String) -> String {
        URL(fileURLWithPath: directory).appendingPathComponent(file).path
    }

    private static func readManifest(in directory: String) throws(BundleError) -> BundleManifest {
        let file = path("bundle.toml", in: directory)
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw BundleError(.unreadable, "cannot read \(file): \(error.localizedDescription)")
        }
        if let problem = TOMLText.forbiddenCharacter(in: text) {
            throw BundleError(.invalidManifest, "\(file): \(problem)")
        }
        let manifest: BundleManifest
        do {
            manifest = try TOMLDecoder().decode(BundleManifest.self, from: text)
        } catch let error as TOMLParseError {
            throw BundleError(.invalidManifest, "\(file): \(error.description) at line \(error.source.begin.line)")
        } catch let error as DecodingError {
            throw BundleError(.invalidManifest, "\(file): \(describe(error))")
        } catch {
            throw BundleError(.invalidManifest, "\(file): \(error)")
        }
        try validate(manifest, file: file)
        return manifest
    }

    private static func validate(_ manifest: BundleManifest, file: String) throws(BundleError) {
        func invalid(_ message: String) -> BundleError { BundleError(.invalidManifest, "\(file): \(message)") }
        guard [1, 3].contains(manifest.input.channels) else {
            throw invalid("input.channels is \(manifest.input.channels); 1 or 3 are supported")
        }
        guard manifest.input.trainedSize.count == 2, manifest.input.trainedSize.allSatisfy({ $0 > 0 }) else {
            throw invalid("input.trained_size must be [height, width], not \(manifest.input.trainedSize)")
        }
        for (key, size) in [("min_size", manifest.input.minSize), ("max_size", manifest.input.maxSize)] {
            guard size.count == 2, size.allSatisfy({ $0 > 0 }) else {
                throw invalid("input.\(key) must be [height, width], not \(size)")
            }
        }
        guard manifest.input.minSize[0] <= manifest.input.maxSize[0], manifest.input.minSize[1] <= manifest.input.maxSize[1] else {
            throw invalid("input.min_size \(manifest.input.minSize) exceeds input.max_size \(manifest.input.maxSize)")
        }
        guard manifest.purifier.sizeMultiple >= 1 else {
            throw invalid("purifier.size_multiple must be positive, not \(manifest.purifier.sizeMultiple)")
        }
        guard manifest.purifier.padding == "reflect-centered" else {
            throw invalid("purifier.padding '\(manifest.purifier.padding)' is unknown (only \"reflect-centered\")")
        }
        if let classifier = manifest.classifier {
            guard classifier.inputSize.count == 2, classifier.inputSize.allSatisfy({ $0 > 0 }) else {
                throw invalid("classifier.input_size must be [height, width], not \(classifier.inputSize)")
            }
            guard ["probabilities", "logits"].contains(classifier.output) else {
                throw invalid("classifier.output '\(classifier.output)' is unknown (\"probabilities\" or \"logits\")")
            }
            guard !classifier.labels.isEmpty else { throw invalid("classifier.labels is empty") }
            if let resize = classifier.resize, resize != "bilinear" {
                throw invalid("classifier.resize '\(resize)' is unknown (only \"bilinear\")")
            }
            let channels = manifest.input.channels
            if let mean = classifier.mean {
                guard mean.count == channels, mean.allSatisfy(\.isFinite) else {
                    throw invalid("classifier.mean must hold \(channels) finite numbers, one per channel, not \(mean)")
                }
            }
            if let std = classifier.std {
                guard std.count == channels, std.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                    throw invalid("classifier.std must hold \(channels) positive numbers, one per channel, not \(std)")
                }
            }
        }
    }

    /// The file's bytes, once their SHA-256 matches `expected`.
    private static func verifiedContents(of file: String, expected: String, in directory: String) throws(BundleError) -> Data {
        let location = path(file, in: directory)
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: location), options: .mappedIfSafe)
        } catch {
            throw BundleError(.unreadable, "cannot read \(location): \(error.localizedDescription)")
        }
        let actual = SHA256.hash(data: data).hexString
        guard actual == expected.lowercased() else {
            throw BundleError(.checksumMismatch, "\(location): SHA-256 is \(actual), bundle.toml says \(expected)")
        }
        return data
    }

    private static func loadModel(_ bytes: Data, file: String, in directory: String, engine: InferenceEngine) async throws(BundleError) -> InferenceModel {
        let location = path(file, in: directory)
        do {
            return try await engine.loadModel(serialized: bytes)
        } catch {
            throw BundleError(.unloadableModel, "\(location): \(error)")
        }
    }

    private static func checkPurifier(_ model: InferenceModel, manifest: BundleManifest) throws(BundleError) {
        let file = manifest.purifier.file
        guard model.inputs.count == 1, model.outputs.count == 1 else {
            throw BundleError(.incompatibleModel, "\(file) has \(model.inputs.count) inputs and \(model.outputs.count) outputs; a purifier has one of each")
        }
        let shape = model.inputs[0].shape
        guard shape.count == 4, shape[1].map({ $0 == manifest.input.channels }) ?? true else {
            throw BundleError(.incompatibleModel, "\(file) takes \(describe(shape)), not N×\(manifest.input.channels)×H×W")
        }
        if !manifest.purifier.fullyConvolutional {
            let size = manifest.input.trainedSize
            guard shape[2].map({ $0 == size[0] }) ?? true, shape[3].map({ $0 == size[1] }) ?? true else {
                throw BundleError(.incompatibleModel, "\(file) takes \(describe(shape)), bundle.toml says \(size[0])×\(size[1])")
            }
        } else {
            guard shape[2] == nil, shape[3] == nil else {
                throw BundleError(.incompatibleModel, "\(file) has fixed sides \(describe(shape)) but bundle.toml says fully_convolutional")
            }
        }
    }

    private static func checkClassifier(_ model: InferenceModel, description: BundleManifest.Classifier, channels: Int) throws(BundleError) {
        let file = description.file
        guard model.inputs.count == 1, model.outputs.count == 1 else {
            throw BundleError(.incompatibleModel, "\(file) has \(model.inputs.count) inputs and \(model.outputs.count) outputs; a classifier has one of each")
        }
        let input = model.inputs[0].shape
        let size = description.inputSize
        guard input.count == 4, input[1].map({ $0 == channels }) ?? true,
              input[2].map({ $0 == size[0] }) ?? true, input[3].map({ $0 == size[1] }) ?? true else {
            throw BundleError(.incompatibleModel, "\(file) takes \(describe(input)), bundle.toml says N×\(channels)×\(size[0])×\(size[1])")
        }
        let output = model.outputs[0].shape
        guard output.count == 2, output[1].map({ $0 == description.labels.count }) ?? true else {
            throw BundleError(.incompatibleModel, "\(file) outputs \(describe(output)), bundle.toml has \(description.labels.count) labels")
        }
    }

    private static func describe(_ shape: [Int?]) -> String {
        shape.map { $0.map(String.init) ?? "?" }.joined(separator: "×")
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map(\.stringValue).joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            let parent = path(context)
            return "missing key '\(parent.isEmpty ? key.stringValue : parent + "." + key.stringValue)'"
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return "'\(path(context))': \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

/// Why a model bundle could not be loaded. The message names the file at fault.
public struct BundleError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure a ``BundleError`` is; compare with the static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let description: String

        private init(_ description: String) {
            self.description = description
        }

        /// `bundle.toml` or a model file could not be read.
        public static let unreadable = Code("unreadable")
        /// `bundle.toml` is not valid TOML, lacks a key or holds a value out of range.
        public static let invalidManifest = Code("invalid manifest")
        /// A model file's SHA-256 differs from the one in `bundle.toml`.
        public static let checksumMismatch = Code("checksum mismatch")
        /// The engine could not load a model file.
        public static let unloadableModel = Code("unloadable model")
        /// A model's inputs or outputs do not match what `bundle.toml` says.
        public static let incompatibleModel = Code("incompatible model")
    }

    /// The kind of failure.
    public let code: Code
    /// What failed, naming the file.
    public let message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

extension Sequence<UInt8> {
    /// Lowercase hexadecimal digits, two per byte.
    var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        for byte in self {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
