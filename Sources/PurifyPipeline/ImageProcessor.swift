import Crypto
import Foundation
import PurifyEngine
import PurifyImage

/// An input read and its header parsed, waiting for its pixels to fit the pipeline's budget.
struct InspectedImage: Sendable {
    var request: PurificationRequest
    var input: PurificationReport.Input
    var bytes: [UInt8]
    var header: ImageHeader
    var timings: PurificationReport.Timings
    var started: ContinuousClock.Instant
    var read: ContinuousClock.Instant

    /// The pixels decoding will hold.
    var pixelCount: Int { header.width * header.height }
}

/// An image decoded, planned and converted for the purifier, waiting for its tiles' batches.
struct DecodedImage: Sendable {
    /// Tells the image's tiles from other images'.
    var id: UInt64
    var request: PurificationRequest
    var input: PurificationReport.Input
    var format: ImageFormat
    /// The input's color channels (`.gray` or `.rgb`) at the output's size.
    var color: PixelImage
    /// The input's alpha channel at the output's size, put back on the output.
    var alpha: PixelImage?
    /// What the purifier is given: the image in the bundle's channels, or in its own colors
    /// when each channel is purified on its own; tiles are cut from it.
    var work: PixelImage
    var plan: PurificationPlan
    var grid: TileGrid
    /// Whether the purifier takes one fixed size, so that the image is resized to it and back.
    var resizesToFit: Bool
    /// The input as the classifier takes it; `nil` when not classifying.
    var classifierInput: PixelImage?
    /// Pixels held against the pipeline's budget until the image is committed.
    var reservedPixels: Int
    var timings: PurificationReport.Timings
    var started: ContinuousClock.Instant
    var decoded: ContinuousClock.Instant

    /// Planes purified one by one: each color channel when ``PurificationPlan/perChannel``.
    var planes: Int { plan.perChannel ? work.layout.channelCount : 1 }
    /// Tiles over all planes.
    var tileCount: Int { planes * (resizesToFit ? 1 : grid.count) }

    /// What the report says of the plan.
    func domainReport() -> PurificationReport.Domain {
        PurificationReport.Domain(policy: plan.policy.rawValue, inDomain: plan.inDomain, applied: plan.action.rawValue,
                                  perChannel: plan.perChannel, tiles: tileCount, width: work.width, height: work.height,
                                  outsideBecause: plan.outsideBecause)
    }
}

/// One purifier input: a tile of one plane of an image (the whole image when it is one tile).
struct PurifierTile: Sendable {
    var image: DecodedImage
    /// The color channel of ``DecodedImage/work`` purified, when per channel; else 0.
    var plane: Int
    /// The tile's index in the image's grid.
    var index: Int
    /// The purifier's input: the tile in the bundle's channels, padded (or resized).
    var pixels: PixelImage
}

/// A batch taken by the purifier stage.
struct PurifierBatch: Sendable {
    var tiles: [PurifierTile]
    /// When the purifier stage took it: the end of its images' batch wait.
    var dequeued: ContinuousClock.Instant
    var modelWidth: Int { tiles[0].pixels.width }
    var modelHeight: Int { tiles[0].pixels.height }
}

/// A batch the purifier has run on, with its output or why it failed.
struct PurifiedBatch: Sendable {
    var batch: PurifierBatch
    var output: Result<Tensor, InferenceFailure>
    var finished: ContinuousClock.Instant
}

/// The engine's failure on a batch.
struct InferenceFailure: Error, Sendable {
    var message: String
}

/// An image purified and cropped back, in the input's color layout, before classification.
struct PurifiedImage: Sendable {
    var source: DecodedImage
    var purified: PixelImage
    var change: PurificationReport.Change
    var batch: PurificationReport.Batch
    /// The purified image as the classifier takes it; `nil` when not classifying.
    var classifierInput: PixelImage?
}

