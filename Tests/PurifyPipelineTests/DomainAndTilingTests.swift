import Foundation
import PurifyEngine
import PurifyImage
@testable import PurifyPipeline
import Testing

@Suite("Tile grid")
struct TileGridTests {
    @Test("Tiles cover the axis flush with both edges, overlap by at least the overlap, and their weights sum to one",
          arguments: [(1000, 256, 32), (257, 256, 32), (600, 64, 8), (4000, 256, 32), (97, 32, 4)])
    func axisCoverage(length: Int, tile: Int, overlap: Int) {
        let axis = TileGrid.Axis(length: length, tile: tile, overlap: overlap, paddedLength: { $0 })
        #expect(axis.starts.first == 0)
        #expect(axis.starts.last == length - tile)
        #expect(axis.cropLength == tile && axis.padBefore == 0 && axis.padAfter == 0)
        for (previous, next) in zip(axis.starts, axis.starts.dropFirst()) {
            #expect(previous + tile - next >= overlap, "tiles at \(previous) and \(next) overlap too little")
            #expect(next > previous)
        }
        var totals = [Float](repeating: 0, count: length)
        for (index, start) in axis.starts.enumerated() {
            for offset in 0..<tile { totals[start + offset] += axis.weights[index * tile + offset] }
        }
        #expect(totals.allSatisfy { abs($0 - 1) < 1e-5 })
    }

    @Test("An axis no longer than a tile is one tile, padded (centered) to the purifier's multiple")
    func shortAxis() {
        let grid = TileGrid.fullyConvolutional(width: 45, height: 256, side: 256, overlap: 32, multiple: 16)
        #expect(grid.count == 1)
        #expect(grid.modelSize == (48, 256))
        #expect(grid.padding == Padding(top: 0, bottom: 0, left: 1, right: 2))
    }

    @Test("A fixed-size purifier's tiles have its size; a shorter axis is padded up to it")
    func fixedSize() {
        let grid = TileGrid.fixedSize(width: 100, height: 20, tile: (28, 28), overlap: 32)
        #expect(grid.modelSize == (28, 28))
        #expect(grid.y.starts == [0] && grid.y.padBefore + grid.y.padAfter == 8)
        #expect(grid.x.starts.first == 0 && grid.x.starts.last == 72)
    }
}

@Suite("Input domain")
struct InputDomainTests {
    let domain = InputDomain(layout: .gray, minSize: (28, 28), maxSize: (56, 56))

    @Test("Inside the domain an image is purified as it is, whatever the policy", arguments: InputPolicy.allCases)
    func inside(policy: InputPolicy) throws {
        let plan = try domain.plan(width: 40, height: 30, layout: .gray, policy: policy, resizeTarget: (28, 28)).get()
        #expect(plan.action == .asIs && plan.inDomain && !plan.perChannel && plan.size == (40, 30))
    }

    @Test("Outside it: reject says what was expected and what came; resize goes to the target; tile keeps the size")
    func outside() throws {
        switch domain.plan(width: 600, height: 400, layout: .gray, policy: .reject, resizeTarget: (28, 28)) {
        case .success: Issue.record("a 600×400 image was accepted by a 28–56 pixel domain")
        case .failure(let violation):
            #expect(violation.message.contains("gray images from 28×28 to 56×56 pixels"))
            #expect(violation.message.contains("600×400"))
        }
        let resized = try domain.plan(width: 600, height: 400, layout: .gray, policy: .resize, resizeTarget: (28, 28)).get()
        #expect(resized.action == .resized && resized.size == (28, 28) && !resized.inDomain)
        let tiled = try domain.plan(width: 600, height: 400, layout: .gray, policy: .tile, resizeTarget: (28, 28)).get()
        #expect(tiled.action == .tiled && tiled.size == (600, 400))
    }

