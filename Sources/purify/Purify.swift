import ArgumentParser
import Foundation
import PurifyEngine
import PurifyImage
import PurifyPipeline
import PurifyVersion

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `purify`: purifies image files and folders with a model bundle, writing the purified images
/// and one JSON report per input under an output folder.
@main
struct Purify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove adversarial perturbations from PNG and JPEG images with a purifier bundle.",
        discussion: """
            Folders are searched recursively for *.png, *.jpg and *.jpeg (dot-files skipped); files \
            named directly are taken whatever their extension. Each input gets OUT/NAME.json (its \
            report, written last) and, when purified, OUT/NAME (PNG output of a JPEG input is \
            OUT/STEM.png). A bad input gets a failure report and does not stop the others.

            Exit status (sysexits): 0 all purified; 64 usage; 65 an input was bad data; 66 an \
            input path does not exist; 70 the engine failed; 74 an I/O error; 78 the bundle is \
            missing or invalid.
            """,
        version: PurifyVersion.string)

    @Option(name: .long, help: ArgumentHelp("The model bundle folder (bundle.toml, *.onnx).", valueName: "dir"))
    var bundle: String

    @Argument(help: ArgumentHelp("Image files and folders.", valueName: "input"))
    var inputs: [String]

    @Option(name: .long, help: ArgumentHelp("The output folder (created if missing).", valueName: "dir"))
    var out: String

    @Option(name: .customLong("batch"), help: "The most images per engine run.")
    var batchSize = 16

    @Option(name: .customLong("max-delay-ms"), help: "How long an incomplete batch waits for more images, in ms.")
    var maxDelayMilliseconds = 5

    @Option(name: .long, help: "Engine threads (default: one per core).")
    var threads: Int?

    @Option(name: .customLong("io-threads"), help: "Threads for reading, decoding, encoding and writing.")
    var ioThreads = 2

    @Option(name: .long, help: "Output format: png or jpeg (default: each input's own).")
    var format: OutputFormat?

    @Option(name: .customLong("jpeg-quality"), help: "JPEG output quality, 1...100 (the report states it).")
    var jpegQuality = 95

    @Flag(name: .customLong("no-classifier"), help: "Do not run the bundle's classifier.")
    var noClassifier = false

    @Option(name: .customLong("top-k"), help: "Classes listed per image in reports.")
    var topK = 3

    @Option(name: .customLong("drop-threshold"),
            help: "Suspect an image also when purification cuts its top-1 probability by more than this.")
    var dropThreshold = 0.5

    @Option(name: .customLong("input-policy"),
            help: ArgumentHelp("What to do with an image outside the bundle's domain (the channels and sizes its purifier serves): reject it (error out_of_domain), resize it to the classifier's input size, or tile it at its own size.", valueName: "reject|resize|tile"))
    var inputPolicy = PolicyOption(PipelineConfiguration.Defaults.inputPolicy)

    @Option(name: .customLong("tile-side"), help: "The side of the tiles larger images are purified in, in pixels.")
    var tileSide = PipelineConfiguration.Defaults.tileSide

    @Option(name: .customLong("batch-pixels"), help: "The most pixels in one purifier batch.")
    var batchPixels = PipelineConfiguration.Defaults.maxBatchPixels

    @Option(name: .customLong("pixels-in-flight"), help: "The most pixels decoded and not yet written at once.")
    var pixelsInFlight = PipelineConfiguration.Defaults.maxPixelsInFlight

    @Flag(name: .long, help: "fsync every output and report before renaming it into place.")
    var fsync = false

    @Flag(name: .long, help: "Print the summary as JSON on standard output.")
    var json = false

    enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
        case png
        case jpeg
    }

    enum PolicyOption: String, ExpressibleByArgument, CaseIterable {
        case reject
        case resize
        case tile

        init(_ policy: InputPolicy) { self = Self(rawValue: policy.rawValue)! }
        var policy: InputPolicy { InputPolicy(rawValue: rawValue)! }
    }

    func validate() throws {
        guard batchSize >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard maxDelayMilliseconds >= 0 else { throw ValidationError("--max-delay-ms must not be negative") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        guard ioThreads >= 1 else { throw ValidationError("--io-threads must be at least 1") }
        guard (1...100).contains(jpegQuality) else { throw ValidationError("--jpeg-quality must be in 1...100") }
        guard topK >= 1 else { throw ValidationError("--top-k must be at least 1") }
        guard (0...1).contains(dropThreshold) else { throw ValidationError("--drop-threshold must be in 0...1") }
        guard tileSide >= 8 else { throw ValidationError("--tile-side must be at least 8") }
        guard batchPixels >= 1 else { throw ValidationError("--batch-pixels must be at least 1") }
        guard pixelsInFlight >= 1 else { throw ValidationError("--pixels-in-flight must be at least 1") }
    }

    func run() async throws {
        let requests: [PurificationRequest]
        do {
            requests = try await InputCollection.requests(for: inputs)
        } catch {
            throw Failure(.noInput, "\(error)")
        }
        guard !requests.isEmpty else { throw Failure(.noInput, "no images found in \(inputs.joined(separator: ", "))") }
        let committer = DirectoryCommitter(directory: out, synchronizes: fsync)
        try checkNamesAreDistinct(requests, committer: committer)

        let engine: InferenceEngine
        do {
            engine = try InferenceEngine(threadCount: threads)
        } catch {
            throw Failure(.software, "cannot start the engine: \(error)")
        }
        let models: ModelBundle
        do {
            models = try await ModelBundle.load(from: bundle, engine: engine)
        } catch {
            throw Failure(.config, "\(error)")
        }
        let settings = PipelineConfiguration(
            maxBatchSize: batchSize, maxBatchDelay: .milliseconds(maxDelayMilliseconds), ioThreadCount: ioThreads,
            outputFormat: format.map { $0 == .png ? ImageFormat.png : .jpeg },
            encodeOptions: EncodeOptions(jpegQuality: jpegQuality), classifies: !noClassifier, topK: topK,
            probabilityDropThreshold: dropThreshold, inputPolicy: inputPolicy.policy, tileSide: tileSide,
            maxBatchPixels: batchPixels, maxPixelsInFlight: pixelsInFlight)
        let pipeline: Pipeline
        do {
            pipeline = try Pipeline(bundle: models, configuration: settings, committer: committer)
        } catch {
            throw Failure(.config, "\(error)")
        }

        var summary = Summary(bundle: models.manifest, output: out, inputs: requests.count)
        var progress = ProgressBar(total: requests.count, enabled: isatty(STDERR_FILENO) == 1)
        let clock = ContinuousClock()
        let start = clock.now
        do {
            try await pipeline.process(requests) { result in
                summary.add(result)
                progress.update(done: summary.purified + summary.failed, failed: summary.failed, elapsed: start.duration(to: clock.now))
            }
        } catch {
            throw Failure(.software, "the pipeline stopped: \(error)")
        }
        progress.finish()
        summary.finish(elapsed: start.duration(to: clock.now))
        print(json ? summary.json() : summary.text())
        if let code = summary.exitCode { throw ExitCode(code) }
    }

    /// Two inputs must not share an output or report path, and no output may overwrite an
    /// input. Without `--format`, an input's output format is taken from its extension here (its
    /// bytes decide later).
    private func checkNamesAreDistinct(_ requests: [PurificationRequest], committer: DirectoryCommitter) throws {
        let inputs = Set(requests.map { URL(fileURLWithPath: $0.inputPath).standardizedFileURL.path })
        var owners: [String: String] = [:]
        for request in requests {
            let guessed: ImageFormat = ["jpg", "jpeg"].contains(URL(fileURLWithPath: request.name).pathExtension.lowercased()) ? .jpeg : .png
            let imageFormat = format.map { $0 == .png ? ImageFormat.png : .jpeg } ?? guessed
            for target in [committer.reportPath(for: request), committer.imagePath(for: request, format: imageFormat)] {
                if inputs.contains(URL(fileURLWithPath: target).standardizedFileURL.path) {
                    throw Failure(.usage, "\(target) is an input: choose an --out folder that does not overwrite inputs")
                }
                if let other = owners.updateValue(request.inputPath, forKey: target) {
                    throw Failure(.usage, "\(other) and \(request.inputPath) would both write \(target)")
                }
            }
        }
    }
}

/// A failure that ends the command with a sysexits status.
struct Failure: Error, CustomStringConvertible {
    /// sysexits.h statuses.
    enum Status: Int32 {
        case usage = 64, data = 65, noInput = 66, software = 70, ioError = 74, config = 78
    }

    let status: Status
    let description: String

    init(_ status: Status, _ description: String) {
        self.status = status
        self.description = description
    }
}

extension Purify {
    /// Prints `Failure`s as "purify: message" with their status; everything else as
    /// ArgumentParser does (usage errors: 64).
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch let failure as Failure {
            FileHandle.standardError.write(Data("purify: \(failure.description)\n".utf8))
            Foundation.exit(failure.status.rawValue)
        } catch {
            exit(withError: error)
        }
    }
}
