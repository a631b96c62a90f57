#if canImport(Glibc)
internal import Glibc
#endif
internal import CPurifySystem

/// Starts an OS thread of its own for blocking work (poll, read, accept), so that no blocking
/// call ever occupies one of the Swift concurrency cooperative pool's few threads.
enum DedicatedThread {
    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Runs `body` on a new detached pthread named `name` (the kernel keeps 15 bytes).
    static func start(name: String, _ body: @escaping @Sendable () -> Void) throws(DaemonError) {
        let context = Unmanaged.passRetained(Body {
            CPurify_setCurrentThreadName(name)
            body()
        }).toOpaque()
        var thread = pthread_t()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let result = pthread_create(&thread, &attributes, { context in
            let body = Unmanaged<Body>.fromOpaque(context!).takeRetainedValue()
            body.run()
            return nil
        }, context)
        guard result == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            throw DaemonError.systemCall("pthread_create", errno: result)
        }
    }
}
