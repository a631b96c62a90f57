import Foundation
import PurifyThreads

/// Threads of its own for blocking file I/O and per-image CPU work (decoding, conversion,
/// encoding), so that none of it runs on Swift's cooperative thread pool.
///
/// Jobs wait in a queue whose length is bounded by the number of tasks awaiting ``run(_:)``:
/// every pipeline stage has a fixed number of workers, each with at most one job in flight.
final class BlockingThreadPool: Sendable {
    private let queue = JobQueue()

    /// Starts `threadCount` threads named `name`.
    init(threadCount: Int, name: String) {
        precondition(threadCount >= 1, "a thread pool needs a thread")
        for index in 0..<threadCount {
            let queue = queue
            let thread = Thread { queue.runUntilShutdown() }
            thread.name = "\(name)-\(index)"
            thread.start()
        }
    }

    /// Runs `work` on one of the pool's threads and returns its result to the awaiting task.
    func run<Result: Sendable, Failure: Error>(
        _ work: @escaping @Sendable () throws(Failure) -> Result
    ) async throws(Failure) -> Result {
        let result: Swift.Result<Result, Failure> = await withCheckedContinuation { continuation in
            queue.enqueue {
                continuation.resume(returning: Swift.Result { () throws(Failure) -> Result in try work() })
            }
        }
        return try result.get()
    }

    /// Lets the threads finish the queued jobs and exit.
    func shutdown() {
        queue.shutdown()
    }
}

/// Runs `work` on a thread started for it alone: for one-off blocking work such as reading and
/// hashing model files or listing input folders.
func onDedicatedThread<Result: Sendable>(
    name: String, _ work: @escaping @Sendable () throws -> Result
) async throws -> Result {
    let pool = BlockingThreadPool(threadCount: 1, name: name)
    defer { pool.shutdown() }
    return try await pool.run(work)
}
