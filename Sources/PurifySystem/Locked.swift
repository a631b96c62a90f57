#if canImport(Glibc)
internal import Glibc
#endif

/// A value only reached under a lock: `withLock` gives exclusive access for the length of its
/// closure.
///
/// The lock is a pthread mutex, as swift-nio's `NIOLockedValueBox` uses, rather than the
/// standard library's `Mutex`: on Linux `Mutex` hands the lock over through a futex inside the
/// uninstrumented runtime, so ThreadSanitizer cannot see the ordering it creates and reports
/// every access it guards as a race, while pthread's calls are ones it intercepts.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    // Read and written only between `pthread_mutex_lock` and `pthread_mutex_unlock`.
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let result = pthread_mutex_init(mutex, nil)
        precondition(result == 0, "pthread_mutex_init failed: \(result)")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with the value while holding the lock, and returns what it returns.
    public func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
