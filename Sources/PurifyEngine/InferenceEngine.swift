import CDNNL
import Foundation
public import struct Foundation.Data

/// Runs ONNX models on the CPU through oneDNN, on threads of its own: a compute thread that
/// loads, plans and runs (its oneDNN primitives use `threadCount` OpenMP threads), and
/// `threadCount` single-threaded workers that share larger batches between them.
///
/// Create one engine per process and load every model through it: models loaded from the same
/// engine run one at a time, so they never compete for cores.
public final class InferenceEngine: Sendable {
    /// How many threads compute at once.
    public let threadCount: Int
    let thread: ComputeThread
    let context: Confined<DNNLContext>
    /// How many execution plans each model keeps, and how many bytes of activation arenas they
    /// may hold together; beyond either, the least recently used plans are dropped.
    public let planCacheLimits: PlanCacheLimits
    /// Present with more than one thread: batches of at least `threadCount` images are split
    /// between single-threaded workers instead of parallelising each layer.
    let workers: BatchWorkers?

    /// Starts the engine's threads: `threadCount` of them compute at once (`nil`: one per core).
    public init(threadCount: Int? = nil, planCacheLimits: PlanCacheLimits = PlanCacheLimits()) throws {
        let threadCount = threadCount ?? ProcessInfo.processInfo.activeProcessorCount
        guard threadCount >= 1 else { throw EngineError(.invalidInput, "thread count must be at least 1, not \(threadCount)") }
        guard planCacheLimits.plans >= 1, planCacheLimits.arenaBytes >= 0 else {
            throw EngineError(.invalidInput, "a plan cache needs room for at least one plan and a non-negative byte budget")
        }
        self.threadCount = threadCount
        self.planCacheLimits = planCacheLimits
        let cpu = try CPUEngine()
        thread = try ComputeThread(name: "purify-engine", openMPThreads: threadCount)
        context = Confined(try DNNLContext(engine: cpu))
        workers = threadCount > 1 ? try BatchWorkers(count: threadCount, engine: cpu) : nil
    }

    /// Reads, validates and lowers the ONNX model at `path` (BatchNormalization folded,
    /// activations fused). Fails with ``EngineError`` naming the node and op for anything the
    /// engine does not support.
    public func loadModel(at path: String) async throws -> InferenceModel {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
        } catch {
            throw EngineError(.unreadableFile, "cannot read '\(path)': \(error.localizedDescription)")
        }
        return try await loadModel(serialized: data)
    }

    /// Validates and lowers a serialized ONNX model, as ``loadModel(at:)`` does with a file's
    /// bytes: for a caller that has read and verified them itself, so that what runs is exactly
    /// what was verified.
    public func loadModel(serialized data: Data) async throws -> InferenceModel {
        let graph = try await thread.perform {
            Confined(try LoweredGraph(ONNXGraph(serialized: data)))
        }
        return InferenceModel(graph: graph.value, engine: self)
    }
}

/// A loaded model, ready to run batches of any size (and any spatial size, for a fully
/// convolutional model). Execution plans are built per input shape on first use and cached.
public final class InferenceModel: Sendable {
    /// The graph inputs `run` expects, in order; `nil` dimensions are free (the batch axis).
    public let inputs: [TensorDescription]
    /// The graph outputs `run` returns, in order.
    public let outputs: [TensorDescription]
    private let engine: InferenceEngine
    private let state: Confined<ModelState>

    init(graph: LoweredGraph, engine: InferenceEngine) {
        inputs = graph.inputs
        outputs = graph.outputs
        self.engine = engine
        state = Confined(ModelState(graph: graph, context: engine.context.value, workers: engine.workers,
                                    limits: engine.planCacheLimits))
    }

    /// Runs one batch: a tensor per input name, NCHW float32. Returns a tensor per output name.
    public func run(_ inputs: [String: Tensor]) async throws -> [String: Tensor] {
        let ordered = try self.inputs.map { description in
            guard let tensor = inputs[description.name] else {
                throw EngineError(.invalidInput, "no tensor for input '\(description.name)'")
            }
            try Self.check(tensor, against: description)
            return tensor
        }
        if let unknown = Set(inputs.keys).subtracting(self.inputs.map(\.name)).sorted().first {
            throw EngineError(.invalidInput, "the model has no input '\(unknown)'")
        }
        let state = state
        let results = try await engine.thread.perform { try state.value.run(ordered) }
        return Dictionary(uniqueKeysWithValues: zip(outputs.map(\.name), results))
    }

