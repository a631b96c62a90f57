import CDNNL
import Foundation

/// Everything needed to run a model for one set of input shapes: oneDNN primitives with their
/// weights already in the layouts the primitives chose, memory objects over one arena, and the
/// step list. Built once per input shape and reused; only the input and output buffers change
/// between runs.
final class ExecutionPlan {
    let outputShapes: [[Int]]
    /// The OpenMP thread count of the thread the plan was built for; serial steps drop to one.
    private let openMPThreads: Int
    private let steps: [PlanStep]
    /// Activations whose buffers are the caller's: (memory, which input) and (memory, which output).
    private let inputBindings: [(Memory, Int)]
    private let outputBindings: [(Memory, Int)]
    /// Outputs that are constants of the graph, copied out as they are.
    private let constantOutputs: [Int: [Float]]
    /// The activations' memory, from posix_memalign.
    private let arena: UnsafeMutableRawPointer
    /// The arena's size: what keeping this plan costs beyond the shared weights.
    let arenaBytes: Int
    /// Weights, constants and memories the steps point at.
    private let retained: [AnyObject]

    init(outputShapes: [[Int]], openMPThreads: Int, steps: [PlanStep], inputBindings: [(Memory, Int)],
                     outputBindings: [(Memory, Int)], constantOutputs: [Int: [Float]],
                     arena: UnsafeMutableRawPointer, arenaBytes: Int, retained: [AnyObject]) {
        self.outputShapes = outputShapes
        self.openMPThreads = openMPThreads
        self.steps = steps
        self.inputBindings = inputBindings
        self.outputBindings = outputBindings
        self.constantOutputs = constantOutputs
        self.arena = arena
        self.arenaBytes = arenaBytes
        self.retained = retained
    }

    deinit {
        free(arena)
    }

    /// Runs every step on `stream`, reading `inputs` and writing `outputs` (one buffer per graph
    /// input and output, plain row-major float32 of the planned shapes).
    func execute(inputs: [UnsafeMutableRawPointer], outputs: [UnsafeMutableRawPointer], stream: dnnl_stream_t,
                 timings: StepTimings? = nil) throws {
        for (memory, index) in inputBindings { try memory.bind(inputs[index]) }
        for (memory, index) in outputBindings { try memory.bind(outputs[index]) }
        timings?.startRun()
        for (index, values) in constantOutputs {
            values.withUnsafeBytes { bytes in
                if let base = bytes.baseAddress { outputs[index].copyMemory(from: base, byteCount: bytes.count) }
            }
        }
        for step in steps {
            let start = ContinuousClock.now
            switch step.work {
            case .primitive(let primitive, let arguments):
                if step.serial { omp_set_num_threads(1) }
                let status = dnnl_primitive_execute(primitive.handle, stream, Int32(arguments.count), arguments)
                if step.serial { omp_set_num_threads(Int32(openMPThreads)) }
                try dnnlCheck(status, "executing \(step.name)")
            case .kernel(let kernel):
                try dnnlCheck(dnnl_stream_wait(stream), "waiting for the stream")
                kernel()
            }
            if let timings {
                try dnnlCheck(dnnl_stream_wait(stream), "waiting for the stream")
                timings.record(step, ContinuousClock.now - start)
            }
        }
        try dnnlCheck(dnnl_stream_wait(stream), "waiting for the stream")
    }
}

/// Accumulated execution time per kind of step, for the benchmark's breakdown.
final class StepTimings {
    private(set) var elapsed: [StepCategory: Duration] = [:]
    private(set) var flops: [StepCategory: Double] = [:]
    /// Per step, in plan order: its name, category, total time and floating-point operations.
    private(set) var steps: [(name: String, category: StepCategory, elapsed: Duration, flops: Double)] = []
    private var position = 0

    func record(_ step: PlanStep, _ duration: Duration) {
        elapsed[step.category, default: .zero] += duration
        flops[step.category, default: 0] += step.flops
        if position < steps.count, steps[position].name == step.name {
            steps[position].elapsed += duration
            steps[position].flops += step.flops
        } else {
            steps.append((step.name, step.category, duration, step.flops))
        }
        position += 1
    }

    /// Marks the start of another run of the same plan.
    func startRun() {
        position = 0
    }
}

/// What kind of work a step does, for timing breakdowns.
enum StepCategory: String, CaseIterable, Sendable {
    case convolution, deconvolution, innerProduct = "inner product", elementwise = "element-wise"
    case concat, pooling, reorder, normalization, other
}

/// One unit of work in a plan: a oneDNN primitive with its bound arguments, or a Swift kernel.
struct PlanStep {
    enum Work {
        case primitive(Primitive, [dnnl_exec_arg_t])
        case kernel(() -> Void)
    }

    var name: String
    var category: StepCategory
    /// Floating-point operations per run (multiply-adds count two), where meaningful.
    var flops: Double
    /// Whether the step runs on the calling thread alone (small element-wise work).
    var serial: Bool
    var work: Work
}
