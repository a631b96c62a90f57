import PurifySystem
import PurifyEngine
import PurifyImage
public import ServiceLifecycle
import Synchronization

/// Purifies images: decode → batch → purify → classify → encode → commit, each stage joined
/// to the next by a bounded queue, so that a slow stage holds the ones before it back and
/// nothing buffers without bound.
///
/// Feed it with ``submit(_:)`` (which suspends while the pipeline is full) and end the input
/// with ``finishInput()``; take ``results`` as they are committed; keep ``run()`` running
/// meanwhile (it returns once the input is finished and drained). Model runs happen on the
/// engine's compute thread; file I/O and per-image work on the pipeline's own threads; never
/// on Swift's cooperative pool. ``process(_:onResult:)`` does all of that for a list of files.
///
/// Each image is first held against the bundle's domain (``InputDomain``) and the input
/// policy: rejected, resized to the classifier's input size, or purified at its own size.
/// Images are purified reflect-padded (centered) to the bundle's multiple and cropped back, or
/// resized to the trained size and back for a fixed-size purifier; an image larger than a
/// tile is purified in overlapping tiles, blended back together. Images are converted to the
/// bundle's channels (gray → RGB) and back, a color image through a gray purifier channel by
/// channel; alpha is set aside and put back. Inputs of one padded shape share batches, as
/// many as fit the batch's pixel budget; an image waits before decoding until its pixels fit
/// the pipeline's budget of pixels in flight.
///
/// It is a `Service`: in a `ServiceGroup`, a graceful shutdown finishes the input, so that
/// what was submitted is committed before ``run()`` returns.
public final class Pipeline: Service {
    /// The models.
    public let bundle: ModelBundle
    /// Batching, encoding and classification settings.
    public let configuration: PipelineConfiguration
    private let committer: any ResultCommitter
    private let processor: ImageProcessor
    private let requests: BoundedChannel<PurificationRequest>
    private let batches: BoundedChannel<[PurifierTile]>
    private let purified: BoundedChannel<PurifiedBatch>
    private let finished: BoundedChannel<FinishedImage>
    private let committed: BoundedChannel<PurificationResult>
    private let started = Locked(false)
    private let budget: PixelBudget
    private let imageIDs = Atomic<UInt64>(0)

    /// A pipeline over `bundle` that hands its results to `committer`.
    ///
    /// - Throws: ``PipelineError/invalidConfiguration(_:)`` for a setting out of range, or
    ///   classification asked of a bundle without a classifier.
    public init(bundle: ModelBundle, configuration: PipelineConfiguration, committer: any ResultCommitter) throws(PipelineError) {
        func invalid(_ message: String) -> PipelineError { .invalidConfiguration(message) }
        guard configuration.maxBatchSize >= 1 else { throw invalid("the batch size must be at least 1") }
        guard configuration.maxBatchDelay >= .zero else { throw invalid("the batch delay must not be negative") }
        guard configuration.queueCapacity >= 1 else { throw invalid("the queue capacity must be at least 1") }
        guard configuration.ioThreadCount >= 1 else { throw invalid("the I/O thread count must be at least 1") }
        guard configuration.topK >= 1 else { throw invalid("top-k must be at least 1") }
        guard configuration.tileSide >= bundle.manifest.purifier.sizeMultiple, configuration.tileSide >= 8 else {
            throw invalid("the tile side must be at least 8 and at least the bundle's size multiple (\(bundle.manifest.purifier.sizeMultiple)), not \(configuration.tileSide)")
        }
        guard configuration.maxBatchPixels >= 1 else { throw invalid("the batch pixel budget must be at least 1") }
        guard configuration.maxPixelsInFlight >= 1 else { throw invalid("the pixels in flight must be at least 1") }
        guard (1...100).contains(configuration.encodeOptions.jpegQuality) else {
            throw invalid("the JPEG quality must be in 1...100, not \(configuration.encodeOptions.jpegQuality)")
        }
        if configuration.classifies && bundle.classifier == nil {
            throw invalid("bundle '\(bundle.manifest.name)' has no classifier")
        }
        self.bundle = bundle
        var configuration = configuration
        let multiple = bundle.manifest.purifier.sizeMultiple
        configuration.tileSide -= configuration.tileSide % multiple
        self.configuration = configuration
        budget = PixelBudget(capacity: configuration.maxPixelsInFlight)
        self.committer = committer
        processor = ImageProcessor(bundle: bundle, configuration: configuration)
        let capacity = configuration.queueCapacity
        let batchCapacity = max(1, capacity / configuration.maxBatchSize)
        requests = BoundedChannel(capacity: capacity)
        batches = BoundedChannel(capacity: batchCapacity)
        purified = BoundedChannel(capacity: batchCapacity)
        finished = BoundedChannel(capacity: capacity)
        committed = BoundedChannel(capacity: capacity)
    }

