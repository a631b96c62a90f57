import Foundation

/// A first-in, first-out queue of jobs for threads of a module's own (never Swift's cooperative
/// pool), guarded by a condition variable. Any number of threads may drain it with
/// ``runUntilShutdown()``; each takes one job at a time.
public final class JobQueue: @unchecked Sendable {
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var jobs: [@Sendable () -> Void] = []
    private var head = 0
    private var shuttingDown = false

    public init() {}

    /// Queues `job` for the next free thread.
    public func enqueue(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Lets the draining threads finish the queued jobs and return.
    public func shutdown() {
        condition.lock()
        shuttingDown = true
        condition.broadcast()
        condition.unlock()
    }

    /// Runs jobs one at a time, in order, until shut down and drained. Blocks the calling thread.
    public func runUntilShutdown() {
        while true {
            condition.lock()
            while head == jobs.count && !shuttingDown { condition.wait() }
            if head == jobs.count {
                condition.unlock()
                return
            }
            let job = jobs[head]
            head += 1
            if head == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                head = 0
            }
            condition.unlock()
            job()
        }
    }
}
