/// Threads of their own for blocking file I/O and per-item CPU work (decoding, conversion,
/// encoding), so that none of it runs on Swift's cooperative thread pool.
///
/// Jobs wait in a queue whose length is bounded by the number of tasks awaiting ``run(_:)``:
/// give every stage a fixed number of workers, each with at most one job in flight.
public final class ThreadPool: Sendable {
    private let queue = JobQueue()

    /// Starts `threadCount` threads named `name-0`, `name-1`, …
    public init(threadCount: Int, name: String) throws(SystemError) {
        precondition(threadCount >= 1, "a thread pool needs a thread")
        for index in 0..<threadCount {
            let queue = queue
            do throws(SystemError) {
                try SystemThread.start(name: "\(name)-\(index)") { queue.runUntilShutdown() }
            } catch {
                queue.shutdown()
                throw error
            }
        }
    }

    /// Runs `work` on one of the pool's threads and returns its result to the awaiting task.
    public func run<Result: Sendable, Failure: Error>(
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
    public func shutdown() {
        queue.shutdown()
    }
}
