import PurifySystem
import Testing

@Suite struct ThreadTests {
    private struct Refusal: Error, Equatable {}

    /// The jobs' indices in the order they ran.
    private final class Order: Sendable {
        let indices = Locked<[Int]>([])
    }

    /// How many jobs run at once now, and at most.
    private final class Concurrency: Sendable {
        let counts = Locked((now: 0, most: 0))
    }

    @Test func runReturnsTheValueAndTheError() async throws {
        #expect(try await SystemThread.run(name: "test-run") { 6 * 7 } == 42)
        await #expect(throws: Refusal.self) {
            try await SystemThread.run(name: "test-run") { () throws(Refusal) -> Int in throw Refusal() }
        }
    }

    @Test func aPoolRunsJobsOnItsThreadsConcurrently() async throws {
        let pool = try ThreadPool(threadCount: 4, name: "test-pool")
        defer { pool.shutdown() }
        let concurrency = Concurrency()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<16 {
                group.addTask {
                    try await pool.run { () throws(Refusal) in
                        concurrency.counts.withLock { $0.now += 1; $0.most = max($0.most, $0.now) }
                        // Each job waits (up to 10 s) until two have run at once: a pool that
                        // ran its jobs one at a time would end with `most` at 1.
                        let deadline = ContinuousClock.now + .seconds(10)
                        while concurrency.counts.withLock({ $0.most }) < 2, ContinuousClock.now < deadline {}
                        concurrency.counts.withLock { $0.now -= 1 }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(concurrency.counts.withLock { $0.most } > 1)
        #expect(concurrency.counts.withLock { $0.now } == 0)
    }

    @Test func aJobQueueKeepsOrderAndDrainsBeforeShuttingDown() async throws {
        let queue = JobQueue()
        let order = Order()
        for index in 0..<100 { queue.enqueue { order.indices.withLock { $0.append(index) } } }
        queue.shutdown()
        try await SystemThread.run(name: "test-queue") { queue.runUntilShutdown() }
        #expect(order.indices.withLock { $0 } == Array(0..<100))
    }
}
