import CDNNL
import Foundation

/// Runs ONNX models on the CPU through oneDNN, on a compute thread of its own.
///
/// Create one engine per process and load every model through it: models loaded from the same
/// engine share its thread and run one at a time, so they never compete for cores.
public final class InferenceEngine: Sendable {
    /// How many threads oneDNN computes with.
    public let threadCount: Int
    let thread: ComputeThread
    let context: Confined<DNNLContext>

    /// Starts the compute thread with `threadCount` oneDNN threads (`nil`: one per core).
    public init(threadCount: Int? = nil) throws {
        let threadCount = threadCount ?? ProcessInfo.processInfo.activeProcessorCount
        guard threadCount >= 1 else { throw EngineError(.invalidInput, "thread count must be at least 1, not \(threadCount)") }
        self.threadCount = threadCount
        thread = ComputeThread(threadCount: threadCount)
        context = Confined(try DNNLContext())
    }

    /// Reads, validates and lowers the ONNX model at `path` (BatchNormalization folded,
    /// activations fused). Fails with ``EngineError`` naming the node and op for anything the
    /// engine does not support.
    public func loadModel(at path: String) async throws -> InferenceModel {
        let context = context
        let graph = try await thread.perform {
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
            } catch {
                throw EngineError(.unreadableFile, "cannot read '\(path)': \(error.localizedDescription)")
            }
            return Confined(try LoweredGraph(ONNXGraph(serialized: data)))
        }
        return InferenceModel(graph: graph.value, engine: self, context: context)
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

    init(graph: LoweredGraph, engine: InferenceEngine, context: Confined<DNNLContext>) {
        inputs = graph.inputs
        outputs = graph.outputs
        self.engine = engine
        state = Confined(ModelState(graph: graph, context: context.value))
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

    /// Times the plan for `input`'s shape step by step over `iterations` runs. For benchmarks:
    /// synchronising after every step costs time of its own.
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
        public let name: String
        public let secondsPerRun: Double
        public let flopsPerRun: Double
    }

    public let categories: [Entry]
    public let steps: [Entry]
}

/// A model's mutable state: the lowered graph and the plans built so far. Touched only on the
/// engine's compute thread.
final class ModelState {
    private let graph: LoweredGraph
    private let context: DNNLContext
    private var plans: [[[Int]]: ExecutionPlan] = [:]

    init(graph: LoweredGraph, context: DNNLContext) {
        self.graph = graph
        self.context = context
    }

    func run(_ inputs: [Tensor], timings: StepTimings? = nil) throws -> [Tensor] {
        let shapes = inputs.map(\.shape)
        let plan: ExecutionPlan
        if let cached = plans[shapes] {
            plan = cached
        } else {
            plan = try PlanBuilder(graph: graph, context: context).build(inputShapes: shapes)
            plans[shapes] = plan
        }
        let outputs = try withPointers(to: inputs.map(\.values)) { inputPointers in
            try makeArrays(counts: plan.outputShapes.map { $0.reduce(1, *) }) { outputPointers in
                try plan.execute(inputs: inputPointers, outputs: outputPointers, stream: context.stream, timings: timings)
            }
        }
        return zip(plan.outputShapes, outputs).map { Tensor(shape: $0, values: $1) }
    }
}

/// Holds a value that is only ever used on the engine's compute thread (oneDNN handles and
/// plan caches), so it may be passed between tasks without being `Sendable` itself.
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