    /// The input shapes with a cached whole-batch plan, least recently used first, and the bytes
    /// of arena those plans hold.
    func cachedPlans() async throws -> (shapes: [[[Int]]], arenaBytes: Int) {
        let state = state
        return try await engine.thread.perform { (state.value.plans.shapes, state.value.plans.arenaBytes) }
    }

    /// Runs one batch through a model with a single input and a single output.
    public func run(_ input: Tensor) async throws -> Tensor {
        guard inputs.count == 1, outputs.count == 1 else {
            throw EngineError(.invalidInput, "the model has \(inputs.count) inputs and \(outputs.count) outputs")
        }
        let results = try await run([inputs[0].name: input])
        guard let output = results[outputs[0].name] else {
            throw EngineError(.backendFailure, "no result for output '\(outputs[0].name)'")
        }
        return output
    }

    /// Times the whole-batch plan for `input`'s shape (the plan batch 1 runs; larger batches are
    /// shared between workers) step by step over `iterations` runs. For benchmarks: waiting for
    /// every step to finish costs time of its own.
    public func profile(_ input: Tensor, iterations: Int) async throws -> Profile {
        guard inputs.count == 1 else { throw EngineError(.invalidInput, "profiling needs a single-input model") }
        try Self.check(input, against: inputs[0])
        let state = state
        return try await engine.thread.perform {
            let timings = StepTimings()
            for _ in 0..<iterations { _ = try state.value.run([input], timings: timings) }
            func entry(_ name: String, _ elapsed: Duration, _ flops: Double) -> Profile.Entry {
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
                return Profile.Entry(name: name, secondsPerRun: seconds / Double(iterations),
                                     flopsPerRun: flops / Double(iterations))
            }
            return Profile(
                categories: StepCategory.allCases.compactMap { category in
                    timings.elapsed[category].map { entry(category.rawValue, $0, timings.flops[category] ?? 0) }
                },
                steps: timings.steps.map { entry("\($0.category.rawValue) \($0.name)", $0.elapsed, $0.flops) })
        }
    }

    private static func check(_ tensor: Tensor, against description: TensorDescription) throws {
        guard tensor.shape.count == description.shape.count,
              zip(tensor.shape, description.shape).allSatisfy({ actual, declared in declared.map { $0 == actual } ?? true }),
              tensor.shape.allSatisfy({ $0 > 0 }) else {
            let declared = description.shape.map { $0.map(String.init) ?? "?" }.joined(separator: "×")
            throw EngineError(.invalidInput, "input '\(description.name)' has shape \(tensor.shape), the model expects \(declared)")
        }
    }
}

/// Where a run's time goes: per kind of step (convolution, deconvolution, element-wise, ...)
/// and per step.
public struct Profile: Sendable {
    /// A kind of step, or one step, with its time and floating-point operations per run.
    public struct Entry: Sendable {
        /// The kind ("convolution", "deconvolution", "element-wise", ...), or the kind and the
        /// step's node name.
        public let name: String
        /// Mean wall time per run.
        public let secondsPerRun: Double
        /// Floating-point operations per run (a multiply-add counts two; zero for data movement).
        public let flopsPerRun: Double
    }

    /// One entry per kind of step that occurs.
    public let categories: [Entry]
    /// One entry per step, in execution order.
    public let steps: [Entry]
}

/// A model's mutable state: the lowered graph and the plans built so far. Touched only on the
/// engine's compute thread, except each worker's plan cache, touched only by its worker.
final class ModelState {
    private let graph: LoweredGraph
    private let context: DNNLContext
    private let weights = WeightsCache()
    let plans: PlanCache
    private let workers: BatchWorkers?
    private let workerPlans: [PlanCache]

    init(graph: LoweredGraph, context: DNNLContext, workers: BatchWorkers?, limits: PlanCacheLimits) {
        self.graph = graph
        self.context = context
        self.workers = workers
        plans = PlanCache(limits: limits)
        workerPlans = (0..<(workers?.count ?? 0)).map { _ in PlanCache(limits: limits) }
    }