/// An input that failed before it could be purified and committed.
struct FailedImage: Sendable {
    var request: PurificationRequest
    var input: PurificationReport.Input
    var batch: PurificationReport.Batch?
    var domain: PurificationReport.Domain?
    var failure: PurificationReport.Failure
    var timings: PurificationReport.Timings
    var started: ContinuousClock.Instant
    /// Pixels held against the pipeline's budget, returned once the failure is committed.
    var reservedPixels: Int = 0
}

/// What came of reading an input and its header.
enum Inspection: Sendable {
    case inspected(InspectedImage)
    case failed(FailedImage)
}

/// What came of decoding an input.
enum Preparation: Sendable {
    case decoded(DecodedImage)
    case failed(FailedImage)
}

/// What the commit stage receives.
enum FinishedImage: Sendable {
    case purified(PurifiedImage, PurificationReport.Classification?)
    case failed(FailedImage)

    /// Pixels the image holds against the pipeline's budget.
    var reservedPixels: Int {
        switch self {
        case .purified(let image, _): image.source.reservedPixels
        case .failed(let failed): failed.reservedPixels
        }
    }
}

/// The per-image work of the pipeline, all of it synchronous and run on the pipeline's I/O
/// threads: reading and decoding, planning against the bundle's domain, cutting tiles, batch
/// tensors, putting tiles back together, measuring, classification read-out, encoding and
/// committing.
struct ImageProcessor: Sendable {
    let configuration: PipelineConfiguration
    let bundleDescription: PurificationReport.Bundle
    let modelLayout: ChannelLayout
    let domain: InputDomain
    let fullyConvolutional: Bool
    let sizeMultiple: Int
    /// The fixed purifier input `(width, height)` when not fully convolutional.
    let trainedSize: (width: Int, height: Int)
    /// Where the resize policy takes an image: the classifier's input size, or the trained size.
    let resizeTarget: (width: Int, height: Int)
    /// The classifier's input `(width, height)`, `nil` when not classifying.
    let classifierSize: (width: Int, height: Int)?
    /// Per channel of the classifier's input, `(mean, 1 / std)`; `nil` for [0, 1] input.
    let classifierNormalization: [(mean: Float, scale: Float)]?
    let labels: [String]
    let classifierOutputsLogits: Bool
    private let decoder: ImageDecoder
    private let encoder: ImageEncoder
    private let clock = ContinuousClock()

    init(bundle: ModelBundle, configuration: PipelineConfiguration) {
        let manifest = bundle.manifest
        self.configuration = configuration
        bundleDescription = PurificationReport.Bundle(
            name: manifest.name, version: manifest.version, purifierSha256: manifest.purifier.sha256.lowercased(),
            classifierSha256: configuration.classifies ? manifest.classifier?.sha256.lowercased() : nil)
        modelLayout = bundle.colorLayout
        domain = InputDomain(manifest)
        fullyConvolutional = manifest.purifier.fullyConvolutional
        sizeMultiple = manifest.purifier.sizeMultiple
        trainedSize = (manifest.input.trainedSize[1], manifest.input.trainedSize[0])
        resizeTarget = manifest.classifier.map { ($0.inputSize[1], $0.inputSize[0]) } ?? trainedSize
        if configuration.classifies, let classifier = manifest.classifier {
            classifierSize = (classifier.inputSize[1], classifier.inputSize[0])
            labels = classifier.labels
            classifierOutputsLogits = classifier.output == "logits"
            if classifier.mean != nil || classifier.std != nil {
                let channels = manifest.input.channels
                let mean = classifier.mean ?? Array(repeating: 0, count: channels)
                let std = classifier.std ?? Array(repeating: 1, count: channels)
                classifierNormalization = zip(mean, std).map { (Float($0), Float(1 / $1)) }
            } else {
                classifierNormalization = nil
            }
        } else {
            classifierSize = nil
            labels = []
            classifierOutputsLogits = false
            classifierNormalization = nil
        }
        decoder = ImageDecoder(limits: configuration.decodeLimits)
        encoder = ImageEncoder(options: configuration.encodeOptions)
    }

