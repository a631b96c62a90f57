import PurifySystem

/// Runs blocking work (socket I/O, waiting for a process) on a thread of its own: blocking a
/// task would hold one of Swift's few cooperative threads, which the code under test needs.
public func offPool<Value: Sendable>(_ body: @escaping @Sendable () throws -> Value) async throws -> Value {
    try await SystemThread.run(name: "test-blocking", body)
}

/// Polls `condition` every `interval` until it holds or `timeout` passes (30 s by default, times
/// ``testTimeScale`` under a sanitizer); returns whether it held.
public func eventually(
    timeout: Duration = .seconds(30) * testTimeScale, interval: Duration = .milliseconds(10),
    _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}
