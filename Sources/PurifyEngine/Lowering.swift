import CDNNL

/// How a convolution pads its input.
enum AutoPad {
    case explicit
    case sameUpper
    case sameLower
    case valid
}

/// A Conv or ConvTranspose with its weights (in ONNX layout) and any folded BatchNormalization.
struct Convolution {
    var transposed: Bool
    /// Conv: [outputChannels, inputChannels / groups, kH, kW];
    /// ConvTranspose: [inputChannels, outputChannels / groups, kH, kW].
    var weights: ConstantTensor
    var bias: [Float]?
    var strides: [Int]
    var dilations: [Int]
    /// Begin pads for each spatial axis, then end pads.
    var pads: [Int]
    var autoPad: AutoPad
    var groups: Int
    var outputPadding: [Int]

    var kernel: [Int] { Array(weights.shape.dropFirst(2)) }

    var outputChannels: Int {
        transposed ? weights.shape[1] * groups : weights.shape[0]
    }

    var inputChannels: Int {
        transposed ? weights.shape[0] : weights.shape[1] * groups
    }

    /// Multiplies output channel `c` by `scale[c]` and then adds `shift[c]` (a folded BatchNorm).
    mutating func scaleOutputChannels(by scale: [Float], shift: [Float]) {
        var values = weights.floats
        let spatial = kernel.reduce(1, *)
        if transposed {
            let perGroup = weights.shape[1]
            let inputs = weights.shape[0]
            let inputsPerGroup = inputs / groups
            for input in 0..<inputs {
                let group = input / inputsPerGroup
                for local in 0..<perGroup {
                    let factor = scale[group * perGroup + local]
                    let start = (input * perGroup + local) * spatial
                    for index in start..<(start + spatial) { values[index] *= factor }
                }
            }
        } else {
            let perOutput = values.count / weights.shape[0]
            for output in 0..<weights.shape[0] {
                for index in (output * perOutput)..<((output + 1) * perOutput) { values[index] *= scale[output] }
            }
        }
        weights.elements = .float(values)
        let oldBias = bias ?? [Float](repeating: 0, count: outputChannels)
        bias = (0..<outputChannels).map { oldBias[$0] * scale[$0] + shift[$0] }
    }
}

/// A Gemm (or MatMul by a constant) as an inner product: weights [outputs, inputs], row-major.
struct InnerProduct {
    var weights: [Float]
    var outputs: Int
    var inputs: Int
    var bias: [Float]?

    mutating func scaleOutputs(by scale: [Float], shift: [Float]) {
        for output in 0..<outputs {
            for index in (output * inputs)..<((output + 1) * inputs) { weights[index] *= scale[output] }
        }
        let oldBias = bias ?? [Float](repeating: 0, count: outputs)
        bias = (0..<outputs).map { oldBias[$0] * scale[$0] + shift[$0] }
    }
}

struct Pooling {
    var maximum: Bool
    var kernel: [Int]
    var strides: [Int]
    var pads: [Int]
    var dilations: [Int]
    var ceilMode: Bool
    var countIncludePad: Bool
}

enum BinaryOperator {
    case add, sub, mul, div

    var algorithm: dnnl_alg_kind_t {
        switch self {
        case .add: dnnl_binary_add
        case .sub: dnnl_binary_sub
        case .mul: dnnl_binary_mul
        case .div: dnnl_binary_div
        }
    }

    func apply(_ lhs: Float, _ rhs: Float) -> Float {
        switch self {
        case .add: lhs + rhs
        case .sub: lhs - rhs
        case .mul: lhs * rhs
        case .div: lhs / rhs
        }
    }

    func apply(_ lhs: Int64, _ rhs: Int64) -> Int64? {
        switch self {
        case .add: lhs &+ rhs
        case .sub: lhs &- rhs
        case .mul: lhs &* rhs
        case .div: rhs == 0 ? nil : lhs / rhs
        }
    }
}

enum PadMode {
    case constant
    case reflect
}

/// What a node computes, its attributes decoded and checked.
enum Operation {
    case convolution(Convolution)
    case innerProduct(InnerProduct)
    /// Inference-mode BatchNormalization not preceded by a convolution: y = x * scale + shift per channel.
    case channelAffine(scale: [Float], shift: [Float])
    case instanceNormalization(scale: [Float], shift: [Float], epsilon: Float)
    case eltwise(Eltwise)
    case binary(BinaryOperator)
    case concat(axis: Int)
    /// Pads and fill value come from the node's constant inputs (opset 11+) or attributes.
    case pad(mode: PadMode, pads: [Int]?, value: Float)
    case pool(Pooling)
    case globalAveragePool
    case flatten(axis: Int)
    case reshape(allowZero: Bool)
    case squeeze(axes: [Int]?)
    case unsqueeze(axes: [Int]?)
    case softmax(axis: Int)
    case shape(start: Int, end: Int?)
    case gather(axis: Int)
    case castToFloat
    case castToInteger
}

