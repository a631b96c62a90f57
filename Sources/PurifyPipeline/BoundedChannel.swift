import PurifySystem

/// A first-in, first-out queue between pipeline stages that holds at most `capacity` elements:
/// ``send(_:)`` suspends while it is full (backpressure), ``next()`` while it is empty.
///
/// Any number of tasks may send and receive. ``finish()`` ends it: receivers drain what is
/// buffered and then get `nil`; senders still waiting, and later ones, get
/// ``PipelineError/closed``. A cancelled sender throws `CancellationError`; a cancelled receiver
/// gets `nil`.
final class BoundedChannel<Element: Sendable>: Sendable {
    private struct Sender {
        let id: UInt64
        let element: Element
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct Receiver {
        let id: UInt64
        let continuation: CheckedContinuation<Element?, Never>
    }

    private struct State {
        var buffer: [Element] = []
        var senders: [Sender] = []
        var receivers: [Receiver] = []
        var finished = false
        var nextID: UInt64 = 0

        mutating func makeID() -> UInt64 {
            nextID += 1
            return nextID
        }
    }

    /// The most elements buffered at once.
    let capacity: Int
    private let state = Locked(State())

    init(capacity: Int) {
        precondition(capacity >= 1, "a channel needs room for one element")
        self.capacity = capacity
    }

    /// Appends `element`, suspending while the channel is full.
    func send(_ element: Element) async throws {
        let attempt: SendAttempt = state.withLock { state in
            if state.finished { return .finished }
            if !state.receivers.isEmpty { return .delivered(state.receivers.removeFirst().continuation) }
            if state.buffer.count < capacity {
                state.buffer.append(element)
                return .buffered
            }
            return .full
        }
        switch attempt {
        case .delivered(let receiver):
            receiver.resume(returning: element)
            return
        case .buffered:
            return
        case .finished:
            throw PipelineError.closed
        case .full:
            break
        }
        let id = state.withLock { $0.makeID() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome: SendOutcome = state.withLock { state in
                    // The element may have found room (or a receiver) since the first look.
                    if state.finished { return .resumeNow(PipelineError.closed) }
                    if Task.isCancelled { return .resumeNow(CancellationError()) }
                    if !state.receivers.isEmpty { return .deliver(state.receivers.removeFirst().continuation) }
                    if state.buffer.count < capacity {
                        state.buffer.append(element)
                        return .resumeNow(nil)
                    }
                    state.senders.append(Sender(id: id, element: element, continuation: continuation))
                    return .waiting
                }
                switch outcome {
                case .waiting:
                    break
                case .resumeNow(let error?):
                    continuation.resume(throwing: error)
                case .resumeNow(nil):
                    continuation.resume()
                case .deliver(let receiver):
                    receiver.resume(returning: element)
                    continuation.resume()
                }
            }
        } onCancel: {
            let cancelled = state.withLock { state -> Sender? in
                guard let index = state.senders.firstIndex(where: { $0.id == id }) else { return nil }
                return state.senders.remove(at: index)
            }
            cancelled?.continuation.resume(throwing: CancellationError())
        }
    }

    /// The oldest element, suspending while the channel is empty; `nil` once it is finished and
    /// drained, or when the receiving task is cancelled.
    func next() async -> Element? {
        let fast = state.withLock { state in take(&state) }
        switch fast {
        case .element(let element, let unblocked):
            unblocked?.continuation.resume()
            return element
        case .finished:
            return nil
        case .empty:
            break
        }
        let id = state.withLock { $0.makeID() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Element?, Never>) in
                let outcome: ReceiveOutcome = state.withLock { state in
                    switch take(&state) {
                    case .element(let element, let unblocked): return .resumeNow(element, unblocked: unblocked)
                    case .finished: return .resumeNow(nil, unblocked: nil)
                    case .empty:
                        if Task.isCancelled { return .resumeNow(nil, unblocked: nil) }
                        state.receivers.append(Receiver(id: id, continuation: continuation))
                        return .waiting
                    }
                }
                if case .resumeNow(let element, let unblocked) = outcome {
                    unblocked?.continuation.resume()
                    continuation.resume(returning: element)
                }
            }
        } onCancel: {
            let cancelled = state.withLock { state -> Receiver? in
                guard let index = state.receivers.firstIndex(where: { $0.id == id }) else { return nil }
                return state.receivers.remove(at: index)
            }
            cancelled?.continuation.resume(returning: nil)
        }
    }

    /// Ends the channel: no more sends; receivers drain the buffer, then get `nil`.
    func finish() {
        let (senders, receivers) = state.withLock { state in
            state.finished = true
            defer {
                state.senders.removeAll()
                state.receivers.removeAll()
            }
            return (state.senders, state.receivers)
        }
        for sender in senders { sender.continuation.resume(throwing: PipelineError.closed) }
        for receiver in receivers { receiver.continuation.resume(returning: nil) }
    }

    /// Removes the oldest element, moving the first waiting sender's element into the room made.
    private func take(_ state: inout State) -> Take {
        if !state.buffer.isEmpty {
            let element = state.buffer.removeFirst()
            var unblocked: Sender?
            if !state.senders.isEmpty {
                let sender = state.senders.removeFirst()
                state.buffer.append(sender.element)
                unblocked = sender
            }
            return .element(element, unblocked: unblocked)
        }
        return state.finished ? .finished : .empty
    }

    private enum SendAttempt {
        case delivered(CheckedContinuation<Element?, Never>)
        case buffered
        case full
        case finished
    }

    private enum SendOutcome {
        case waiting
        case resumeNow((any Error)?)
        case deliver(CheckedContinuation<Element?, Never>)
    }

    private enum ReceiveOutcome {
        case waiting
        case resumeNow(Element?, unblocked: Sender?)
    }

    private enum Take {
        case element(Element, unblocked: Sender?)
        case finished
        case empty
    }
}
