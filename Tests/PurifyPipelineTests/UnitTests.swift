import Foundation
import PurifyEngine
import PurifyImage
@testable import PurifyPipeline
import Testing

@Suite("Bounded channel")
struct BoundedChannelTests {
    @Test("send suspends at capacity and resumes as elements are taken, in order")
    func capacityAndOrder() async throws {
        let channel = BoundedChannel<Int>(capacity: 3)
        let sent = Counter()
        let producer = Task {
            for value in 0..<10 {
                try await channel.send(value)
                await sent.increment()
            }
            channel.finish()
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(await sent.value == 3)
        var received: [Int] = []
        while let value = await channel.next() { received.append(value) }
        #expect(received == Array(0..<10))
        try await producer.value
    }

    @Test("finish fails waiting senders; a cancelled sender throws")
    func finishAndCancel() async throws {
        let channel = BoundedChannel<Int>(capacity: 1)
        try await channel.send(0)
        let waiting = Task { try await channel.send(1) }
        let cancelled = Task { try await channel.send(2) }
        try await Task.sleep(for: .milliseconds(100))
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        channel.finish()
        await #expect(throws: PipelineError.closed) { try await waiting.value }
        #expect(await channel.next() == 0)
        #expect(await channel.next() == nil)
    }
}

@Suite("Model bundle")
struct ModelBundleTests {
    @Test("The fixture bundle loads, with its manifest")
    func loads() async throws {
        let bundle = try await TestSupport.loadFixtureBundle()
        #expect(bundle.manifest.name == "fixture-mnist")
        #expect(bundle.manifest.purifier.sizeMultiple == 16)
        #expect(bundle.manifest.classifier?.labels.count == 10)
        #expect(bundle.colorLayout == .gray)
        #expect(bundle.classifier != nil)
    }

    @Test("A checksum mismatch names the file")
    func checksumMismatch() async throws {
        let copy = try copyOfFixtureBundle()
        let purifier = copy + "/purifier.onnx"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: purifier))
        bytes[bytes.count - 1] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: purifier))
        let engine = try InferenceEngine(threadCount: 1)
        do throws(BundleError) {
            _ = try await ModelBundle.load(from: copy, engine: engine)
            Issue.record("a corrupted model loaded")
        } catch {
            #expect(error.code == .checksumMismatch)
            #expect(error.message.contains("purifier.onnx"))
        }
    }

    @Test("A manifest without a required key is refused, naming the key")
    func missingKey() async throws {
        let copy = try copyOfFixtureBundle()
        let manifest = copy + "/bundle.toml"
        let text = try String(contentsOfFile: manifest, encoding: .utf8)
        try text.replacingOccurrences(of: "size_multiple = 16\n", with: "")
            .write(toFile: manifest, atomically: true, encoding: .utf8)
        let engine = try InferenceEngine(threadCount: 1)
        do throws(BundleError) {
            _ = try await ModelBundle.load(from: copy, engine: engine)
            Issue.record("a manifest without size_multiple loaded")
        } catch {
            #expect(error.code == .invalidManifest)
            #expect(error.message.contains("purifier.size_multiple"), "\(error.message)")
        }
    }

    private func copyOfFixtureBundle() throws -> String {
        let folder = try TestSupport.temporaryFolder("bundle-copy") + "/bundle"
        try FileManager.default.copyItem(atPath: TestSupport.fixtureBundle, toPath: folder)
        return folder
    }
}

@Suite("Report schema")
struct ReportSchemaTests {
    @Test("The validator rejects reports that break the schema")
    func validatorRejects() async throws {
        let folder = try TestSupport.temporaryFolder()
        let broken = [
            "missing-status": #"{"schema_version": 1, "input": {"name": "a", "path": "/a"}, "bundle": {"name": "b", "version": "1", "purifier_sha256": "\#(String(repeating: "0", count: 64))"}, "timings_ms": {"total": 1}}"#,
            "failed-without-error": #"{"schema_version": 1, "status": "failed", "input": {"name": "a", "path": "/a"}, "bundle": {"name": "b", "version": "1", "purifier_sha256": "\#(String(repeating: "0", count: 64))"}, "timings_ms": {"total": 1}}"#,
        ]
        var paths: [String] = []
        for (name, json) in broken {
            let path = folder + "/" + name + ".json"
            try json.write(toFile: path, atomically: true, encoding: .utf8)
            paths.append(path)
        }
        let violations = try await TestSupport.schemaViolations(in: paths)
        for path in paths {
            #expect(violations.contains { $0.hasPrefix(path) }, "\(path) passed the schema")
        }
    }
}