/// A post-op a convolution or inner product carries after load-time fusion.
enum PlannedPostOp {
    case eltwise(Eltwise)
    /// Add the named value: fused as a sum post-op when the plan can write into its buffer.
    case sum(addend: String)
}

/// A node after lowering: its operation, resolved input names and fused post-ops.
struct LoweredNode {
    var name: String
    var op: String
    var operation: Operation
    var inputs: [String]
    var outputs: [String]
    var postOps: [PlannedPostOp] = []
}

/// The model after load: lowered nodes in execution order, constants, and the index of each
/// value's last reader (graph outputs are read "after the end").
struct LoweredGraph {
    var opsetVersion: Int
    var inputs: [TensorDescription]
    var outputs: [TensorDescription]
    /// Graph output name → the value that holds it (after Identity/Dropout removal).
    var outputValues: [String]
    var nodes: [LoweredNode]
    var constants: [String: ConstantTensor]
    var lastUse: [String: Int]

    init(_ graph: ONNXGraph) throws {
        opsetVersion = graph.opsetVersion
        inputs = graph.inputs
        outputs = graph.outputs
        var lowering = GraphLowering(graph: graph)
        try lowering.run()
        nodes = lowering.nodes
        constants = lowering.constants
        outputValues = graph.outputs.map { lowering.resolve($0.name) }
        var lastUse: [String: Int] = [:]
        for (index, node) in nodes.enumerated() {
            for input in node.inputs where !input.isEmpty { lastUse[input] = index }
            for postOp in node.postOps {
                if case .sum(let addend) = postOp { lastUse[addend] = index }
            }
        }
        for output in outputValues { lastUse[output] = Int.max }
        self.lastUse = lastUse
    }
}

/// Turns graph nodes into lowered nodes: decodes attributes, resolves constants, drops
/// Identity/Dropout, folds BatchNormalization into the convolution before it, and fuses
/// element-wise ops and residual adds into the producing convolution's post-ops.
private struct GraphLowering {
    let graph: ONNXGraph
    var nodes: [LoweredNode] = []
    var constants: [String: ConstantTensor]
    private var aliases: [String: String] = [:]
    /// How many nodes (and graph outputs) read each value, after aliases are resolved.
    private var readers: [String: Int] = [:]
    /// Which lowered node produces each value.
    private var producer: [String: Int] = [:]
    private var graphOutputs: Set<String> = []

    init(graph: ONNXGraph) {
        self.graph = graph
        constants = graph.initializers
    }

    func resolve(_ name: String) -> String {
        var name = name
        while let target = aliases[name] { name = target }
        return name
    }

    mutating func run() throws {
        for node in graph.nodes where node.op == "Identity" || node.op == "Dropout" {
            guard let input = node.inputs.first, let output = node.outputs.first else {
                throw EngineError(.malformedModel, node: node.name, op: node.op, "needs an input and an output")
            }
            aliases[output] = input
        }
        for node in graph.nodes {
            for input in node.inputs where !input.isEmpty { readers[resolve(input), default: 0] += 1 }
        }
        for output in graph.outputs {
            readers[resolve(output.name), default: 0] += 1
            graphOutputs.insert(resolve(output.name))
        }
        var defined = Set(graph.inputs.map(\.name)).union(constants.keys)
        for node in graph.nodes {
            for input in node.inputs where !input.isEmpty && !defined.contains(resolve(input)) {
                throw EngineError(.malformedModel, node: node.name, op: node.op,
                                  "input '\(input)' is not produced by any earlier node")
            }
            try lower(node)
            defined.formUnion(node.outputs)
        }
        for output in graph.outputs where !defined.contains(resolve(output.name)) {
            throw EngineError(.malformedModel, "graph output '\(output.name)' is never produced")
        }
    }

    private mutating func lower(_ node: GraphNode) throws {
        let decoder = NodeDecoder(node: node, opsetVersion: graph.opsetVersion, constants: constants, resolve: resolve)
        switch node.op {
        case "Identity", "Dropout":
            try decoder.allowAttributes(node.op == "Dropout" ? ["ratio", "seed", "training_mode"] : [])
            if node.op == "Dropout", node.outputs.count > 1, !node.outputs[1].isEmpty, readers[node.outputs[1]] != nil {
                throw EngineError(.unsupportedOperator, node: node.name, op: node.op, "the dropout mask output is used")
            }
        case "Constant":
            constants[node.outputs[0]] = try decoder.constantValue()
        case "BatchNormalization":
            try lowerBatchNormalization(decoder)
        default:
            let operation = try decoder.operation()
            var lowered = LoweredNode(name: node.name, op: node.op, operation: operation,
                                      inputs: node.inputs.map(resolve), outputs: node.outputs)
            if try fuseIntoProducer(&lowered) { return }
            append(lowered)
        }
    }

    private mutating func append(_ node: LoweredNode) {
        for output in node.outputs { producer[output] = nodes.count }
        nodes.append(node)
    }

