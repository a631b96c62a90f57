import CDNNL
import Foundation
import PurifySystem

/// A thread of the engine's own that runs jobs one at a time, so that model loading, planning
/// and inference never occupy Swift's cooperative thread pool. oneDNN primitives created and
/// run on it use `openMPThreads` OpenMP threads.
final class ComputeThread: Sendable {
    private let queue = JobQueue()

    /// Starts the thread; fails with ``EngineError/Code/backendFailure`` when the system
    /// refuses one.
    init(name: String, openMPThreads: Int) throws(EngineError) {
        let queue = queue
        do throws(SystemError) {
            try SystemThread.start(name: name, stackSize: 16 << 20) {
                omp_set_num_threads(Int32(openMPThreads))
                queue.runUntilShutdown()
            }
        } catch {
            throw EngineError(.backendFailure, "cannot start the \(name) thread: \(error)")
        }
    }

    deinit {
        queue.shutdown()
    }

    /// Runs `work` on the thread and returns its result to the awaiting task.
    func perform<Result: Sendable>(_ work: @escaping @Sendable () throws -> Result) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            queue.enqueue {
                continuation.resume(with: Swift.Result { try work() })
            }
        }
    }

    /// Queues `job` without waiting for it.
    func enqueue(_ job: @escaping @Sendable () -> Void) {
        queue.enqueue(job)
    }
}

/// Single-threaded workers that each run their own plans on a share of a batch: no barrier
/// between layers, and a core that is busy elsewhere delays only the share it holds.
final class BatchWorkers: Sendable {
    private let threads: [ComputeThread]
    /// One oneDNN stream per worker, each used only on its worker's thread.
    let contexts: [Confined<DNNLContext>]

    var count: Int { threads.count }

    init(count: Int, engine: CPUEngine) throws {
        threads = try (0..<count).map { try ComputeThread(name: "purify-engine-batch-\($0)", openMPThreads: 1) }
        contexts = try (0..<count).map { _ in Confined(try DNNLContext(engine: engine)) }
    }

    /// Runs `body(worker)` on every worker and returns once all have finished. Blocks the
    /// calling thread (the engine's compute thread).
    func runOnAll(_ body: @escaping @Sendable (Int) -> Void) {
        let group = DispatchGroup()
        for (index, thread) in threads.enumerated() {
            group.enter()
            thread.enqueue {
                body(index)
                group.leave()
            }
        }
        group.wait()
    }

    /// Runs `body` on one worker and waits for it.
    func run<Result>(on worker: Int, _ body: @escaping @Sendable () throws -> Result) throws -> Result {
        let outcome = Box<Swift.Result<Result, any Error>>()
        let group = DispatchGroup()
        group.enter()
        threads[worker].enqueue {
            outcome.value = Swift.Result { try body() }
            group.leave()
        }
        group.wait()
        guard let result = outcome.value else { throw EngineError(.backendFailure, "a batch worker returned nothing") }
        return try result.get()
    }
}

/// A value handed from a worker thread back to the thread waiting for it (the wait orders the accesses).
private final class Box<Value>: @unchecked Sendable {
    var value: Value?
}