    @Test("A color image never goes through a gray purifier as gray: rejected, or purified channel by channel")
    func colorThroughGray() throws {
        switch domain.plan(width: 28, height: 28, layout: .rgb, policy: .reject, resizeTarget: (28, 28)) {
        case .success: Issue.record("a color image was accepted by a gray purifier")
        case .failure(let violation): #expect(violation.message.contains("colors"))
        }
        for policy in [InputPolicy.resize, .tile] {
            let plan = try domain.plan(width: 28, height: 28, layout: .rgb, policy: policy, resizeTarget: (28, 28)).get()
            #expect(plan.perChannel)
        }
        let rgb = InputDomain(layout: .rgb, minSize: (32, 32), maxSize: (32, 32))
        let gray = try rgb.plan(width: 32, height: 32, layout: .gray, policy: .reject, resizeTarget: (32, 32)).get()
        #expect(gray.inDomain && !gray.perChannel)
    }

    @Test("An RGB image whose channels are equal counts as gray")
    func grayStoredAsRGB() {
        let gray = TestSupport.noiseImage(width: 9, height: 7, layout: .gray, seed: 1)
        #expect(gray.converted(to: .rgb).isGrayStoredAsRGB)
        #expect(!TestSupport.noiseImage(width: 9, height: 7, layout: .rgb, seed: 1).isGrayStoredAsRGB)
    }
}

@Suite("Tiled purification")
struct TiledPurificationTests {
    /// Cuts an image into tiles and puts the tiles back as if the purifier were the identity.
    private func roundTrip(_ image: PixelImage, tileSide: Int) async throws -> (work: PixelImage, assembled: PixelImage?, tiles: Int) {
        let bundle = try await TestSupport.loadFixtureBundle()
        let folder = try TestSupport.temporaryFolder()
        let path = try TestSupport.write(image, as: .png, to: folder, name: "big.png")
        let processor = ImageProcessor(bundle: bundle, configuration: PipelineConfiguration(inputPolicy: .tile, tileSide: tileSide))
        guard case .inspected(let inspected) = processor.inspect(PurificationRequest(inputPath: path, name: "big.png")),
              case .decoded(let decoded) = processor.decode(inspected, id: 1, reservedPixels: 0) else {
            Issue.record("the image did not decode")
            return (image, nil, 0)
        }
        let assemblies = TileAssemblies()
        var assembled: PixelImage?
        for tile in processor.tiles(of: decoded, 0..<decoded.tileCount) {
            let floats = tile.pixels.planarFloats()
            let done = floats.withUnsafeBufferPointer { output in
                assemblies.add(output, planes: 1, of: tile, dequeued: .now, resize: nil)
            }
            if let done {
                #expect(assembled == nil, "the image completed twice")
                assembled = done.image
            }
        }
        #expect(assemblies.count == 0)
        return (decoded.work, assembled, decoded.tileCount)
    }

    @Test("Tiles blended back give the image exactly, gray and color (channel by channel)", arguments: [ChannelLayout.gray, .rgb])
    func identityRoundTrip(layout: ChannelLayout) async throws {
        let image = TestSupport.noiseImage(width: 300, height: 170, layout: layout, seed: 9)
        let (work, assembled, tiles) = try await roundTrip(image, tileSide: 64)
        #expect(tiles == (layout == .rgb ? 3 : 1) * 6 * 3)
        #expect(assembled?.pixels == work.pixels && assembled?.width == work.width && assembled?.layout == work.layout)
        #expect(work.layout == layout)
    }