    // MARK: Reading and decoding

    /// Reads and hashes the input and parses its header; under the reject policy, an image
    /// whose size lies outside the domain fails here, before it is decoded.
    func inspect(_ request: PurificationRequest) -> Inspection {
        let started = clock.now
        let contents = request.contents
        var request = request
        request.contents = nil
        var timings = PurificationReport.Timings()
        var input = PurificationReport.Input(name: request.name, path: request.inputPath)
        func failed(_ code: String, _ stage: PurificationReport.Stage, _ message: String,
                    domain: PurificationReport.Domain? = nil) -> Inspection {
            timings.total = milliseconds(started.duration(to: clock.now))
            return .failed(FailedImage(request: request, input: input, batch: nil, domain: domain,
                                       failure: .init(code: code, stage: stage, message: message),
                                       timings: timings, started: started))
        }
        let bytes: [UInt8]
        do {
            if let contents {
                guard contents.count <= configuration.decodeLimits.maxBytes else {
                    timings.read = milliseconds(started.duration(to: clock.now))
                    return failed(ImageError.Code.tooLarge.name, .read,
                                  "\(contents.count) bytes exceed the limit of \(configuration.decodeLimits.maxBytes) bytes")
                }
                bytes = contents
            } else {
                bytes = try decoder.readFile(atPath: request.inputPath, followsSymlinks: configuration.followsSymlinks)
            }
        } catch {
            timings.read = milliseconds(started.duration(to: clock.now))
            return failed(error.code.name, .read, error.message)
        }
        input.bytes = bytes.count
        input.sha256 = SHA256.hash(data: bytes).hexString
        let read = clock.now
        timings.read = milliseconds(started.duration(to: read))
        let header: ImageHeader
        do {
            header = try decoder.readHeader(bytes)
        } catch {
            timings.decode = milliseconds(read.duration(to: clock.now))
            return failed(error.code.name, .decode, error.message)
        }
        input.format = header.format.rawValue
        input.width = header.width
        input.height = header.height
        input.channels = header.layout.reportName
        if configuration.inputPolicy == .reject, !domain.contains(width: header.width, height: header.height) {
            let layout = header.layout.withoutAlpha == .gray ? ChannelLayout.gray : .rgb
            if case .failure(let violation) = domain.plan(width: header.width, height: header.height, layout: layout,
                                                          policy: .reject, resizeTarget: resizeTarget) {
                timings.decode = milliseconds(read.duration(to: clock.now))
                return failed(PurificationReport.Failure.outOfDomain, .decode, violation.message,
                              domain: rejectedDomain(violation))
            }
        }
        return .inspected(InspectedImage(request: request, input: input, bytes: bytes, header: header,
                                         timings: timings, started: started, read: read))
    }

