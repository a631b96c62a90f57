/// Where each activation buffer of a plan lives in one arena: buffers alive at the same step never
/// overlap, and the space of a buffer whose last reader has run is reused by later ones.
///
/// Greedy interval packing: largest buffer first, each at the lowest aligned offset that clears
/// every already placed buffer whose lifetime overlaps its own.
struct ArenaLayout: Equatable {
    /// One buffer: its size and the first and last plan steps that touch it.
    struct Buffer: Equatable {
        var bytes: Int
        var firstStep: Int
        var lastStep: Int

        func overlapsInTime(_ other: Buffer) -> Bool {
            firstStep <= other.lastStep && other.firstStep <= lastStep
        }
    }

    /// Each buffer's byte offset in the arena, in the order given.
    let offsets: [Int]
    /// The arena's size: the end of the highest placed buffer, rounded up to the alignment.
    let bytes: Int

    init(placing buffers: [Buffer], alignment: Int = 64) {
        precondition(alignment > 0 && alignment & (alignment - 1) == 0, "alignment must be a power of two")
        func rounded(_ bytes: Int) -> Int { (bytes + alignment - 1) / alignment * alignment }
        var offsets = [Int](repeating: 0, count: buffers.count)
        var placed: [Int] = []
        var total = 0
        for index in buffers.indices.sorted(by: { buffers[$0].bytes > buffers[$1].bytes }) {
            let size = rounded(buffers[index].bytes)
            let occupied = placed.filter { buffers[$0].overlapsInTime(buffers[index]) }
                .map { (start: offsets[$0], end: offsets[$0] + rounded(buffers[$0].bytes)) }
                .sorted { $0.start < $1.start }
            var offset = 0
            for range in occupied where range.start < offset + size && offset < range.end {
                offset = max(offset, range.end)
            }
            offsets[index] = offset
            total = max(total, offset + size)
            placed.append(index)
        }
        self.offsets = offsets
        self.bytes = total
    }
}
