import Crypto
import Foundation
import PurifyEngine
import PurifyImage

/// An image decoded and converted to the purifier's input, waiting for a batch.
struct DecodedImage: Sendable {
    var request: PurificationRequest
    var input: PurificationReport.Input
    var format: ImageFormat
    /// The input's color channels (`.gray` or `.rgb`), as decoded.
    var color: PixelImage
    /// The input's alpha channel, put back on the output.
    var alpha: PixelImage?
    /// The purifier's input: the image in the bundle's channels, padded (or resized). Kept as
    /// 8-bit pixels until its batch is assembled, a quarter of the memory of floats.
    var modelInput: PixelImage
    var modelWidth: Int
    var modelHeight: Int
    /// The reflection padding inside `modelInput` (zero when resized instead).
    var padding: Padding
    /// The input as the classifier takes it; `nil` when not classifying.
    var classifierInput: PixelImage?
    var timings: PurificationReport.Timings
    var started: ContinuousClock.Instant
    var decoded: ContinuousClock.Instant
}

/// A batch taken by the purifier stage.
struct PurifierBatch: Sendable {
    var images: [DecodedImage]
    /// When the purifier stage took it: the end of its images' batch wait.
    var dequeued: ContinuousClock.Instant
    var modelWidth: Int { images[0].modelWidth }
    var modelHeight: Int { images[0].modelHeight }
}

/// A batch the purifier has run on, with its output.
struct PurifiedBatch: Sendable {
    var batch: PurifierBatch
    var output: Tensor
    var purifyTime: Duration
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
    var failure: PurificationReport.Failure
    var timings: PurificationReport.Timings
    var started: ContinuousClock.Instant
}

/// What came of reading and decoding an input.
enum Preparation: Sendable {
    case decoded(DecodedImage)
    case failed(FailedImage)
}

/// What the commit stage receives.
enum FinishedImage: Sendable {
    case purified(PurifiedImage, PurificationReport.Classification?)
    case failed(FailedImage)
}

