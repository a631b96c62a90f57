import Foundation
import Logging
import PurifyImage
@testable import PurifyPipeline
import ServiceLifecycle
import Testing

@Suite("Pipeline")
struct PipelineTests {
    @Test("A result does not depend on the batch the image fell into")
    func batchingInvariance() async throws {
        let bundle = try await TestSupport.loadFixtureBundle()
        let input = try TestSupport.temporaryFolder()
        var requests: [PurificationRequest] = []
        // Eight 28×28 gray images (one 32×32 padded shape) and three 30×40 ones (48×32).
        for index in 0..<8 {
            let image = TestSupport.noiseImage(width: 28, height: 28, layout: .gray, seed: UInt64(index))
            let path = try TestSupport.write(image, as: .png, to: input, name: "gray\(index).png")
            requests.append(PurificationRequest(inputPath: path, name: "gray\(index).png"))
        }
        for index in 0..<3 {
            let image = TestSupport.noiseImage(width: 30, height: 40, layout: .gray, seed: 100 + UInt64(index))
            let path = try TestSupport.write(image, as: .png, to: input, name: "wide\(index).png")
            requests.append(PurificationRequest(inputPath: path, name: "wide\(index).png"))
        }
        let probe = "gray5.png"
        let probeRequest = try #require(requests.first { $0.name == probe })
        // Alone, in batches of 3 of mixed arrival, in one batch of 8.
        var outcomes: [(batchSize: Int, pixels: PixelImage, report: PurificationReport)] = []
        for (label, maxBatch, run) in [("alone", 1, [probeRequest]), ("three", 3, requests.shuffled()), ("eight", 8, requests)] {
            let output = try TestSupport.temporaryFolder("batching-\(label)")
            let configuration = PipelineConfiguration(maxBatchSize: maxBatch, maxBatchDelay: .seconds(5))
            let results = try await TestSupport.purify(run, bundle: bundle, output: output, configuration: configuration)
            #expect(results.count == run.count)
            #expect(results.values.allSatisfy { $0.succeeded })
            let result = try #require(results[probe])
            let outputPath = try #require(result.report.output?.path)
            let pixels = try ImageDecoder().decodeFile(atPath: outputPath)
            outcomes.append((try #require(result.report.batch?.size), pixels, result.report))
        }
        // Two decoders race, so a batch of up to 3 may end up with 2 of them.
        #expect(outcomes[0].batchSize == 1)
        #expect((2...3).contains(outcomes[1].batchSize))
        #expect(outcomes[2].batchSize == 8)
        for outcome in outcomes.dropFirst() {
            #expect(outcome.pixels == outcomes[0].pixels, "purified pixels differ in a batch of \(outcome.batchSize)")
            #expect(outcome.report.change == outcomes[0].report.change)
            let alone = try #require(outcomes[0].report.classification)
            let batched = try #require(outcome.report.classification)
            #expect(batched.input.map(\.index) == alone.input.map(\.index))
            #expect(batched.purified.map(\.index) == alone.purified.map(\.index))
            for (a, b) in zip(alone.input + alone.purified, batched.input + batched.purified) {
                #expect(abs(a.probability - b.probability) <= 1e-5)
            }
        }
    }

    @Test("Bad files get failure reports, with their codes, and the others are purified")
    func badFilesDoNotStopTheBatch() async throws {
        let bundle = try await TestSupport.loadFixtureBundle()
        let input = try TestSupport.temporaryFolder()
        let output = try TestSupport.temporaryFolder("bad-out")
        var requests: [PurificationRequest] = []
        func add(_ name: String, _ bytes: [UInt8]) throws {
            let path = input + "/" + name
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            requests.append(PurificationRequest(inputPath: path, name: name))
        }
        let good = try ImageEncoder().encode(TestSupport.noiseImage(width: 28, height: 28, layout: .gray, seed: 7), as: .png)
        for index in 0..<5 { try add("good\(index).png", good) }
        try add("png-named.jpg", good)  // the format comes from the bytes
        try add("truncated.png", Array(good.prefix(good.count / 2)))
        try add("empty.png", [])
        try add("garbage.png", Array("this is not an image at all".utf8))
        // A 1×1 PNG whose IHDR (CRC fixed up) claims 100000×100000.
        var huge = try ImageEncoder().encode(TestSupport.noiseImage(width: 1, height: 1, layout: .gray, seed: 1), as: .png)
        huge.replaceSubrange(16..<24, with: [0x00, 0x01, 0x86, 0xA0, 0x00, 0x01, 0x86, 0xA0])
        let crc = TestSupport.crc32(huge[12..<29])
        huge.replaceSubrange(29..<33, with: [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)])
        try add("huge.png", huge)
        requests.append(PurificationRequest(inputPath: input + "/missing.png", name: "missing.png"))

        let results = try await TestSupport.purify(requests, bundle: bundle, output: output)
        #expect(results.count == requests.count)
        for index in 0..<5 { #expect(results["good\(index).png"]?.succeeded == true) }
        #expect(results["png-named.jpg"]?.report.output?.format == "png")
        let expected: [String: (code: String, stage: PurificationReport.Stage)] = [
            "truncated.png": ("truncated", .decode), "empty.png": ("empty", .decode),
            "garbage.png": ("unsupported", .decode), "missing.png": ("io", .read), "huge.png": ("too_large", .decode),
        ]
        for (name, failure) in expected {
            let report = try #require(results[name]?.report)
            #expect(report.status == .failed)
            #expect(report.error?.code == failure.code, "\(name): \(String(describing: report.error))")
            #expect(report.error?.stage == failure.stage)
            #expect(report.output == nil)
            #expect(FileManager.default.fileExists(atPath: output + "/" + name + ".json"))
            #expect(!FileManager.default.fileExists(atPath: output + "/" + name))
        }
        let reports = TestSupport.reports(under: output)
        #expect(reports.count == requests.count)
        #expect(try await TestSupport.schemaViolations(in: reports) == [])
    }

    @Test("Alpha, channels and size are kept (color through the gray purifier channel by channel, under the tile policy); JPEG quality is reported; PNG output on request")
    func formatsAndChannels() async throws {
        let bundle = try await TestSupport.loadFixtureBundle()
        let input = try TestSupport.temporaryFolder()
        let rgba = TestSupport.noiseImage(width: 17, height: 33, layout: .rgba, seed: 3)
        let grayAlpha = TestSupport.noiseImage(width: 20, height: 20, layout: .grayAlpha, seed: 4)
        let rgb = TestSupport.noiseImage(width: 45, height: 31, layout: .rgb, seed: 5)
        let requests = [
            PurificationRequest(inputPath: try TestSupport.write(rgba, as: .png, to: input, name: "rgba.png"), name: "rgba.png"),
            PurificationRequest(inputPath: try TestSupport.write(grayAlpha, as: .png, to: input, name: "ga.png"), name: "ga.png"),
            PurificationRequest(inputPath: try TestSupport.write(rgb, as: .jpeg, to: input, name: "rgb.jpg"), name: "rgb.jpg"),
        ]
        let output = try TestSupport.temporaryFolder("formats-out")
        let configuration = PipelineConfiguration(encodeOptions: EncodeOptions(jpegQuality: 80), inputPolicy: .tile)
        let results = try await TestSupport.purify(requests, bundle: bundle, output: output, configuration: configuration)
        for (name, original) in [("rgba.png", rgba), ("ga.png", grayAlpha)] {
            let report = try #require(results[name]?.report)
            let decoded = try ImageDecoder().decodeFile(atPath: try #require(report.output?.path))
            #expect(decoded.layout == original.layout)
            #expect((decoded.width, decoded.height) == (original.width, original.height))
            #expect(decoded.splittingAlpha().alpha == original.splittingAlpha().alpha, "alpha changed in \(name)")
            #expect(report.output?.jpegQuality == nil)
            #expect(report.batch?.modelWidth == 32 && report.batch?.modelHeight == (name == "ga.png" ? 32 : 48))
        }
        let jpeg = try #require(results["rgb.jpg"]?.report)
        #expect(jpeg.output?.format == "jpeg")
        #expect(jpeg.output?.jpegQuality == 80)
        #expect(jpeg.input.channels == "rgb")
        let decodedJPEG = try ImageDecoder().decodeFile(atPath: try #require(jpeg.output?.path))
        #expect(decodedJPEG.layout == .rgb && decodedJPEG.width == 45 && decodedJPEG.height == 31)
        #expect(jpeg.domain?.perChannel == true && jpeg.domain?.tiles == 3 && jpeg.domain?.applied == "tile")
        #expect(!decodedJPEG.isGrayStoredAsRGB, "a color image came back gray")

        let pngOutput = try TestSupport.temporaryFolder("formats-png")
        let asPNG = try await TestSupport.purify([requests[2]], bundle: bundle, output: pngOutput,
                                                 configuration: PipelineConfiguration(outputFormat: .png, inputPolicy: .tile))
        #expect(asPNG["rgb.jpg"]?.report.output?.path == pngOutput + "/rgb.png")
        #expect(asPNG["rgb.jpg"]?.report.output?.jpegQuality == nil)
        #expect(try await TestSupport.schemaViolations(in: TestSupport.reports(under: output) + TestSupport.reports(under: pngOutput)) == [])
    }

    /// With a zero delay every image leaves as a batch of its own by its deadline before the next
    /// one arrives: those batches must hold the decoders back too.
    @Test("submit suspends while the pipeline is full, and everything comes out once results are read",
          arguments: [Duration.milliseconds(1), .zero])
    func backpressure(maxBatchDelay: Duration) async throws {
        let total = 40
        let configuration = PipelineConfiguration(maxBatchSize: 2, maxBatchDelay: maxBatchDelay, queueCapacity: 2,
                                                  ioThreadCount: 1, classifies: false)
        let (pipeline, path) = try await TestSupport.pipelineWithImage(configuration, seed: 9)
        let submitted = Counter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await pipeline.run() }
            group.addTask {
                for index in 0..<total {
                    try await pipeline.submit(PurificationRequest(inputPath: path, name: "x\(index).png"))
                    await submitted.increment()
                }
                pipeline.finishInput()
            }
            // Nobody reads results yet: the queues fill and submit stops.
            try await Task.sleep(for: .seconds(2))
            let stalledAt = await submitted.value
            #expect(stalledAt < total, "submit never suspended: \(stalledAt) of \(total) taken without reading results")
            #expect(stalledAt >= 2)
            var received = 0
            for await _ in pipeline.results { received += 1 }
            #expect(received == total)
            try await group.waitForAll()
        }
    }

    @Test("An incomplete batch leaves after the maximum delay, without more input")
    func maxDelayFlushesABatch() async throws {
        let (pipeline, path) = try await TestSupport.pipelineWithImage(
            PipelineConfiguration(maxBatchSize: 16, maxBatchDelay: .milliseconds(20)), seed: 2, name: "one.png")
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await pipeline.run() }
            try await pipeline.submit(PurificationRequest(inputPath: path, name: "one.png"))
            // The input stays open: only the delay can send the batch of one.
            var iterator = pipeline.results.makeAsyncIterator()
            let first = await iterator.next()
            #expect(first?.succeeded == true)
            #expect(first?.report.batch?.size == 1)
            pipeline.finishInput()
            #expect(await iterator.next() == nil)
            try await group.waitForAll()
        }
    }
}

