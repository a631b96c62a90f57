import PurifyImage

/// Groups purifier inputs (images or tiles) into batches of one shape.
///
/// A group leaves as a batch when it holds `maxBatchSize` inputs, or as many as fit in
/// `maxBatchPixels` (at least one), when its first image has
/// waited `maxDelay`, when `maxPending` images wait in all groups together (the oldest group
/// leaves), or at ``finish()``. ``add(_:)`` suspends while the batch it completes waits for
/// room in `output`, which carries the purifier's backpressure back to the decoders.
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
    private var pending = 0
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
        } else if pending >= maxPending, let oldest = groups.min(by: { $0.value.opened < $1.value.opened })?.key {
            try await emit(oldest)
        }
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
        pending -= group.tiles.count
        sending += 1
        defer {
            sending -= 1
            if sending == 0 {
                for waiter in sendsDrained { waiter.resume() }
                sendsDrained.removeAll()
            }
        }
        try await output.send(group.tiles)
    }
}
