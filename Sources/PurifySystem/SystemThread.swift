#if canImport(Glibc)
internal import Glibc
#endif
internal import CPurifySystem

/// Starts OS threads of the process's own for blocking work (poll, read, accept, fsync) and for
/// compute, so that none of it occupies one of Swift concurrency's few cooperative threads.
/// Every thread the daemon, the pipeline and the engine start comes from here.
public enum SystemThread {
    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Runs `body` on a new detached pthread named `name` (the kernel keeps 15 bytes), with a
    /// stack of `stackSize` bytes when given (the system's default otherwise).
    public static func start(name: String, stackSize: Int? = nil, _ body: @escaping @Sendable () -> Void) throws(SystemError) {
        let context = Unmanaged.passRetained(Body {
            CPurify_setCurrentThreadName(name)
            body()
        }).toOpaque()
        var thread = pthread_t()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        if let stackSize { pthread_attr_setstacksize(&attributes, stackSize) }
        let result = pthread_create(&thread, &attributes, { context in
            let body = Unmanaged<Body>.fromOpaque(context!).takeRetainedValue()
            body.run()
            return nil
        }, context)
        guard result == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            throw SystemError("pthread_create", path: name, errno: Errno(rawValue: result))
        }
    }

    /// Runs `body` on a new thread and returns its result to the awaiting task: one-off blocking
    /// work (fsync, reading and hashing model files, listing a folder).
    public static func run<Value: Sendable, Failure: Error>(
        name: String, _ body: @escaping @Sendable () throws(Failure) -> Value
    ) async throws -> Value {
        let outcome: Result<Value, any Error> = await withCheckedContinuation { continuation in
            do throws(SystemError) {
                try start(name: name) {
                    continuation.resume(returning: Result { () throws(Failure) -> Value in try body() }.mapError { $0 })
                }
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
        return try outcome.get()
    }
}