    /// Decodes an inspected input, plans its purification against the domain and the input
    /// policy, and converts it for the purifier and the classifier.
    func decode(_ inspected: InspectedImage, id: UInt64, reservedPixels: Int) -> Preparation {
        var timings = inspected.timings
        let read = inspected.read
        func failed(_ code: String, _ message: String, domain: PurificationReport.Domain? = nil) -> Preparation {
            timings.decode = milliseconds(read.duration(to: clock.now))
            timings.total = milliseconds(inspected.started.duration(to: clock.now))
            return .failed(FailedImage(request: inspected.request, input: inspected.input, batch: nil, domain: domain,
                                       failure: .init(code: code, stage: .decode, message: message),
                                       timings: timings, started: inspected.started, reservedPixels: reservedPixels))
        }
        let image: PixelImage
        do {
            image = try decoder.decode(inspected.bytes)
        } catch {
            return failed(error.code.name, error.message)
        }
        var (color, alpha) = image.splittingAlpha()
        if color.layout == .rgb && modelLayout == .gray && color.isGrayStoredAsRGB {
            color = color.converted(to: .gray)
        }
        let plan: PurificationPlan
        switch domain.plan(width: color.width, height: color.height, layout: color.layout,
                           policy: configuration.inputPolicy, resizeTarget: resizeTarget) {
        case .success(let planned):
            plan = planned
        case .failure(let violation):
            return failed(PurificationReport.Failure.outOfDomain, violation.message, domain: rejectedDomain(violation))
        }
        if plan.action == .resized {
            color = resized(color, to: plan.size)
            alpha = alpha.map { resized($0, to: plan.size) }
        }
        let work = plan.perChannel || color.layout == modelLayout ? color : color.converted(to: modelLayout)
        let resizesToFit = !fullyConvolutional && plan.action != .tiled
        let overlap = configuration.tileSide / 8
        let grid = fullyConvolutional
            ? TileGrid.fullyConvolutional(width: work.width, height: work.height, side: configuration.tileSide,
                                          overlap: overlap, multiple: sizeMultiple)
            : TileGrid.fixedSize(width: work.width, height: work.height, tile: trainedSize, overlap: overlap)
        let classifierInput = classifierSize.map { size in
            resized(work.layout == modelLayout ? work : work.converted(to: modelLayout), to: size)
        }
        let decoded = clock.now
        timings.decode = milliseconds(read.duration(to: decoded))
        return .decoded(DecodedImage(
            id: id, request: inspected.request, input: inspected.input, format: inspected.header.format,
            color: color, alpha: alpha, work: work, plan: plan, grid: grid, resizesToFit: resizesToFit,
            classifierInput: classifierInput, reservedPixels: reservedPixels, timings: timings,
            started: inspected.started, decoded: decoded))
    }

    private func rejectedDomain(_ violation: DomainViolation) -> PurificationReport.Domain {
        PurificationReport.Domain(policy: InputPolicy.reject.rawValue, inDomain: false, applied: "rejected",
                                  perChannel: false, tiles: nil, width: nil, height: nil, outsideBecause: violation.message)
    }

    // MARK: Tiles and batches

    /// The purifier inputs for tiles `range` of an image (counted over its planes, plane-major).
    func tiles(of image: DecodedImage, _ range: Range<Int>) -> [PurifierTile] {
        let perPlane = image.tileCount / image.planes
        return range.map { position in
            let plane = position / perPlane
            let index = position % perPlane
            var source = image.work
            if image.resizesToFit {
                if image.plan.perChannel { source = source.channel(plane) }
                return PurifierTile(image: image, plane: plane, index: index, pixels: resized(source, to: trainedSize))
            }
            let grid = image.grid
            let origin = grid.origin(of: index)
            source = source.cropped(x: origin.x, y: origin.y, width: grid.x.cropLength, height: grid.y.cropLength)
            if image.plan.perChannel { source = source.channel(plane) }
            return PurifierTile(image: image, plane: plane, index: index, pixels: source.reflectPadded(grid.padding))
        }
    }

    /// The purifier's input for a batch: the tiles' planar floats one after the other.
    func purifierTensor(for batch: PurifierBatch) -> Tensor {
        batchTensor(batch.tiles.map(\.pixels), width: batch.modelWidth, height: batch.modelHeight, normalization: nil)
    }