extension PipelineTests {
    @Test("As a service, a graceful shutdown finishes the input and drains what was submitted")
    func gracefulShutdown() async throws {
        let (pipeline, path) = try await TestSupport.pipelineWithImage(PipelineConfiguration(maxBatchDelay: .seconds(10)), seed: 8)
        let services = ServiceGroup(configuration: .init(services: [pipeline], logger: Logger(label: "purify-tests")))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await services.run() }
            for index in 0..<5 { try await pipeline.submit(PurificationRequest(inputPath: path, name: "x\(index).png")) }
            // The batch of five would wait 10 s for more; the shutdown flushes it at once.
            await services.triggerGracefulShutdown()
            var received: [PurificationResult] = []
            for await result in pipeline.results { received.append(result) }
            #expect(received.count == 5)
            #expect(received.allSatisfy { $0.succeeded })
            await #expect(throws: PipelineError.closed) {
                try await pipeline.submit(PurificationRequest(inputPath: path, name: "late.png"))
            }
            try await group.waitForAll()
        }
    }
}

extension PipelineTests {
    @Test("Cancelling run ends the results and releases a waiting submitter")
    func cancellation() async throws {
        let (pipeline, path) = try await TestSupport.pipelineWithImage(PipelineConfiguration(queueCapacity: 1, ioThreadCount: 1), seed: 6)
        let running = Task { try await pipeline.run() }
        // Nobody reads results: the submitter soon waits for room.
        let submitter = Task {
            for index in 0..<1_000 { try await pipeline.submit(PurificationRequest(inputPath: path, name: "x\(index).png")) }
        }
        try await Task.sleep(for: .seconds(1))
        running.cancel()
        try await running.value
        await #expect(throws: PipelineError.closed) { try await submitter.value }
        var drained = 0
        for await _ in pipeline.results { drained += 1 }
        #expect(drained <= 2, "only what was already committed remains: \(drained)")
    }
}

/// A count shared between tasks.
actor Counter {
    private(set) var value = 0

    func increment() {
        value += 1
    }
}