    /// Queues a file, suspending while the pipeline is full.
    ///
    /// - Throws: ``PipelineError/closed`` after ``finishInput()`` or once ``run()`` has ended;
    ///   `CancellationError` if the calling task is cancelled while waiting.
    public func submit(_ request: PurificationRequest) async throws {
        try await requests.send(request)
    }

    /// Ends the input: ``run()`` returns once everything submitted has been committed.
    public func finishInput() {
        requests.finish()
    }

    /// Results in the order they are committed, one per submitted request; the sequence ends
    /// when ``run()`` returns. Consume it while the pipeline runs: an unread result holds the
    /// pipeline back once `queueCapacity` of them wait.
    public var results: PipelineResults { PipelineResults(channel: committed) }

    /// Runs the stages until the input is finished and drained, or the task is cancelled
    /// (then in-flight items are abandoned, uncommitted). Call it once.
    public func run() async throws(PipelineError) {
        let alreadyStarted = started.withLock { started in
            defer { started = true }
            return started
        }
        guard !alreadyStarted else { throw .alreadyRunning }
        // Commits wait on fsync most of their time: a pool of their own keeps them from holding
        // up decoding, which would send out batches before they fill.
        let pool: ThreadPool
        do {
            pool = try ThreadPool(threadCount: configuration.ioThreadCount, name: "purify-io")
        } catch {
            throw .threadsUnavailable(error)
        }
        let commitPool: ThreadPool
        do {
            commitPool = try ThreadPool(threadCount: Self.committerCount(configuration), name: "purify-commit")
        } catch {
            pool.shutdown()
            throw .threadsUnavailable(error)
        }
        let batcher = DynamicBatcher(output: batches, maxBatchSize: configuration.maxBatchSize,
                                     maxBatchPixels: configuration.maxBatchPixels, maxDelay: configuration.maxBatchDelay, maxPending: configuration.queueCapacity)
        await withGracefulShutdownHandler {
            await runStages(pool: pool, commitPool: commitPool, batcher: batcher)
        } onGracefulShutdown: { [requests] in
            requests.finish()
        }
        // After a cancellation, release anyone still waiting on a queue (a no-op otherwise).
        requests.finish()
        batches.finish()
        purified.finish()
        finished.finish()
        committed.finish()
        pool.shutdown()
        commitPool.shutdown()
    }

    /// Commits at once: each spends most of its time waiting on fsync, so more of them than I/O
    /// threads keep the disk busy without taking CPU from decoding.
    static func committerCount(_ configuration: PipelineConfiguration) -> Int {
        4 * configuration.ioThreadCount
    }

    /// Each stage in a child task; returns when the last one ends.
    private func runStages(pool: ThreadPool, commitPool: ThreadPool, batcher: DynamicBatcher) async {
        let workers = configuration.ioThreadCount
        await withDiscardingTaskGroup { group in
            group.addTask {
                await withDiscardingTaskGroup { decoders in
                    for _ in 0..<workers { decoders.addTask { await self.decode(on: pool, into: batcher) } }
                }
                await batcher.finish()
            }
            group.addTask {
                await self.purify(on: pool)
                self.purified.finish()
            }
            group.addTask {
                await self.classify(on: pool)
                self.finished.finish()
            }
            group.addTask {
                await withDiscardingTaskGroup { committers in
                    for _ in 0..<Self.committerCount(self.configuration) { committers.addTask { await self.commit(on: commitPool) } }
                }
                self.committed.finish()
            }
        }
    }

    // MARK: Stages

    private func decode(on pool: ThreadPool, into batcher: DynamicBatcher) async {
        let processor = processor
        let chunk = configuration.maxBatchSize
        while let request = await requests.next() {
            let inspection = await pool.run { processor.inspect(request) }
            let prepared: Preparation
            switch inspection {
            case .failed(let failure):
                prepared = .failed(failure)
            case .inspected(let inspected):
                guard let reserved = await budget.reserve(inspected.pixelCount) else { return }  // cancelled
                let id = imageIDs.wrappingAdd(1, ordering: .relaxed).newValue
                prepared = await pool.run { processor.decode(inspected, id: id, reservedPixels: reserved) }
            }
            do {
                switch prepared {
                case .decoded(let image):
                    // Tiles are cut a batch's worth at a time, so that a large image is never
                    // held twice over.
                    var next = 0
                    while next < image.tileCount {
                        let range = next..<min(next + chunk, image.tileCount)
                        let tiles = await pool.run { processor.tiles(of: image, range) }
                        for tile in tiles { try await batcher.add(tile) }
                        next = range.upperBound
                    }
                case .failed(let failure):
                    try await finished.send(.failed(failure))
                }
            } catch {
                return  // the pipeline is stopping
            }
        }
    }

