import PurifyImage

/// Groups purifier inputs (images or tiles) into batches of one shape.
///
/// A group leaves as a batch when it holds `maxBatchSize` inputs, or as many as fit in
/// `maxBatchPixels` (at least one), when its first image has
/// waited `maxDelay`, when `maxPending` images wait in all groups together (the oldest group
/// leaves), or at ``finish()``. ``add(_:)`` suspends while the batch it completes waits for
/// room in `output`, and while `maxPending` inputs wait in groups or in batches not yet taken
/// (a deadline's batch too): that carries the purifier's backpressure back to the decoders.
actor DynamicBatcher {
    private struct Shape: Hashable {
        let width: Int
        let height: Int
    }

    private struct Group {
        var tiles: [PurifierTile] = []
        /// Tells this group from a later one of the same shape, for its deadline.
        let generation: UInt64
        let opened: ContinuousClock.Instant
    }

    private let output: BoundedChannel<[PurifierTile]>
    private let maxBatchSize: Int
    private let maxBatchPixels: Int
    private let maxDelay: Duration
    private let maxPending: Int
    private var groups: [Shape: Group] = [:]
    /// Inputs in groups or in batches handed to `output` but not yet taken.
    private var pending = 0
    /// Adders waiting for `pending` to fall below `maxPending`, by waiter number.
    private var roomWaiters: [UInt64: CheckedContinuation<Void, any Error>] = [:]
    private var waiters: UInt64 = 0
    private var generations: UInt64 = 0
    /// Batches handed to `output` but not yet taken, and who waits for them at `finish`.
    private var sending = 0
    private var sendsDrained: [CheckedContinuation<Void, Never>] = []

    init(output: BoundedChannel<[PurifierTile]>, maxBatchSize: Int, maxBatchPixels: Int, maxDelay: Duration, maxPending: Int) {
        self.output = output
        self.maxBatchSize = maxBatchSize
        self.maxBatchPixels = maxBatchPixels
        self.maxDelay = maxDelay
        self.maxPending = max(1, maxPending)
    }

    /// Adds an input to the group of its shape; throws ``PipelineError/closed`` if the
    /// pipeline is stopping.
    func add(_ tile: PurifierTile) async throws {
        let shape = Shape(width: tile.pixels.width, height: tile.pixels.height)
        if groups[shape] == nil {
            generations += 1
            let generation = generations
            groups[shape] = Group(generation: generation, opened: .now)
            let delay = maxDelay
            // A deadline per group; one that finds its group gone (or replaced) does nothing.
            Task { [weak self] in
                try? await Task.sleep(for: delay)
                try? await self?.emitIfDue(shape, generation: generation)
            }
        }
        groups[shape]!.tiles.append(tile)
        pending += 1
        let fits = max(1, maxBatchPixels / max(1, shape.width * shape.height))
        if groups[shape]!.tiles.count >= min(maxBatchSize, fits) {
            try await emit(shape)
        }
        while pending >= maxPending {
            if let oldest = groups.min(by: { $0.value.opened < $1.value.opened })?.key {
                try await emit(oldest)
            } else {
                try await waitForRoom()  // every pending input is in a batch on its way out
            }
        }
    }

    private func waitForRoom() async throws {
        waiters += 1
        let waiter = waiters
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                } else {
                    roomWaiters[waiter] = continuation
                }
            }
        } onCancel: {
            Task { await self.cancelWaiter(waiter) }
        }
    }

    private func cancelWaiter(_ waiter: UInt64) {
        roomWaiters.removeValue(forKey: waiter)?.resume(throwing: CancellationError())
    }

    /// Sends every waiting group, then ends `output` once all sends are through.
    func finish() async {
        while let oldest = groups.min(by: { $0.value.opened < $1.value.opened })?.key {
            do {
                try await emit(oldest)
            } catch {
                break  // the pipeline is stopping: nobody takes batches any more
            }
        }
        while sending > 0 {
            await withCheckedContinuation { sendsDrained.append($0) }
        }
        output.finish()
    }

    private func emitIfDue(_ shape: Shape, generation: UInt64) async throws {
        guard groups[shape]?.generation == generation else { return }
        try await emit(shape)
    }

    private func emit(_ shape: Shape) async throws {
        guard let group = groups.removeValue(forKey: shape) else { return }
        sending += 1
        defer {
            // Counted until taken (or refused): a deadline's batch waiting on a full `output`
            // must hold the decoders back like any other.
            pending -= group.tiles.count
            sending -= 1
            if pending < maxPending {
                for waiter in roomWaiters.values { waiter.resume() }
                roomWaiters.removeAll()
            }
            if sending == 0 {
                for waiter in sendsDrained { waiter.resume() }
                sendsDrained.removeAll()
            }
        }
        try await output.send(group.tiles)
    }
}