    /// NCHW floats of images of one size and layout (the bundle's): in [0, 1], or normalised
    /// as `(x - mean) * scale` per channel.
    private func batchTensor(_ images: [PixelImage], width: Int, height: Int,
                             normalization: [(mean: Float, scale: Float)]?) -> Tensor {
        let perImage = modelLayout.channelCount * width * height
        let plane = width * height
        let values = [Float](unsafeUninitializedCapacity: perImage * images.count) { buffer, initialized in
            for (index, image) in images.enumerated() {
                let slice = UnsafeMutableBufferPointer(rebasing: buffer[(index * perImage)..<((index + 1) * perImage)])
                image.writePlanar(into: slice)
                guard let normalization else { continue }
                for (channel, (mean, scale)) in normalization.enumerated() {
                    for offset in (channel * plane)..<((channel + 1) * plane) {
                        slice[offset] = (slice[offset] - mean) * scale
                    }
                }
            }
            initialized = perImage * images.count
        }
        return Tensor(shape: [images.count, modelLayout.channelCount, height, width], values: values)
    }

    /// Puts the purifier's output for a batch back into images: a one-tile image directly,
    /// cropped (or resized) back; the tiles of a larger one into its entry of `assemblies`,
    /// until the last arrives. Returns the images completed by this batch, in the input's color
    /// layout with their change measured, and the classifier's input for them (every original,
    /// then every purified image); and the images whose batch failed, each once.
    func split(_ result: PurifiedBatch, assemblies: TileAssemblies) -> (images: [PurifiedImage], classifierInput: Tensor?, failed: [FailedImage]) {
        let batch = result.batch
        let batchDescription = PurificationReport.Batch(size: batch.tiles.count, modelWidth: batch.modelWidth,
                                                        modelHeight: batch.modelHeight)
        let started = clock.now
        var images: [PurifiedImage] = []
        var failed: [FailedImage] = []
        switch result.output {
        case .failure(let failure):
            for tile in batch.tiles where assemblies.abandon(tile) {
                failed.append(tile.image.failing(message: failure.message, batch: batchDescription))
            }
        case .success(let output):
            let planes = modelLayout.channelCount
            let perTile = planes * batch.modelWidth * batch.modelHeight
            for (position, tile) in batch.tiles.enumerated() {
                let source = tile.image
                let restored: PixelImage
                var firstDequeued = batch.dequeued
                if source.tileCount == 1 {
                    let model = output.values.withUnsafeBufferPointer { values in
                        PixelImage(planar: UnsafeBufferPointer(rebasing: values[(position * perTile)..<((position + 1) * perTile)]),
                                   width: batch.modelWidth, height: batch.modelHeight, layout: modelLayout)
                    }
                    restored = source.resizesToFit
                        ? resized(model, to: (source.work.width, source.work.height))
                        : model.cropped(removing: source.grid.padding)
                } else {
                    let completed = output.values.withUnsafeBufferPointer { values in
                        assemblies.add(UnsafeBufferPointer(rebasing: values[(position * perTile)..<((position + 1) * perTile)]),
                                       planes: planes, of: tile, dequeued: batch.dequeued,
                                       resize: source.resizesToFit ? { resized($0, to: (source.work.width, source.work.height)) } : nil)
                    }
                    guard let completed else { continue }
                    restored = completed.image
                    firstDequeued = completed.firstDequeued
                }
                let purified = restored.layout == source.color.layout ? restored : restored.converted(to: source.color.layout)
                var image = PurifiedImage(
                    source: source, purified: purified, change: change(from: source.color, to: purified),
                    batch: batchDescription,
                    classifierInput: classifierSize.map { resized(restored.layout == modelLayout ? restored : restored.converted(to: modelLayout), to: $0) })
                image.source.timings.batchWait = milliseconds(source.decoded.duration(to: firstDequeued))
                image.source.timings.purify = milliseconds(firstDequeued.duration(to: result.finished) + started.duration(to: clock.now))
                images.append(image)
            }
        }
        guard let classifierSize, !images.isEmpty else { return (images, nil, failed) }
        let inputs = images.compactMap(\.source.classifierInput) + images.compactMap(\.classifierInput)
        return (images, batchTensor(inputs, width: classifierSize.width, height: classifierSize.height,
                                    normalization: classifierNormalization), failed)
    }

