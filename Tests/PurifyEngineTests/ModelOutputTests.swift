import Foundation
import PurifyEngine
import Testing

/// One case from Fixtures/manifest.json: an input and the output ONNX Runtime gave for it.
struct FixtureCase: Decodable {
    let model: String
    let input: String
    let inputShape: [Int]
    let output: String
    let outputShape: [Int]
}

/// A directory of models, inputs and ONNX Runtime outputs described by a manifest.json.
struct FixtureSet {
    let directory: URL

    func path(_ name: String) -> String {
        directory.appendingPathComponent(name).standardizedFileURL.path
    }

    func cases(for model: String? = nil) throws -> [FixtureCase] {
        struct Manifest: Decodable { let cases: [FixtureCase] }
        let data = try Data(contentsOf: directory.appendingPathComponent("manifest.json"))
        return try JSONDecoder().decode(Manifest.self, from: data).cases.filter { model == nil || $0.model == model }
    }

    /// A raw little-endian float32 file as a tensor of `shape`.
    func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        let data = try Data(contentsOf: directory.appendingPathComponent(name))
        let values = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        return Tensor(shape: shape, values: values)
    }

    /// Runs every case of `model` (all cases when `nil`) and checks each output element.
    func expectOutputsMatch(model: String? = nil, threadCount: Int) async throws {
        let engine = try InferenceEngine(threadCount: threadCount)
        let cases = try cases(for: model)
        #expect(!cases.isEmpty)
        var models: [String: InferenceModel] = [:]
        for fixture in cases {
            if models[fixture.model] == nil { models[fixture.model] = try await engine.loadModel(at: path(fixture.model)) }
            let model = try #require(models[fixture.model])
            let input = try tensor(fixture.input, shape: fixture.inputShape)
            let expected = try tensor(fixture.output, shape: fixture.outputShape)
            let output = try await model.run(input)
            #expect(output.shape == expected.shape, "\(fixture.input)")
            let error = zip(output.values, expected.values).map { abs($0 - $1) }.max() ?? .infinity
            #expect(error <= 1e-4, "\(fixture.input): max abs error \(error)")
            // A second run reuses the cached plan and must give the same numbers.
            let again = try await model.run(input)
            #expect(again == output, "\(fixture.input): second run differs")
        }
    }
}

/// The fixtures make_fixtures.py writes, bundled as test resources.
let bundledFixtures = FixtureSet(directory: Bundle.module.url(forResource: "Fixtures", withExtension: nil)!)

@Suite("Outputs match ONNX Runtime")
struct ModelOutputTests {
    @Test("every output element within 1e-4", arguments: ["purifier.onnx", "classifier.onnx", "coverage.onnx", "helper_ops.onnx", "blocked_ops.onnx"])
    func matchesOnnxRuntime(model name: String) async throws {
        #expect(try bundledFixtures.cases(for: name).count >= 2)
        try await bundledFixtures.expectOutputsMatch(model: name, threadCount: 2)
    }

    @Test("the model reports its inputs and outputs")
    func describesInputsAndOutputs() async throws {
        let engine = try InferenceEngine(threadCount: 1)
        let purifier = try await engine.loadModel(at: bundledFixtures.path("purifier.onnx"))
        #expect(purifier.inputs == [TensorDescription(name: "input", shape: [nil, 3, nil, nil])])
        #expect(purifier.outputs.map(\.name) == ["output"])
        let classifier = try await engine.loadModel(at: bundledFixtures.path("classifier.onnx"))
        #expect(classifier.inputs == [TensorDescription(name: "input", shape: [nil, 3, 16, 16])])
        #expect(classifier.outputs == [TensorDescription(name: "output", shape: [nil, 10])])
    }

    @Test("concurrent runs from many tasks are serialised and correct")
    func concurrentRuns() async throws {
        let engine = try InferenceEngine(threadCount: 2)
        let model = try await engine.loadModel(at: bundledFixtures.path("classifier.onnx"))
        let fixture = try #require(try bundledFixtures.cases(for: "classifier.onnx").first)
        let input = try bundledFixtures.tensor(fixture.input, shape: fixture.inputShape)
        let expected = try await model.run(input)
        try await withThrowingTaskGroup(of: Tensor.self) { group in
            for _ in 0..<8 { group.addTask { try await model.run(input) } }
            for try await output in group { #expect(output == expected) }
        }
    }
}

@Suite("Batches split between workers")
struct BatchSplitTests {
    @Test("a batch split into uneven chunks gives every image its own result")
    func unevenChunks() async throws {
        let cases = try bundledFixtures.cases(for: "classifier.onnx")
        var inputs: [Float] = [], expected: [Float] = []
        var images = 0
        for fixture in cases + cases + cases + cases {
            inputs += try bundledFixtures.tensor(fixture.input, shape: fixture.inputShape).values
            expected += try bundledFixtures.tensor(fixture.output, shape: fixture.outputShape).values
            images += fixture.inputShape[0]
        }
        // 20 images on 3 threads: chunks of 6, the last one short.
        let engine = try InferenceEngine(threadCount: 3)
        let model = try await engine.loadModel(at: bundledFixtures.path("classifier.onnx"))
        let output = try await model.run(Tensor(shape: [images, 3, 16, 16], values: inputs))
        #expect(output.shape == [images, 10])
        let error = zip(output.values, expected).map { abs($0 - $1) }.max() ?? .infinity
        #expect(error <= 1e-4)
    }
}
