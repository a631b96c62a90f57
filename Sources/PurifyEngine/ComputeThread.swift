import CDNNL
import Foundation

/// A dedicated thread that runs the engine's work one job at a time, so that model loading,
/// planning and inference never occupy Swift's cooperative thread pool. oneDNN's OpenMP team
/// is created from this thread with the configured number of threads.
final class ComputeThread: Sendable {
    private let queue: JobQueue

    init(threadCount: Int) {
        let queue = JobQueue()
        self.queue = queue
        let thread = Thread {
            omp_set_num_threads(Int32(threadCount))
            queue.runUntilShutdown()
        }
        thread.name = "purify-engine"
        thread.stackSize = 16 << 20
        thread.start()
    }

    deinit {
        queue.shutdown()
    }

    /// Runs `work` on the compute thread and returns its result to the awaiting task.
    func perform<Result: Sendable>(_ work: @escaping @Sendable () throws -> Result) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            queue.enqueue {
                continuation.resume(with: Swift.Result { try work() })
            }
        }
    }
}

/// The compute thread's job queue, guarded by a condition variable.
private final class JobQueue: @unchecked Sendable {
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var jobs: [@Sendable () -> Void] = []
    private var shuttingDown = false

    func enqueue(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    func shutdown() {
        condition.lock()
        shuttingDown = true
        condition.signal()
        condition.unlock()
    }

    /// Runs jobs in order until shut down and drained.
    func runUntilShutdown() {
        while true {
            condition.lock()
            while jobs.isEmpty && !shuttingDown { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            let batch = jobs
            jobs.removeAll()
            condition.unlock()
            for job in batch { job() }
        }
    }
}