    /// The classifier's verdicts from its output for a batch made by ``split(_:)``;
    /// `nil` when the output is not a finite row per image.
    func classifications(from output: Tensor, count: Int) -> [PurificationReport.Classification]? {
        let classes = labels.count
        guard output.shape == [2 * count, classes], output.values.allSatisfy(\.isFinite) else { return nil }
        func probabilities(_ row: Int) -> [Double] {
            let values = output.values[(row * classes)..<((row + 1) * classes)].map(Double.init)
            guard classifierOutputsLogits else { return values }
            let largest = values.max() ?? 0
            let exponentials = values.map { exp($0 - largest) }
            let sum = exponentials.reduce(0, +)
            return exponentials.map { $0 / sum }
        }
        return (0..<count).map { index in
            let input = probabilities(index)
            let purified = probabilities(count + index)
            let inputTop = topClasses(input)
            let purifiedTop = topClasses(purified)
            let agree = inputTop[0].index == purifiedTop[0].index
            let drop = input[inputTop[0].index] - purified[inputTop[0].index]
            return PurificationReport.Classification(
                input: inputTop, purified: purifiedTop, agree: agree, top1ProbabilityDrop: drop,
                probabilityDropThreshold: configuration.probabilityDropThreshold,
                suspectedAdversarial: !agree || drop > configuration.probabilityDropThreshold)
        }
    }

    private func topClasses(_ probabilities: [Double]) -> [PurificationReport.ClassScore] {
        // Ties go to the lower index, as argmax does.
        let order = probabilities.indices.sorted { probabilities[$0] > probabilities[$1] || (probabilities[$0] == probabilities[$1] && $0 < $1) }
        return order.prefix(configuration.topK).map {
            PurificationReport.ClassScore(label: labels[$0], index: $0, probability: probabilities[$0])
        }
    }

    // MARK: Committing

    /// Encodes and commits a purified image and its report, or the report of a failure.
    func commit(_ item: FinishedImage, to committer: any ResultCommitter) -> PurificationResult {
        switch item {
        case .failed(let failed):
            return commitFailure(failed, to: committer)
        case .purified(let image, let classification):
            var timings = image.source.timings
            let encodeStart = clock.now
            var output = image.source.alpha.map { image.purified.addingAlpha($0) } ?? image.purified
            output.sourceFormat = image.source.format
            let format = configuration.outputFormat ?? image.source.format
            let encoded: [UInt8]
            do {
                encoded = try encoder.encode(output, as: format)
            } catch {
                timings.encode = milliseconds(encodeStart.duration(to: clock.now))
                return commitFailure(image.failing(.init(code: error.code.name, stage: .encode, message: error.message), timings), to: committer)
            }
            let writeStart = clock.now
            timings.encode = milliseconds(encodeStart.duration(to: writeStart))
            let path: String
            do {
                path = try committer.commitImage(encoded, format: format, for: image.source.request)
            } catch {
                timings.write = milliseconds(writeStart.duration(to: clock.now))
                return commitFailure(image.failing(.init(code: "io", stage: .commit, message: "\(error)"), timings), to: committer)
            }
            let end = clock.now
            timings.write = milliseconds(writeStart.duration(to: end))
            timings.total = milliseconds(image.source.started.duration(to: end))
            let report = PurificationReport(
                schemaVersion: PurificationReport.currentSchemaVersion, status: .purified, input: image.source.input,
                bundle: bundleDescription,
                output: .init(path: path, format: format.rawValue, bytes: encoded.count, width: output.width,
                              height: output.height,
                              jpegQuality: format == .jpeg ? configuration.encodeOptions.jpegQuality : nil),
                batch: image.batch, domain: image.source.domainReport(),
                timingsMs: timings, change: image.change, classification: classification, error: nil)
            return commitReport(report, for: image.source.request, to: committer)
        }
    }