    func run(_ inputs: [Tensor], timings: StepTimings? = nil) throws -> [Tensor] {
        let batch = inputs[0].shape[0]
        if timings == nil, let workers, batch >= workers.count, inputs.allSatisfy({ $0.shape.first == batch }),
           let outputs = try runAcrossWorkers(inputs, batch: batch, workers: workers) {
            return outputs
        }
        let shapes = inputs.map(\.shape)
        let plan = try plans.plan(for: shapes) {
            try PlanBuilder(graph: graph, context: context, weightsCache: weights).build(inputShapes: shapes)
        }
        let outputs = try withPointers(to: inputs.map(\.values)) { inputPointers in
            try makeArrays(counts: plan.outputShapes.map { $0.reduce(1, *) }) { outputPointers in
                try plan.execute(inputs: inputPointers, outputs: outputPointers, stream: context.stream, timings: timings)
            }
        }
        return zip(plan.outputShapes, outputs).map { Tensor(shape: $0, values: $1) }
    }

    /// Splits the batch into chunks that the workers claim one at a time, each running a
    /// single-threaded plan for its chunk straight from the input into the output buffers.
    /// One chunk per worker: every chunk streams all the weights once, and on the purifier
    /// (110 MB of weights at ngf=64) halving the chunks cost 14% of the throughput.
    /// Returns `nil` when an output has no batch axis to split along.
    private func runAcrossWorkers(_ inputs: [Tensor], batch: Int, workers: BatchWorkers) throws -> [Tensor]? {
        let chunk = max(1, batch / workers.count)
        let this = Confined(self)
        @Sendable func shapes(_ count: Int) -> [[Int]] { inputs.map { [count] + $0.shape.dropFirst() } }
        let chunkShapes = shapes(chunk)
        let probe = try workers.run(on: 0) { try this.value.workerPlan(0, for: chunkShapes).outputShapes }
        guard probe.allSatisfy({ $0.first == chunk }) else { return nil }
        let outputShapes = probe.map { [batch] + $0.dropFirst() }
        let inputStrides = inputs.map { $0.values.count / batch * MemoryLayout<Float>.size }
        let outputStrides = outputShapes.map { $0.dropFirst().reduce(1, *) * MemoryLayout<Float>.size }
        let claims = ChunkClaims(total: batch, chunk: chunk)
        let failure = FirstError()
        let outputs = try withPointers(to: inputs.map(\.values)) { inputPointers in
            try makeArrays(counts: outputShapes.map { $0.reduce(1, *) }) { outputPointers in
                let buffers = BatchBuffers(inputs: inputPointers, outputs: outputPointers)
                workers.runOnAll { worker in
                    while let (start, count) = claims.next() {
                        do {
                            let plan = try this.value.workerPlan(worker, for: shapes(count))
                            try plan.execute(inputs: zip(buffers.inputs, inputStrides).map { $0 + start * $1 },
                                             outputs: zip(buffers.outputs, outputStrides).map { $0 + start * $1 },
                                             stream: workers.contexts[worker].value.stream)
                        } catch {
                            failure.record(error)
                            return
                        }
                    }
                }
                if let error = failure.error { throw error }
            }
        }
        return zip(outputShapes, outputs).map { Tensor(shape: $0, values: $1) }
    }

    /// Worker `index`'s plan for `shapes`; call only on that worker's thread.
    private func workerPlan(_ index: Int, for shapes: [[Int]]) throws -> ExecutionPlan {
        try workerPlans[index].plan(for: shapes) {
            try PlanBuilder(graph: graph, context: workers!.contexts[index].value, weightsCache: weights)
                .build(inputShapes: shapes)
        }
    }
}

/// Bounds on the execution plans a model keeps (each plan owns oneDNN primitives and an
/// activation arena; the weights are shared between plans and not counted).
public struct PlanCacheLimits: Sendable, Equatable {
    /// The most plans kept per model and thread.
    public var plans: Int
    /// The most bytes of activation arenas those plans hold together. The plan in use is kept
    /// even when it alone is larger.
    public var arenaBytes: Int

    /// 32 plans and 1 GiB of arenas by default: room for every batch size of a few image shapes.
    public init(plans: Int = 32, arenaBytes: Int = 1 << 30) {
        self.plans = plans
        self.arenaBytes = arenaBytes
    }
}