    private func purify(on pool: ThreadPool) async {
        let processor = processor
        let clock = ContinuousClock()
        while let tiles = await batches.next() {
            let batch = PurifierBatch(tiles: tiles, dequeued: clock.now)
            let tensor = await pool.run { processor.purifierTensor(for: batch) }
            let output: Result<Tensor, InferenceFailure>
            do {
                output = .success(try await bundle.purifier.run(tensor))
            } catch {
                output = .failure(InferenceFailure(message: "\(error)"))
            }
            guard (try? await purified.send(PurifiedBatch(batch: batch, output: output, finished: clock.now))) != nil else { return }
        }
    }

    private func classify(on pool: ThreadPool) async {
        let processor = processor
        let clock = ContinuousClock()
        let assemblies = TileAssemblies()
        while let batch = await purified.next() {
            var (images, classifierInput, failed) = await pool.run { processor.split(batch, assemblies: assemblies) }
            guard await send(failed) else { return }
            var verdicts: [PurificationReport.Classification?] = Array(repeating: nil, count: images.count)
            if let classifierInput, let classifier = bundle.classifier {
                let start = clock.now
                let read: [PurificationReport.Classification]?
                let failure: String
                do {
                    let output = try await classifier.run(classifierInput)
                    let count = images.count
                    read = await pool.run { processor.classifications(from: output, count: count) }
                    failure = "the classifier returned non-finite scores or shape \(output.shape)"
                } catch {
                    read = nil
                    failure = "\(error)"
                }
                guard let read else {
                    let failures = images.map {
                        $0.failing(.init(code: "inference", stage: .classify, message: failure), $0.source.timings)
                    }
                    guard await send(failures) else { return }
                    continue
                }
                let elapsed = milliseconds(start.duration(to: clock.now))
                for index in images.indices { images[index].source.timings.classify = elapsed }
                verdicts = read
            }
            for (image, verdict) in zip(images, verdicts) {
                guard (try? await finished.send(.purified(image, verdict))) != nil else { return }
            }
        }
    }

    private func commit(on pool: ThreadPool) async {
        let processor = processor
        let committer = committer
        while let item = await finished.next() {
            let result = await pool.run { processor.commit(item, to: committer) }
            budget.release(item.reservedPixels)
            guard (try? await committed.send(result)) != nil else { return }
        }
    }

    /// Sends failures on to the commit stage; false when the pipeline is stopping.
    private func send(_ failures: [FailedImage]) async -> Bool {
        for failure in failures {
            guard (try? await finished.send(.failed(failure))) != nil else { return false }
        }
        return true
    }
}

/// A pipeline's results as they are committed; see ``Pipeline/results``.
public struct PipelineResults: AsyncSequence, Sendable {
    public typealias Element = PurificationResult
    public typealias Failure = Never

    fileprivate let channel: BoundedChannel<PurificationResult>

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(channel: channel)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        fileprivate let channel: BoundedChannel<PurificationResult>

        public mutating func next() async -> PurificationResult? {
            await channel.next()
        }
    }
}

extension Pipeline {
    /// Runs the pipeline over `requests` and calls `onResult` with each result as it is
    /// committed; returns when all are. Use it instead of ``run()``, on a fresh pipeline.
    public func process(_ requests: [PurificationRequest],
                        onResult: (PurificationResult) -> Void) async throws(PipelineError) {
        let outcome: Result<Void, PipelineError> = await withTaskGroup(of: Result<Void, PipelineError>.self) { group in
            group.addTask {
                do throws(PipelineError) {
                    try await self.run()
                    return .success(())
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                for request in requests {
                    do { try await self.submit(request) } catch { break }  // run() ended early
                }
                self.finishInput()
                return .success(())
            }
            for await result in results { onResult(result) }
            var outcome: Result<Void, PipelineError> = .success(())
            for await child in group { if case .failure = child { outcome = child } }
            return outcome
        }
        try outcome.get()
    }
}