    /// The convolution or inner product that produces `value`, if `value` has no other reader.
    private func fusibleProducer(of value: String) -> Int? {
        guard let index = producer[value], readers[value] == 1, !graphOutputs.contains(value) else { return nil }
        switch nodes[index].operation {
        case .convolution, .innerProduct: return index
        default: return nil
        }
    }

    private mutating func redirect(producer index: Int, from old: String, to new: String) {
        nodes[index].outputs = nodes[index].outputs.map { $0 == old ? new : $0 }
        producer[new] = index
        producer[old] = nil
    }

    private mutating func lowerBatchNormalization(_ decoder: NodeDecoder) throws {
        let (scale, shift) = try decoder.batchNormalizationAffine()
        let node = decoder.node
        let input = resolve(node.inputs[0])
        if let index = fusibleProducer(of: input), nodes[index].postOps.isEmpty {
            switch nodes[index].operation {
            case .convolution(var convolution) where convolution.outputChannels == scale.count:
                convolution.scaleOutputChannels(by: scale, shift: shift)
                nodes[index].operation = .convolution(convolution)
                redirect(producer: index, from: input, to: node.outputs[0])
                return
            case .innerProduct(var product) where product.outputs == scale.count:
                product.scaleOutputs(by: scale, shift: shift)
                nodes[index].operation = .innerProduct(product)
                redirect(producer: index, from: input, to: node.outputs[0])
                return
            default:
                break
            }
        }
        append(LoweredNode(name: node.name, op: node.op, operation: .channelAffine(scale: scale, shift: shift),
                           inputs: [input], outputs: [node.outputs[0]]))
    }

    /// Folds an element-wise node, a scaling by a scalar constant, or a residual Add into the
    /// convolution or inner product that produces its input. Returns whether it did.
    private mutating func fuseIntoProducer(_ node: inout LoweredNode) throws -> Bool {
        let postOp: PlannedPostOp
        let input: String
        switch node.operation {
        case .eltwise(let eltwise):
            input = node.inputs[0]
            postOp = .eltwise(eltwise)
        case .binary(let binary):
            let lhs = node.inputs[0], rhs = node.inputs[1]
            if let constant = constants[rhs], constant.count == 1, constants[lhs] == nil {
                input = lhs
                postOp = .eltwise(Self.linear(binary, constant: constant.floats[0], constantOnRight: true))
            } else if let constant = constants[lhs], constant.count == 1, constants[rhs] == nil, binary != .div {
                input = rhs
                postOp = .eltwise(Self.linear(binary, constant: constant.floats[0], constantOnRight: false))
            } else if binary == .add, constants[lhs] == nil, constants[rhs] == nil, lhs != rhs {
                // The addend must exist before the convolution runs.
                let candidates = [(lhs, rhs), (rhs, lhs)].filter { produced, addend in
                    guard let index = fusibleProducer(of: produced) else { return false }
                    return (producer[addend] ?? -1) < index
                }
                guard let (produced, addend) = candidates.first else { return false }
                input = produced
                postOp = .sum(addend: addend)
            } else {
                return false
            }
        default:
            return false
        }
        if let index = fusibleProducer(of: input) {
            if case .sum = postOp, nodes[index].postOps.contains(where: { if case .sum = $0 { true } else { false } }) {
                return false
            }
            // Consecutive linear post-ops compose into one (oneDNN 2.6's JIT convolution applies
            // the first one's coefficients to both when there are two).
            if case .eltwise(let outer) = postOp, outer.algorithm == dnnl_eltwise_linear,
               case .eltwise(let inner)? = nodes[index].postOps.last, inner.algorithm == dnnl_eltwise_linear {
                nodes[index].postOps[nodes[index].postOps.count - 1] = .eltwise(inner.followed(by: outer))
            } else {
                nodes[index].postOps.append(postOp)
            }
            redirect(producer: index, from: input, to: node.outputs[0])
            return true
        }
        // A linear scaling right after another standalone linear scaling composes into one.
        if case .eltwise(let outer) = postOp, outer.algorithm == dnnl_eltwise_linear,
           let index = producer[input], readers[input] == 1, !graphOutputs.contains(input),
           case .eltwise(let inner) = nodes[index].operation, inner.algorithm == dnnl_eltwise_linear {
            nodes[index].operation = .eltwise(inner.followed(by: outer))
            redirect(producer: index, from: input, to: node.outputs[0])
            return true
        }
        if case .eltwise(let eltwise) = postOp, case .binary = node.operation {
            node.operation = .eltwise(eltwise)
            node.inputs = [input]
        }
        return false
    }

    /// `x op c` (or `c op x`) as `alpha * x + beta`.
    private static func linear(_ binary: BinaryOperator, constant c: Float, constantOnRight: Bool) -> Eltwise {
        switch (binary, constantOnRight) {
        case (.add, _): .linear(scale: 1, shift: c)
        case (.sub, true): .linear(scale: 1, shift: -c)
        case (.sub, false): .linear(scale: -1, shift: c)
        case (.mul, _): .linear(scale: c, shift: 0)
        case (.div, _): .linear(scale: 1 / c, shift: 0)
        }
    }
}
