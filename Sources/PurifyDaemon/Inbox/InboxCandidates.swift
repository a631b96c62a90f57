import PurifySystem

/// The file names an ``InboxWatcher`` has seen arrive, in arrival order and without duplicates,
/// as an `AsyncSequence` with a single consumer (the daemon's claim loop).
///
/// A name already waiting is not queued twice (IN_CLOSE_WRITE fires on every close of a writable
/// descriptor, and a rescan reports files an event already reported), so the queue never holds
/// more names than the inbox holds files. The sequence ends when the watcher stops.
public final class InboxCandidates: AsyncSequence, Sendable {
    public typealias Element = String

    private struct State {
        var names: [String] = []
        var head = 0
        var waiting: Set<String> = []
        var consumer: CheckedContinuation<String?, Never>?
        var finished = false
    }

    private let state = Locked(State())

    init() {}

    /// How many names wait to be consumed.
    public var count: Int {
        state.withLock { $0.waiting.count }
    }

    /// Queues `name` unless it is already waiting or the sequence has finished.
    func enqueue(_ name: String) {
        let consumer: CheckedContinuation<String?, Never>? = state.withLock { state in
            guard !state.finished, !state.waiting.contains(name) else { return nil }
            if let consumer = state.consumer {
                state.consumer = nil
                return consumer
            }
            state.waiting.insert(name)
            state.names.append(name)
            return nil
        }
        consumer?.resume(returning: name)
    }

    /// Ends the sequence: the consumer gets the names still waiting, then nil.
    func finish() {
        let consumer: CheckedContinuation<String?, Never>? = state.withLock { state in
            state.finished = true
            defer { state.consumer = nil }
            return state.consumer
        }
        consumer?.resume(returning: nil)
    }

    private func next() async -> String? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<String?, Never>) in
                let result: String?? = state.withLock { state in
                    if state.head < state.names.count {
                        let name = state.names[state.head]
                        state.head += 1
                        state.waiting.remove(name)
                        if state.head > 1024, state.head * 2 > state.names.count {
                            state.names.removeFirst(state.head)
                            state.head = 0
                        }
                        return .some(name)
                    }
                    if state.finished || Task.isCancelled { return .some(nil) }
                    precondition(state.consumer == nil, "InboxCandidates supports a single consumer")
                    state.consumer = continuation
                    return .none
                }
                if let result { continuation.resume(returning: result) }
            }
        } onCancel: {
            let consumer: CheckedContinuation<String?, Never>? = state.withLock { state in
                defer { state.consumer = nil }
                return state.consumer
            }
            consumer?.resume(returning: nil)
        }
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        fileprivate let candidates: InboxCandidates

        public mutating func next() async -> String? {
            await candidates.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(candidates: self)
    }
}
