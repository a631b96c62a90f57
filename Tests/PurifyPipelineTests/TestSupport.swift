import Foundation
import PurifyEngine
import PurifyImage
import PurifyPipeline
import PurifyTestSupport
import Testing

/// Paths and helpers the pipeline tests share.
enum TestSupport {
    /// The package's root folder, from this file's path.
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The random-weight, MNIST-shaped bundle (Fixtures/make_bundle.py).
    static let fixtureBundle = packageRoot.appendingPathComponent("Tests/PurifyPipelineTests/Fixtures/bundle").path

    /// The report schema, as committed.
    static let schema = packageRoot.appendingPathComponent("Sources/PurifyPipeline/Resources/report.schema.json").path

    /// The project's Python (`make venv`), with jsonschema.
    static let python = packageRoot.appendingPathComponent(".venv/bin/python").path

    /// A fresh, empty temporary folder.
    static func temporaryFolder(_ label: String = #function) throws -> String {
        let name = label.filter { $0.isLetter || $0.isNumber }
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("purify-tests-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.path
    }

    /// Loads the fixture bundle through a new engine.
    static func loadFixtureBundle() async throws -> ModelBundle {
        let engine = try InferenceEngine(threadCount: 2)
        return try await ModelBundle.load(from: fixtureBundle, engine: engine)
    }

    /// A copy of the fixture bundle in a fresh folder whose bundle.toml has `original`
    /// replaced (the model files, and so their checksums, unchanged).
    static func copyOfFixtureBundle(replacing original: String, with replacement: String,
                                    label: String = #function) throws -> String {
        let folder = try temporaryFolder(label) + "/bundle"
        try FileManager.default.copyItem(atPath: fixtureBundle, toPath: folder)
        let manifest = folder + "/bundle.toml"
        let text = try String(contentsOfFile: manifest, encoding: .utf8)
        try #require(text.contains(original), "bundle.toml has no '\(original)'")
        try text.replacingOccurrences(of: original, with: replacement).write(toFile: manifest, atomically: true, encoding: .utf8)
        return folder
    }

    /// A deterministic noisy image.
    static func noiseImage(width: Int, height: Int, layout: ChannelLayout, seed: UInt64) -> PixelImage {
        var state = seed &* 6364136223846793005 &+ 1442695040888963407
        let pixels = (0..<(width * height * layout.channelCount)).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        return PixelImage(width: width, height: height, layout: layout, pixels: pixels)
    }

    /// Writes `image` encoded as `format` to `folder/name` and returns the path.
    @discardableResult
    static func write(_ image: PixelImage, as format: ImageFormat, to folder: String, name: String) throws -> String {
        let path = folder + "/" + name
        try Data(ImageEncoder(options: EncodeOptions(jpegQuality: 90)).encode(image, as: format))
            .write(to: URL(fileURLWithPath: path))
        return path
    }

    /// A pipeline on the fixture bundle that commits into a fresh folder, and the path of one
    /// 28×28 gray noise PNG to submit to it (as often as a test likes).
    static func pipelineWithImage(_ configuration: PipelineConfiguration, seed: UInt64, name: String = "x.png",
                                  label: String = #function) async throws -> (pipeline: Pipeline, imagePath: String) {
        let bundle = try await loadFixtureBundle()
        let path = try write(noiseImage(width: 28, height: 28, layout: .gray, seed: seed),
                             as: .png, to: try temporaryFolder(label), name: name)
        let pipeline = try Pipeline(bundle: bundle, configuration: configuration,
                                    committer: DirectoryCommitter(directory: try temporaryFolder(label + "-out")))
        return (pipeline, path)
    }

    /// Runs a pipeline over `requests`, committing under `output`, and returns the results by name.
    static func purify(_ requests: [PurificationRequest], bundle: ModelBundle, output: String,
                       configuration: PipelineConfiguration = PipelineConfiguration()) async throws -> [String: PurificationResult] {
        let pipeline = try Pipeline(bundle: bundle, configuration: configuration,
                                    committer: DirectoryCommitter(directory: output))
        var results: [String: PurificationResult] = [:]
        try await pipeline.process(requests) { results[$0.request.name] = $0 }
        return results
    }

    /// Validates JSON files against the report schema with the project's Python jsonschema
    /// and returns one line per violation (empty when all are valid). Records an issue when
    /// the venv is missing.
    static func schemaViolations(in files: [String]) async throws -> [String] {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            Issue.record("no Python at \(python): run `make venv` (jsonschema validates the reports)")
            return ["python missing"]
        }
        let script = """
            import json, sys
            import jsonschema
            validator = jsonschema.Draft202012Validator(json.load(open(sys.argv[1])))
            for path in sys.argv[2:]:
                for error in validator.iter_errors(json.load(open(path))):
                    print(f"{path}: {'/'.join(map(str, error.absolute_path))}: {error.message}")
            """
        let (status, output) = try await run(python, ["-c", script, schema] + files)
        #expect(status == 0, "the validator itself failed: \(output)")
        return output.split(separator: "\n").map(String.init)
    }

    /// Runs a program to completion off the cooperative pool; returns its exit status and its
    /// standard output followed by its standard error.
    static func run(_ executable: String, _ arguments: [String]) async throws -> (status: Int32, output: String) {
        let run = try await ProgramRun.run(executable, arguments)
        return (run.status, run.standardOutput + run.standardError)
    }

    /// CRC-32 (IEEE), as PNG chunks carry it.
    static func crc32(_ bytes: some Collection<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    /// Every `*.json` file under `folder`.
    static func reports(under folder: String) -> [String] {
        let walker = FileManager.default.enumerator(atPath: folder)
        var found: [String] = []
        while let name = walker?.nextObject() as? String {
            if name.hasSuffix(".json") { found.append(folder + "/" + name) }
        }
        return found.sorted()
    }
}