/// The per-image work of the pipeline, all of it synchronous and run on the pipeline's I/O
/// threads: decoding and conversion, batch tensors, cropping, measuring, classification
/// read-out, encoding and committing.
struct ImageProcessor: Sendable {
    let configuration: PipelineConfiguration
    let bundleDescription: PurificationReport.Bundle
    let modelLayout: ChannelLayout
    let fullyConvolutional: Bool
    let sizeMultiple: Int
    /// The fixed purifier input `(width, height)` when not fully convolutional.
    let trainedSize: (width: Int, height: Int)
    /// The classifier's input `(width, height)`, `nil` when not classifying.
    let classifierSize: (width: Int, height: Int)?
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
        fullyConvolutional = manifest.purifier.fullyConvolutional
        sizeMultiple = manifest.purifier.sizeMultiple
        trainedSize = (manifest.input.trainedSize[1], manifest.input.trainedSize[0])
        if configuration.classifies, let classifier = manifest.classifier {
            classifierSize = (classifier.inputSize[1], classifier.inputSize[0])
            labels = classifier.labels
            classifierOutputsLogits = classifier.output == "logits"
        } else {
            classifierSize = nil
            labels = []
            classifierOutputsLogits = false
        }
        decoder = ImageDecoder(limits: configuration.decodeLimits)
        encoder = ImageEncoder(options: configuration.encodeOptions)
    }

    // MARK: Decoding

    /// Reads, hashes and decodes the input, and converts it for the purifier and classifier.
    func prepare(_ request: PurificationRequest) -> Preparation {
        let started = clock.now
        var timings = PurificationReport.Timings()
        var input = PurificationReport.Input(name: request.name, path: request.inputPath)
        func failed(_ code: String, _ stage: PurificationReport.Stage, _ message: String) -> Preparation {
            timings.total = milliseconds(started.duration(to: clock.now))
            return .failed(FailedImage(request: request, input: input, batch: nil,
                                        failure: .init(code: code, stage: stage, message: message),
                                        timings: timings, started: started))
        }
        let bytes: [UInt8]
        do {
            bytes = try decoder.readFile(atPath: request.inputPath, followsSymlinks: configuration.followsSymlinks)
        } catch {
            timings.read = milliseconds(started.duration(to: clock.now))
            return failed(error.code.name, .read, error.message)
        }
        input.bytes = bytes.count
        input.sha256 = SHA256.hash(data: bytes).hexString
        let read = clock.now
        timings.read = milliseconds(started.duration(to: read))
        let header: ImageHeader
        let image: PixelImage
        do {
            header = try decoder.readHeader(bytes)
            input.format = header.format.rawValue
            input.width = header.width
            input.height = header.height
            input.channels = header.layout.reportName
            image = try decoder.decode(bytes)
        } catch {
            timings.decode = milliseconds(read.duration(to: clock.now))
            return failed(error.code.name, .decode, error.message)
        }
        let format = header.format
        let (color, alpha) = image.splittingAlpha()
        let model = color.layout == modelLayout ? color : color.converted(to: modelLayout)
        let padding: Padding
        let purifierInput: PixelImage
        if fullyConvolutional {
            padding = Padding.centered(width: model.width, height: model.height, toMultipleOf: sizeMultiple)
            purifierInput = padding.isZero ? model : model.reflectPadded(padding)
        } else {
            padding = .zero
            purifierInput = resized(model, to: trainedSize)
        }
        let classifierInput = classifierSize.map { resized(model, to: $0) }
        let decoded = clock.now
        timings.decode = milliseconds(read.duration(to: decoded))
        return .decoded(DecodedImage(
            request: request, input: input, format: format, color: color, alpha: alpha,
            modelInput: purifierInput, modelWidth: purifierInput.width,
            modelHeight: purifierInput.height, padding: padding, classifierInput: classifierInput,
            timings: timings, started: started, decoded: decoded))
    }

    // MARK: Batches

    /// The purifier's input for a batch: the images' planar floats one after the other.
    func purifierTensor(for batch: PurifierBatch) -> Tensor {
        batchTensor(batch.images.map(\.modelInput), width: batch.modelWidth, height: batch.modelHeight)
    }

    /// NCHW floats in [0, 1] of images of one size and layout (the bundle's).
    private func batchTensor(_ images: [PixelImage], width: Int, height: Int) -> Tensor {
        let perImage = modelLayout.channelCount * width * height
        let values = [Float](unsafeUninitializedCapacity: perImage * images.count) { buffer, initialized in
            for (index, image) in images.enumerated() {
                image.writePlanar(into: UnsafeMutableBufferPointer(rebasing: buffer[(index * perImage)..<((index + 1) * perImage)]))
            }
            initialized = perImage * images.count
        }
        return Tensor(shape: [images.count, modelLayout.channelCount, height, width], values: values)
    }

    /// Splits the purifier's output into images, crops (or resizes) them back, returns them to
    /// the input's color layout and measures the change. Also returns the classifier's input
    /// for the batch: every original, then every purified image.
    func split(_ result: PurifiedBatch) -> (images: [PurifiedImage], classifierInput: Tensor?) {
        let batch = result.batch
        let perImage = modelLayout.channelCount * batch.modelWidth * batch.modelHeight
        let batchDescription = PurificationReport.Batch(size: batch.images.count, modelWidth: batch.modelWidth,
                                                        modelHeight: batch.modelHeight)
        let started = clock.now
        var images: [PurifiedImage] = []
        images.reserveCapacity(batch.images.count)
        for (index, source) in batch.images.enumerated() {
            let model = result.output.values.withUnsafeBufferPointer { values in
                PixelImage(planar: UnsafeBufferPointer(rebasing: values[(index * perImage)..<((index + 1) * perImage)]),
                           width: batch.modelWidth, height: batch.modelHeight, layout: modelLayout)
            }
            let restored = fullyConvolutional
                ? (source.padding.isZero ? model : model.cropped(removing: source.padding))
                : resized(model, to: (source.color.width, source.color.height))
            let purified = restored.layout == source.color.layout ? restored : restored.converted(to: source.color.layout)
            images.append(PurifiedImage(source: source, purified: purified, change: change(from: source.color, to: purified),
                                        batch: batchDescription,
                                        classifierInput: classifierSize.map { resized(restored, to: $0) }))
        }
        let purifyTime = milliseconds(result.purifyTime + started.duration(to: clock.now))
        for index in images.indices {
            images[index].source.timings.batchWait = milliseconds(images[index].source.decoded.duration(to: batch.dequeued))
            images[index].source.timings.purify = purifyTime
        }
        guard let classifierSize else { return (images, nil) }
        let inputs = images.compactMap(\.source.classifierInput) + images.compactMap(\.classifierInput)
        return (images, batchTensor(inputs, width: classifierSize.width, height: classifierSize.height))
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
                output: .init(path: path, format: format.rawValue, bytes: encoded.count,
                              jpegQuality: format == .jpeg ? configuration.encodeOptions.jpegQuality : nil),
                batch: image.batch, timingsMs: timings, change: image.change, classification: classification, error: nil)
            return commitReport(report, for: image.source.request, to: committer)
        }
    }

    private func commitFailure(_ failed: FailedImage, to committer: any ResultCommitter) -> PurificationResult {
        var timings = failed.timings
        timings.total = milliseconds(failed.started.duration(to: clock.now))
        let report = PurificationReport(
            schemaVersion: PurificationReport.currentSchemaVersion, status: .failed, input: failed.input,
            bundle: bundleDescription, output: nil, batch: failed.batch, timingsMs: timings, change: nil,
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
    /// This image as a failure of the engine on its batch.
    func failing(stage: PurificationReport.Stage, message: String, batchSize: Int) -> FailedImage {
        FailedImage(request: request, input: input,
                    batch: .init(size: batchSize, modelWidth: modelWidth, modelHeight: modelHeight),
                    failure: .init(code: "inference", stage: stage, message: message),
                    timings: timings, started: started)
    }
}

extension PurifiedImage {
    /// This image as a failure at a later stage.
    func failing(_ failure: PurificationReport.Failure, _ timings: PurificationReport.Timings) -> FailedImage {
        FailedImage(request: source.request, input: source.input, batch: batch, failure: failure,
                    timings: timings, started: source.started)
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
