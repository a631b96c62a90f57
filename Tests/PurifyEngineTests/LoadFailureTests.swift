import Foundation
import PurifyEngine
import Testing

@Suite("Loading and running fail with errors, never crashes")
struct LoadFailureTests {
    let engine: InferenceEngine

    init() throws {
        engine = try InferenceEngine(threadCount: 1)
    }

    private func loadError(_ path: String) async -> EngineError? {
        do {
            _ = try await engine.loadModel(at: path)
            return nil
        } catch {
            return error as? EngineError
        }
    }

    private func temporaryFile(_ bytes: Data) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("purify-engine-\(UUID().uuidString).onnx")
        try bytes.write(to: url)
        return url.path
    }

    @Test("an unsupported operator names the node and the op")
    func unsupportedOperator() async throws {
        let error = try #require(await loadError(bundledFixtures.path("unsupported_op.onnx")))
        #expect(error.code == .unsupportedOperator)
        #expect(error.message.contains("mystery_einsum"))
        #expect(error.message.contains("Einsum"))
    }

    @Test("an attribute value the engine cannot honour names the node and the op")
    func badAttributeValue() async throws {
        let error = try #require(await loadError(bundledFixtures.path("bad_attribute.onnx")))
        #expect(error.code == .invalidAttribute)
        #expect(error.message.contains("conv_bad_pad"))
        #expect(error.message.contains("Conv"))
        #expect(error.message.contains("SIDEWAYS"))
    }

    @Test("an unknown attribute names the node, the op and the attribute")
    func unknownAttribute() async throws {
        let error = try #require(await loadError(bundledFixtures.path("unsupported_attribute.onnx")))
        #expect(error.code == .invalidAttribute)
        #expect(error.message.contains("softmax_odd"))
        #expect(error.message.contains("flavour"))
    }

    @Test("a truncated model fails to load", arguments: [0.1, 0.5, 0.9, 0.999])
    func truncatedFile(fraction: Double) async throws {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: bundledFixtures.path("purifier.onnx")))
        let path = try temporaryFile(bytes.prefix(Int(Double(bytes.count) * fraction)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let error = try #require(await loadError(path))
        #expect(error.code == .malformedModel)
    }

    @Test("garbage bytes fail to load")
    func garbageFile() async throws {
        var generator = SystemRandomNumberGenerator()
        for length in [0, 1, 17, 4096] {
            let path = try temporaryFile(Data((0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }))
            defer { try? FileManager.default.removeItem(atPath: path) }
            let error = try #require(await loadError(path))
            #expect(error.code == .malformedModel)
        }
    }

    @Test("a missing file is reported as unreadable")
    func missingFile() async throws {
        let error = try #require(await loadError("/nonexistent/purifier.onnx"))
        #expect(error.code == .unreadableFile)
    }

    @Test("a wrong input shape is rejected before running")
    func wrongInputShape() async throws {
        let purifier = try await engine.loadModel(at: bundledFixtures.path("purifier.onnx"))
        for shape in [[1, 4, 16, 16], [3, 16, 16], [1, 3, 0, 16]] {
            let input = Tensor(shape: shape, values: [Float](repeating: 0.5, count: shape.reduce(1, *)))
            await #expect(throws: EngineError.self) { try await purifier.run(input) }
            do {
                _ = try await purifier.run(input)
            } catch let error as EngineError {
                #expect(error.code == .invalidInput)
            }
        }
        // A side that is not a multiple of 2^depth breaks the skip concatenation inside the graph.
        let odd = Tensor(shape: [1, 3, 12, 12], values: [Float](repeating: 0.5, count: 3 * 144))
        do {
            _ = try await purifier.run(odd)
            Issue.record("a 12×12 input through a depth-3 U-Net should fail")
        } catch let error as EngineError {
            #expect(error.code == .invalidShape)
            #expect(error.message.contains("Concat"))
        }
        let classifier = try await engine.loadModel(at: bundledFixtures.path("classifier.onnx"))
        let wrongSize = Tensor(shape: [1, 3, 32, 32], values: [Float](repeating: 0.5, count: 3 * 1024))
        await #expect(throws: EngineError.self) { try await classifier.run(wrongSize) }
        await #expect(throws: EngineError.self) { try await classifier.run(["image": wrongSize]) }
    }
}

@Suite("Damaged models never crash the engine")
struct DamagedModelTests {
    @Test("cuts and scattered byte flips give a working model or an EngineError",
          arguments: ["purifier.onnx", "classifier.onnx", "helper_ops.onnx"])
    func damagedBytes(model name: String) async throws {
        let engine = try InferenceEngine(threadCount: 1)
        let original = try Data(contentsOf: URL(fileURLWithPath: bundledFixtures.path(name)))
        var generator = SplitMix64(seed: UInt64(original.count))
        var variants: [Data] = (1..<64).map { original.prefix(original.count * $0 / 64) }
        for _ in 0..<64 {
            var damaged = original
            for _ in 0..<4 {
                let index = Int(generator.next() % UInt64(damaged.count))
                damaged[index] ^= UInt8(truncatingIfNeeded: generator.next() | 1)
            }
            variants.append(damaged)
        }
        for bytes in variants {
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("purify-engine-\(UUID().uuidString).onnx")
            try bytes.write(to: url)
            defer { try? FileManager.default.removeItem(at: url) }
            do {
                let model = try await engine.loadModel(at: url.path)
                // What loads must also run, or fail with an error, on an input of its declared shape.
                let shape = model.inputs[0].shape.map { $0 ?? 16 }
                guard model.inputs.count == 1, shape.reduce(1, *) < 1 << 20 else { continue }
                _ = try await model.run(Tensor(shape: shape, values: [Float](repeating: 0.5, count: shape.reduce(1, *))))
            } catch {
                #expect(error is EngineError)
            }
        }
    }
}

/// A small deterministic generator, so that a failing damage pattern can be reproduced.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