    private func commitFailure(_ failed: FailedImage, to committer: any ResultCommitter) -> PurificationResult {
        var timings = failed.timings
        timings.total = milliseconds(failed.started.duration(to: clock.now))
        let report = PurificationReport(
            schemaVersion: PurificationReport.currentSchemaVersion, status: .failed, input: failed.input,
            bundle: bundleDescription, output: nil, batch: failed.batch, domain: failed.domain, timingsMs: timings, change: nil,
            classification: nil, error: failed.failure)
        return commitReport(report, for: failed.request, to: committer)
    }

    private func commitReport(_ report: PurificationReport, for request: PurificationRequest,
                              to committer: any ResultCommitter) -> PurificationResult {
        do {
            let json = try report.encoded()
            let path = try committer.commitReport(json, report: report, for: request)
            return PurificationResult(request: request, report: report, reportPath: path)
        } catch {
            var unwritten = report
            unwritten.status = .failed
            unwritten.error = .init(code: "io", stage: .commit, message: "cannot commit the report: \(error)")
            return PurificationResult(request: request, report: unwritten, reportPath: nil)
        }
    }

    // MARK: Helpers

    private func resized(_ image: PixelImage, to size: (width: Int, height: Int)) -> PixelImage {
        image.width == size.width && image.height == size.height ? image : image.resized(width: size.width, height: size.height)
    }

    /// L2, L∞ and PSNR between two images of one size and layout, on [0, 1] samples.
    private func change(from original: PixelImage, to purified: PixelImage) -> PurificationReport.Change {
        var sumOfSquares = 0.0
        var largest = 0
        original.pixels.withUnsafeBufferPointer { before in
            purified.pixels.withUnsafeBufferPointer { after in
                for index in before.indices {
                    let difference = Int(after[index]) - Int(before[index])
                    sumOfSquares += Double(difference * difference)
                    largest = max(largest, abs(difference))
                }
            }
        }
        let samples = original.pixels.count
        let meanSquare = sumOfSquares / (255 * 255) / Double(samples)
        return PurificationReport.Change(l2: sumOfSquares.squareRoot() / 255, linf: Double(largest) / 255,
                                         psnrDb: meanSquare > 0 ? 10 * log10(1 / meanSquare) : nil, samples: samples)
    }
}

extension DecodedImage {
    /// This image as a failure of the engine on a batch of its tiles.
    func failing(message: String, batch: PurificationReport.Batch) -> FailedImage {
        FailedImage(request: request, input: input, batch: batch, domain: nil,
                    failure: .init(code: "inference", stage: .purify, message: message),
                    timings: timings, started: started, reservedPixels: reservedPixels)
    }
}

extension PurifiedImage {
    /// This image as a failure at a later stage.
    func failing(_ failure: PurificationReport.Failure, _ timings: PurificationReport.Timings) -> FailedImage {
        FailedImage(request: source.request, input: source.input, batch: batch,
                    domain: source.domainReport(), failure: failure,
                    timings: timings, started: source.started, reservedPixels: source.reservedPixels)
    }
}

extension PixelImage {
    /// Channel `index` of the image, as a gray image.
    func channel(_ index: Int) -> PixelImage {
        let channels = layout.channelCount
        if channels == 1 { return self }
        var plane = [UInt8](repeating: 0, count: width * height)
        pixels.withUnsafeBufferPointer { samples in
            var source = index
            for offset in plane.indices {
                plane[offset] = samples[source]
                source &+= channels
            }
        }
        return PixelImage(width: width, height: height, layout: .gray, pixels: plane)
    }
}

extension ChannelLayout {
    /// The layout's name in reports: `gray`, `gray_alpha`, `rgb` or `rgba`.
    var reportName: String {
        switch self {
        case .gray: "gray"
        case .grayAlpha: "gray_alpha"
        case .rgb: "rgb"
        case .rgba: "rgba"
        }
    }
}

/// A duration in milliseconds.
func milliseconds(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return Double(seconds) * 1e3 + Double(attoseconds) * 1e-15
}