/// Plans by input shapes, least recently used first out when a limit is passed.
final class PlanCache {
    private let limits: PlanCacheLimits
    private var plans: [[[Int]]: ExecutionPlan] = [:]
    /// The cached shapes, least recently used first.
    private var recency: [[[Int]]] = []
    private(set) var arenaBytes = 0

    init(limits: PlanCacheLimits) {
        self.limits = limits
    }

    /// The shapes with a cached plan, least recently used first.
    var shapes: [[[Int]]] { recency }

    func plan(for shapes: [[Int]], build: () throws -> ExecutionPlan) throws -> ExecutionPlan {
        if let plan = plans[shapes] {
            recency.remove(at: recency.firstIndex(of: shapes)!)
            recency.append(shapes)
            return plan
        }
        if plans.count == limits.plans { evictLeastRecentlyUsed() }
        let plan = try build()
        plans[shapes] = plan
        recency.append(shapes)
        arenaBytes += plan.arenaBytes
        while arenaBytes > limits.arenaBytes, recency.count > 1 { evictLeastRecentlyUsed() }
        return plan
    }

    private func evictLeastRecentlyUsed() {
        let shapes = recency.removeFirst()
        arenaBytes -= plans.removeValue(forKey: shapes)!.arenaBytes
    }
}

/// The whole batch's input and output buffers. Workers read and write disjoint chunks of them
/// while the compute thread that owns them waits.
private struct BatchBuffers: @unchecked Sendable {
    let inputs: [UnsafeMutableRawPointer]
    let outputs: [UnsafeMutableRawPointer]
}

/// Hands out consecutive chunks of a batch to whichever worker asks next.
private final class ChunkClaims: @unchecked Sendable {
    private let lock = NSLock()
    private let total: Int
    private let chunk: Int
    // Guarded by `lock`.
    private var handedOut = 0

    init(total: Int, chunk: Int) {
        self.total = total
        self.chunk = chunk
    }

    /// The next chunk's first index and length, or `nil` when the batch is handed out.
    func next() -> (start: Int, count: Int)? {
        lock.lock()
        defer { lock.unlock() }
        guard handedOut < total else { return nil }
        let start = handedOut
        handedOut = min(total, handedOut + chunk)
        return (start, handedOut - start)
    }
}

/// The first error any worker hit.
private final class FirstError: @unchecked Sendable {
    private let lock = NSLock()
    // Guarded by `lock`.
    private var first: (any Error)?

    func record(_ error: any Error) {
        lock.lock()
        if first == nil { first = error }
        lock.unlock()
    }

    var error: (any Error)? {
        lock.lock()
        defer { lock.unlock() }
        return first
    }
}

/// Holds a value that only the engine's own threads use, each part on one thread at a time
/// (oneDNN handles on their thread, a worker's plan cache on that worker), so it may be passed
/// between tasks and threads without being `Sendable` itself.
struct Confined<Value>: @unchecked Sendable {
    let value: Value

    init(_ value: Value) {
        self.value = value
    }
}

private func withPointers<R>(to arrays: [[Float]], _ body: ([UnsafeMutableRawPointer]) throws -> R) rethrows -> R {
    func recurse(_ index: Int, _ collected: [UnsafeMutableRawPointer]) throws -> R {
        if index == arrays.count { return try body(collected) }
        return try arrays[index].withUnsafeBytes { bytes in
            try recurse(index + 1, collected + [UnsafeMutableRawPointer(mutating: bytes.baseAddress!)])
        }
    }
    return try recurse(0, [])
}

/// Creates arrays of `counts[i]` floats and lets `body` fill them through raw pointers.
private func makeArrays(counts: [Int], _ body: ([UnsafeMutableRawPointer]) throws -> Void) rethrows -> [[Float]] {
    var arrays = [[Float]](repeating: [], count: counts.count)
    func recurse(_ index: Int, _ collected: [UnsafeMutableRawPointer]) throws {
        if index == counts.count { return try body(collected) }
        arrays[index] = try [Float](unsafeUninitializedCapacity: counts[index]) { buffer, initialized in
            try recurse(index + 1, collected + [UnsafeMutableRawPointer(buffer.baseAddress!)])
            initialized = counts[index]
        }
    }
    try recurse(0, [])
    return arrays
}
