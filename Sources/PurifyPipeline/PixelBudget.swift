import PurifySystem

/// A bound on the pixels a pipeline holds decoded at once: each image reserves its pixel count
/// before it is decoded and returns it once committed, so memory follows pixels, not files.
/// Waiters are served in arrival order; an image larger than the whole budget reserves all of
/// it and so runs alone.
final class PixelBudget: Sendable {
    private struct Waiter {
        var id: UInt64
        var cost: Int
        var continuation: CheckedContinuation<Bool, Never>
    }

    private struct State {
        var available: Int
        var waiters: [Waiter] = []
        var nextID: UInt64 = 0
    }

    /// The budget, in pixels.
    let capacity: Int
    private let state: Locked<State>

    init(capacity: Int) {
        precondition(capacity > 0, "a pixel budget must be positive")
        self.capacity = capacity
        state = Locked(State(available: capacity))
    }

    /// Pixels free now.
    var available: Int { state.withLock { $0.available } }

    /// Waits until `min(pixels, capacity)` is free and takes it; returns what it took, or `nil`
    /// if the task was cancelled while waiting.
    func reserve(_ pixels: Int) async -> Int? {
        let cost = min(max(pixels, 1), capacity)
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        let granted = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let outcome: Bool? = state.withLock { state in
                    if Task.isCancelled { return false }
                    if state.waiters.isEmpty && state.available >= cost {
                        state.available -= cost
                        return true
                    }
                    state.waiters.append(Waiter(id: id, cost: cost, continuation: continuation))
                    return nil
                }
                if let outcome { continuation.resume(returning: outcome) }
            }
        } onCancel: {
            let cancelled = state.withLock { state -> CheckedContinuation<Bool, Never>? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiters.remove(at: index).continuation
            }
            cancelled?.resume(returning: false)
        }
        return granted ? cost : nil
    }

    /// Returns what ``reserve(_:)`` took, waking the waiters it makes room for.
    func release(_ cost: Int) {
        guard cost > 0 else { return }
        let woken = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            state.available += cost
            var woken: [CheckedContinuation<Bool, Never>] = []
            while let first = state.waiters.first, first.cost <= state.available {
                state.available -= first.cost
                woken.append(first.continuation)
                state.waiters.removeFirst()
            }
            return woken
        }
        for continuation in woken { continuation.resume(returning: true) }
    }
}
