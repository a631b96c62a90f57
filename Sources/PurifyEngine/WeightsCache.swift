import CDNNL
import Foundation

/// Weights in the layouts plans asked for, by step name: plans for other batch sizes and the
/// batch workers' plans share one copy. Read-only once made, so any thread may execute with them.
final class WeightsCache: @unchecked Sendable {
    private let lock = NSLock()
    // Guarded by `lock`.
    private var memories: [String: [Memory]] = [:]

    func memory(for step: String, layout: dnnl_memory_desc_t, make: () throws -> Memory) throws -> Memory {
        lock.lock()
        defer { lock.unlock() }
        if let existing = memories[step]?.first(where: { $0.descriptor.isSameLayout(as: layout) }) { return existing }
        let memory = try make()
        memories[step, default: []].append(memory)
        return memory
    }
}