    @Test("Through the pipeline a large image is purified at its size in tiles; out of the domain it is rejected by default")
    func pipeline() async throws {
        let folder = try TestSupport.temporaryFolder()
        let large = TestSupport.noiseImage(width: 200, height: 150, layout: .rgb, seed: 2)
        let path = try TestSupport.write(large, as: .png, to: folder, name: "large.png")
        let request = PurificationRequest(inputPath: path, name: "large.png")
        let narrow = try TestSupport.copyOfFixtureBundle(replacing: "max_size = [16384, 16384]", with: "max_size = [28, 28]")
        let bundle = try await ModelBundle.load(from: narrow, engine: try InferenceEngine(threadCount: 2))

        let rejected = try TestSupport.temporaryFolder("rejected")
        let refusal = try #require(try await TestSupport.purify([request], bundle: bundle, output: rejected)["large.png"]?.report)
        #expect(refusal.status == .failed && refusal.error?.code == "out_of_domain")
        #expect(refusal.error?.message.contains("gray images from 1×1 to 28×28 pixels") == true)
        #expect(refusal.domain?.applied == "rejected")

        let tiled = try TestSupport.temporaryFolder("tiled")
        let configuration = PipelineConfiguration(inputPolicy: .tile, tileSide: 64, maxBatchPixels: 3 * 64 * 64)
        let report = try #require(try await TestSupport.purify([request], bundle: bundle, output: tiled,
                                                               configuration: configuration)["large.png"]?.report)
        #expect(report.status == .purified)
        #expect(report.domain?.tiles == 3 * 4 * 3 && report.domain?.perChannel == true && report.domain?.inDomain == false)
        #expect(report.batch?.modelWidth == 64 && (report.batch?.size ?? 0) <= 3)
        #expect(report.output?.width == 200 && report.output?.height == 150)
        #expect(report.classification != nil)

        let resized = try TestSupport.temporaryFolder("resized")
        let small = try #require(try await TestSupport.purify([request], bundle: bundle, output: resized,
                                                              configuration: PipelineConfiguration(inputPolicy: .resize))["large.png"]?.report)
        #expect(small.status == .purified && small.domain?.applied == "resize")
        #expect(small.output?.width == 28 && small.output?.height == 28)
        let decoded = try ImageDecoder().decodeFile(atPath: try #require(small.output?.path))
        #expect(decoded.layout == .rgb && !decoded.isGrayStoredAsRGB)
        let reports = [rejected, tiled, resized].flatMap { TestSupport.reports(under: $0) }
        #expect(reports.count == 3)
        #expect(try await TestSupport.schemaViolations(in: reports) == [])
    }

    @Test("The classifier takes (x - mean) / std when the bundle declares them")
    func classifierNormalization() async throws {
        let normalized = try TestSupport.copyOfFixtureBundle(
            replacing: "output = \"probabilities\"", with: "output = \"probabilities\"\nmean = [0.25]\nstd = [0.5]")
        let bundle = try await ModelBundle.load(from: normalized, engine: try InferenceEngine(threadCount: 1))
        let folder = try TestSupport.temporaryFolder()
        let image = TestSupport.noiseImage(width: 28, height: 28, layout: .gray, seed: 4)
        let path = try TestSupport.write(image, as: .png, to: folder, name: "x.png")
        let output = try TestSupport.temporaryFolder("normalized-out")
        let report = try #require(try await TestSupport.purify([PurificationRequest(inputPath: path, name: "x.png")],
                                                               bundle: bundle, output: output,
                                                               configuration: PipelineConfiguration(topK: 10))["x.png"]?.report)
        let scores = try #require(report.classification?.input)
        let input = Tensor(shape: [1, 1, 28, 28], values: image.planarFloats().map { ($0 - 0.25) / 0.5 })
        let expected = try await #require(bundle.classifier).run(input)
        for score in scores {
            #expect(abs(score.probability - Double(expected.values[score.index])) < 1e-5)
        }
    }
}

@Suite("Pixel budget")
struct PixelBudgetTests {
    @Test("A reservation waits until enough is released; one larger than the budget takes all of it")
    func waitsForRoom() async throws {
        let budget = PixelBudget(capacity: 100)
        #expect(await budget.reserve(60) == 60)
        let waiting = Task { await budget.reserve(50) }
        try await Task.sleep(for: .milliseconds(100))
        #expect(budget.available == 40)
        budget.release(60)
        #expect(await waiting.value == 50)
        budget.release(50)
        #expect(await budget.reserve(1_000) == 100)
        let cancelled = Task { await budget.reserve(1) }
        try await Task.sleep(for: .milliseconds(50))
        cancelled.cancel()
        #expect(await cancelled.value == nil)
        budget.release(100)
        #expect(budget.available == 100)
    }
}
