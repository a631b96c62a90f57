@testable import PurifyEngine
import Testing

@Suite struct ArenaLayoutTests {
    typealias Buffer = ArenaLayout.Buffer

    /// Buffers alive at a common step must not share a byte; offsets are aligned.
    static func checkNoLiveOverlap(_ buffers: [Buffer], _ layout: ArenaLayout, alignment: Int) {
        for (i, a) in buffers.enumerated() {
            #expect(layout.offsets[i] % alignment == 0)
            #expect(layout.offsets[i] + a.bytes <= layout.bytes)
            for (j, b) in buffers.enumerated() where j > i && a.overlapsInTime(b) && a.bytes > 0 && b.bytes > 0 {
                let disjoint = layout.offsets[i] + a.bytes <= layout.offsets[j] || layout.offsets[j] + b.bytes <= layout.offsets[i]
                #expect(disjoint, "buffers \(i) and \(j) are alive together and overlap")
            }
        }
    }

    @Test func aChainReusesTheSpaceOfBuffersWhoseLifetimeIsOver() {
        // x0 -> x1 -> x2 -> x3: each buffer is read by the next step only, so two slots suffice.
        let buffers = (0..<4).map { Buffer(bytes: 1000, firstStep: $0, lastStep: $0 + 1) }
        let layout = ArenaLayout(placing: buffers, alignment: 64)
        Self.checkNoLiveOverlap(buffers, layout, alignment: 64)
        #expect(layout.bytes == 2 * 1024)
        #expect(layout.offsets[0] == layout.offsets[2] && layout.offsets[1] == layout.offsets[3])
    }

    @Test func buffersAliveTogetherAreStackedAndTheLargestGoesFirst() {
        let buffers = [Buffer(bytes: 100, firstStep: 0, lastStep: 5), Buffer(bytes: 300, firstStep: 0, lastStep: 5),
                       Buffer(bytes: 200, firstStep: 2, lastStep: 3)]
        let layout = ArenaLayout(placing: buffers, alignment: 64)
        Self.checkNoLiveOverlap(buffers, layout, alignment: 64)
        #expect(layout.offsets == [320 + 256, 0, 320])
        #expect(layout.bytes == 320 + 256 + 128)
    }

    @Test func aSkipConnectionKeepsItsBufferAcrossTheWholeSpan() {
        // A U-Net skip: buffer 0 is written at step 0 and read again at step 6.
        var buffers = [Buffer(bytes: 4096, firstStep: 0, lastStep: 6)]
        buffers += (1...5).map { Buffer(bytes: 4096, firstStep: $0, lastStep: $0 + 1) }
        let layout = ArenaLayout(placing: buffers, alignment: 4096)
        Self.checkNoLiveOverlap(buffers, layout, alignment: 4096)
        #expect(layout.bytes == 3 * 4096)
    }

    @Test(arguments: 0..<50) func randomLifetimesNeverOverlapWhileAlive(seed: Int) {
        var generator = SplitMix64(seed: UInt64(seed))
        let buffers = (0..<Int.random(in: 1...40, using: &generator)).map { _ -> Buffer in
            let first = Int.random(in: 0..<30, using: &generator)
            return Buffer(bytes: Int.random(in: 0...5000, using: &generator), firstStep: first,
                          lastStep: first + Int.random(in: 0..<10, using: &generator))
        }
        let layout = ArenaLayout(placing: buffers, alignment: 64)
        Self.checkNoLiveOverlap(buffers, layout, alignment: 64)
        // Never worse than giving every buffer its own slot.
        #expect(layout.bytes <= buffers.reduce(0) { $0 + ($1.bytes + 63) / 64 * 64 })
    }

    @Test func anEmptyPlanNeedsNoArena() {
        #expect(ArenaLayout(placing: []).bytes == 0)
    }
}
