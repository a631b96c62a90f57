import CDNNL
import Foundation

/// Builds an `ExecutionPlan` for one set of input shapes: walks the lowered graph in order,
/// infers shapes, creates oneDNN primitives (weights in the layout oneDNN picks with
/// `format_tag_any`, reordered once; activations of whole channel blocks kept in nChw16c, or
/// nChw8c on a CPU without AVX-512, from layer to layer), and lays every activation out in one arena by liveness.
final class PlanBuilder {
    private enum Value {
        case constant(ConstantTensor)
        case activation(Int)
    }

    private enum StorageKind {
        case arena
        case input(Int)
        case output(Int)
    }

    private struct Storage {
        var bytes: Int
        var kind: StorageKind
        var activations = 0
        var firstStep = Int.max
        var lastStep = -1
        var offset = 0
    }

    private struct Activation {
        var shape: [Int]
        var descriptor: dnnl_memory_desc_t
        var storage: Int
        /// Where in the storage the activation starts (phases of a split deconvolution).
        var byteOffset = 0
    }

    private enum Argument {
        case activation(Int)
        case fixed(Memory)
        case scratchpad(dnnl_memory_desc_t)
    }

    private enum PendingWork {
        case primitive(Primitive, [(Int32, Argument)])
        case kernel(inputs: [Int], output: Int, (_ inputs: [UnsafePointer<Float>], _ output: UnsafeMutablePointer<Float>) -> Void)
    }

    private struct PendingStep {
        var name: String
        var category: StepCategory
        var flops: Double
        var serial = false
        var work: PendingWork
    }

    private let graph: LoweredGraph
    private let context: DNNLContext
    private var values: [String: Value] = [:]
    private var activations: [Activation] = []
    private var storages: [Storage] = []
    private var steps: [PendingStep] = []
    private var retained: [AnyObject] = []
    private var reorders: [Int: [(dnnl_memory_desc_t, Int)]] = [:]
    private var scratchpadBytes = 0
    /// The node being planned, for error messages and liveness checks.
    private var nodeIndex = 0

    private let weightsCache: WeightsCache

    init(graph: LoweredGraph, context: DNNLContext, weightsCache: WeightsCache) {
        self.graph = graph
        self.context = context
        self.weightsCache = weightsCache
    }

    func build(inputShapes: [[Int]]) throws -> ExecutionPlan {
        for (index, shape) in inputShapes.enumerated() {
            let storage = addStorage(bytes: 0, kind: .input(index))
            let descriptor = try dnnl_memory_desc_t.float32(shape)
            values[graph.inputs[index].name] = .activation(addActivation(shape: shape, descriptor: descriptor, storage: storage))
        }
        for (name, constant) in graph.constants { values[name] = .constant(constant) }
        for (index, node) in graph.nodes.enumerated() {
            nodeIndex = index
            do {
                try plan(node)
            } catch let error as EngineError where !error.namesNode {
                throw EngineError(error.code, node: node.name, op: node.op, error.message)
            }
        }
        var outputShapes: [[Int]] = []
        var constantOutputs: [Int: [Float]] = [:]
        for (index, name) in graph.outputValues.enumerated() {
            switch values[name] {
            case .activation(let id):
                let shape = activations[id].shape
                let storage = addStorage(bytes: 0, kind: .output(index))
                let output = addActivation(shape: shape, descriptor: try .float32(shape), storage: storage)
                try addReorder(from: id, to: output, name: "output '\(graph.outputs[index].name)'")
                outputShapes.append(shape)
            case .constant(let constant):
                constantOutputs[index] = constant.floats
                outputShapes.append(constant.shape)
            case nil:
                throw EngineError(.malformedModel, "graph output '\(graph.outputs[index].name)' is never produced")
            }
        }
        return try finish(outputShapes: outputShapes, constantOutputs: constantOutputs)
    }

    // MARK: - Nodes

    private func plan(_ node: LoweredNode) throws {
        switch node.operation {
        case .convolution(let convolution):
            try planConvolution(node, convolution)
        case .innerProduct(let product):
            try planInnerProduct(node, product)
        case .channelAffine(let scale, let shift):
            try planChannelAffine(node, scale: scale, shift: shift)
        case .instanceNormalization(let scale, let shift, let epsilon):
            try planInstanceNormalization(node, scale: scale, shift: shift, epsilon: epsilon)
        case .eltwise(let eltwise):
            let input = try activation(node.inputs[0])
            define(node.outputs[0], try addEltwise(eltwise, input: input, name: node.name))
        case .binary(let binary):
            try planBinary(node, binary)
        case .concat(let axis):
            try planConcat(node, axis: axis)
        case .pad(let mode, let pads, let value):
            try planPad(node, mode: mode, pads: pads, value: value)
        case .pool(let pooling):
            try planPooling(node, pooling)
        case .globalAveragePool:
            let input = try activation(node.inputs[0])
            let shape = activations[input].shape
            guard shape.count == 4 else { throw shapeError("expects a 4-D input, not \(shape)") }
            let pooling = Pooling(maximum: false, kernel: [shape[2], shape[3]], strides: [1, 1], pads: [0, 0, 0, 0],
                                  dilations: [1, 1], ceilMode: false, countIncludePad: false)
            try planPooling(node, pooling)
        case .flatten(let axis):
            let shape = try shapeOf(node.inputs[0])
            let split = try normalize(axis: axis, rank: shape.count, inclusive: true)
            try reshape(node, to: [shape[..<split].reduce(1, *), shape[split...].reduce(1, *)])
        case .reshape(let allowZero):
            try planReshape(node, allowZero: allowZero)
        case .squeeze(let axes):
            let shape = try shapeOf(node.inputs[0])
            let axes = try axes ?? optionalIntegers(node, input: 1)
            let remove = try axes.map { try Set($0.map { try normalize(axis: $0, rank: shape.count) }) }
            let squeezed = shape.enumerated().filter { index, dim in
                remove.map { !$0.contains(index) } ?? (dim != 1)
            }.map(\.element)
            try reshape(node, to: squeezed)
        case .unsqueeze(let axes):
            let shape = try shapeOf(node.inputs[0])
            guard let axes = try axes ?? optionalIntegers(node, input: 1) else { throw shapeError("needs axes") }
            let rank = shape.count + axes.count
            let inserted = Set(try axes.map { try normalize(axis: $0, rank: rank) })
            var remaining = shape.makeIterator()
            let expanded = (0..<rank).map { inserted.contains($0) ? 1 : remaining.next() ?? 1 }
            try reshape(node, to: expanded)
        case .softmax(let axis):
            try planSoftmax(node, axis: axis)
        case .shape(let start, let end):
            let shape = try shapeOf(node.inputs[0])
            let lower = min(max(start < 0 ? start + shape.count : start, 0), shape.count)
            let upperBound = end ?? shape.count
            let upper = min(max(upperBound < 0 ? upperBound + shape.count : upperBound, lower), shape.count)
            let dims = shape[lower..<upper].map { Int64($0) }
            define(node.outputs[0], ConstantTensor(integers: dims, shape: [dims.count]))
        case .gather(let axis):
            try planGather(node, axis: axis)
        case .castToFloat:
            switch try value(node.inputs[0]) {
            case .constant(let constant): define(node.outputs[0], ConstantTensor(floats: constant.floats, shape: constant.shape))
            case .activation(let id): define(node.outputs[0], id)
            }
        case .castToInteger:
            let constant = try constant(node.inputs[0], of: node)
            let integers = constant.integers ?? constant.floats.map { Int64($0) }
            define(node.outputs[0], ConstantTensor(integers: integers, shape: constant.shape))
        }
    }

    private func planConvolution(_ node: LoweredNode, _ convolution: Convolution) throws {
        let input = try activation(node.inputs[0])
        let shape = activations[input].shape
        guard shape.count == 4, shape[1] == convolution.inputChannels else {
            throw shapeError("input \(shape) does not fit weights \(convolution.weights.shape)")
        }
        let kernel = convolution.kernel
        let spatial = [shape[2], shape[3]]
        let effective = (0..<2).map { (kernel[$0] - 1) * convolution.dilations[$0] + 1 }
        var padBegin = Array(convolution.pads[0..<2]), padEnd = Array(convolution.pads[2..<4])
        if convolution.autoPad == .sameUpper || convolution.autoPad == .sameLower {
            for axis in 0..<2 {
                let output = (spatial[axis] + convolution.strides[axis] - 1) / convolution.strides[axis]
                let total = max(0, (output - 1) * convolution.strides[axis] + effective[axis] - spatial[axis])
                padBegin[axis] = convolution.autoPad == .sameUpper ? total / 2 : total - total / 2
                padEnd[axis] = total - padBegin[axis]
            }
        }
        let outputSpatial: [Int] = try (0..<2).map { axis in
            let size: Int
            if convolution.transposed {
                size = convolution.strides[axis] * (spatial[axis] - 1) + convolution.outputPadding[axis]
                    + effective[axis] - padBegin[axis] - padEnd[axis]
            } else {
                let span = spatial[axis] + padBegin[axis] + padEnd[axis] - effective[axis]
                size = span < 0 ? 0 : span / convolution.strides[axis] + 1
            }
            guard size > 0 else { throw shapeError("input \(shape) is too small for this kernel") }
            return size
        }
        if convolution.transposed {
            // oneDNN has no output padding: it is less padding at the end.
            padEnd = (0..<2).map { padEnd[$0] - convolution.outputPadding[$0] }
        }
        let outputShape = [shape[0], convolution.outputChannels] + outputSpatial
        let (fused, sumAddend, afterSum) = try splitAtSum(node.postOps, reading: node.inputs[0], outputShape: outputShape)
        let output: Int
        if sumAddend == nil, afterSum == nil, Self.runsAsSubpixelConvolutions(convolution) {
            output = try addSubpixelDeconvolution(input: input, convolution, outputShape: outputShape, postOps: fused,
                                                  name: node.name)
        } else {
            let destination = sumAddend.map { activations[$0] }
            output = try addConvolution(input: input, convolution, padBegin: padBegin, padEnd: padEnd,
                                        outputShape: outputShape, postOps: fused,
                                        destination: destination.map { ($0.descriptor, $0.storage, $0.byteOffset) },
                                        name: node.name)
        }
        try finishPostOps(node, output: output, afterSum: afterSum)
    }

    /// Creates one convolution or deconvolution primitive; returns its output activation, placed
    /// at `destination` (layout, storage, offset) when given (a fused residual sum, a phase of a
    /// split deconvolution).
    private func addConvolution(input: Int, _ convolution: Convolution, padBegin: [Int], padEnd: [Int],
                                outputShape: [Int], postOps: [FusedPostOp],
                                destination: (dnnl_memory_desc_t, Int, Int)?, name: String,
                                category: StepCategory? = nil) throws -> Int {
        let shape = activations[input].shape
        var (convolution, padBegin, padEnd) = (convolution, padBegin, padEnd)
        if !convolution.transposed {
            (convolution, padBegin, padEnd) = Self.trimmingPaddingOnlyTaps(
                convolution, input: Array(shape[2...]), output: Array(outputShape[2...]), padBegin: padBegin, padEnd: padEnd)
        }
        let kernel = convolution.kernel
        let groups = convolution.groups
        let (out, inPerGroup) = (convolution.outputChannels, convolution.inputChannels / groups)
        let weightDims = groups == 1
            ? [out, inPerGroup] + kernel
            : [groups, out / groups, inPerGroup] + kernel
        let userWeightsTag: dnnl_format_tag_t = switch (convolution.transposed, groups == 1) {
        case (false, true): dnnl_abcd
        case (false, false): dnnl_abcde
        case (true, true): dnnl_bacd
        case (true, false): dnnl_acbde
        }
        let multiplyAdds = convolution.transposed
            ? Double(shape.reduce(1, *)) * Double(out / groups * kernel.reduce(1, *))
            : Double(outputShape.reduce(1, *)) * Double(inPerGroup * kernel.reduce(1, *))
        // A convolution fixes its thread count when created: small ones get one thread.
        let serial = 2 * multiplyAdds < Self.serialFlopLimit
        let threads = omp_get_max_threads()
        if serial { omp_set_num_threads(1) }
        defer { omp_set_num_threads(threads) }
        var sourceDescriptor = try dnnl_memory_desc_t.float32(shape, layout: Self.activationLayout(channels: shape[1]))
        var weightsDescriptor = try dnnl_memory_desc_t.float32(weightDims, layout: .any)
        var biasDescriptor = try dnnl_memory_desc_t.float32([out])
        var destinationDescriptor = try destination?.0
            ?? dnnl_memory_desc_t.float32(outputShape, layout: Self.activationLayout(channels: out))
        let strides = convolution.strides.map { Int64($0) }
        let dilations = convolution.dilations.map { Int64($0 - 1) }
        let (left, right) = (padBegin.map { Int64($0) }, padEnd.map { Int64($0) })
        let hasBias = convolution.bias != nil
        let attributes = try PrimitiveAttributes(postOps: postOps)
        let descriptor: PrimitiveDescriptor
        if convolution.transposed {
            var desc = dnnl_deconvolution_desc_t()
            try dnnlCheck(withOptionalPointer(hasBias, &biasDescriptor) { bias in
                dnnl_dilated_deconvolution_forward_desc_init(
                    &desc, dnnl_forward_inference, dnnl_deconvolution_direct, &sourceDescriptor, &weightsDescriptor,
                    bias, &destinationDescriptor, strides, dilations, left, right)
            }, "describing the deconvolution")
            descriptor = try PrimitiveDescriptor(&desc, attributes: attributes, context: context, what: "creating the deconvolution")
        } else {
            var desc = dnnl_convolution_desc_t()
            try dnnlCheck(withOptionalPointer(hasBias, &biasDescriptor) { bias in
                dnnl_dilated_convolution_forward_desc_init(
                    &desc, dnnl_forward_inference, dnnl_convolution_direct, &sourceDescriptor, &weightsDescriptor,
                    bias, &destinationDescriptor, strides, dilations, left, right)
            }, "describing the convolution")
            descriptor = try PrimitiveDescriptor(&desc, attributes: attributes, context: context, what: "creating the convolution")
        }
        let source = try inLayout(input, descriptor.memoryDescriptor(dnnl_query_src_md))
        let weights = try weightsMemory(for: name, convolution.weights.floats, dims: weightDims, userTag: userWeightsTag,
                                        wanted: descriptor.memoryDescriptor(dnnl_query_weights_md))
        let output = if let (layout, storage, offset) = destination {
            addActivation(shape: outputShape, descriptor: layout, storage: storage, byteOffset: offset)
        } else {
            addActivation(shape: outputShape, descriptor: descriptor.memoryDescriptor(dnnl_query_dst_md))
        }
        var arguments: [(Int32, Argument)] = [(DNNL_ARG_SRC, .activation(source)), (DNNL_ARG_WEIGHTS, .fixed(weights)),
                                              (DNNL_ARG_DST, .activation(output))]
        if let bias = convolution.bias {
            arguments.append((DNNL_ARG_BIAS, .fixed(try constantMemory(bias, dims: [out]))))
        }
        try addPrimitive(descriptor, arguments, name: name,
                         category: category ?? (convolution.transposed ? .deconvolution : .convolution),
                         flops: 2 * multiplyAdds, serial: serial)
        return output
    }

    /// Drops kernel rows and columns that, at this input size, only ever meet padding (a 3×3
    /// convolution on a 1×1 input uses its centre tap alone). The result is the same; the plan
    /// reads fewer weights, which is what the deepest U-Net levels are bound by.
    private static func trimmingPaddingOnlyTaps(_ convolution: Convolution, input: [Int], output: [Int],
                                                padBegin: [Int], padEnd: [Int]) -> (Convolution, [Int], [Int]) {
        let unchanged = (convolution, padBegin, padEnd)
        let kernel = convolution.kernel
        var used: [ClosedRange<Int>] = []
        var (newBegin, newEnd) = (padBegin, padEnd)
        for axis in 0..<2 {
            let (stride, dilation) = (convolution.strides[axis], convolution.dilations[axis])
            let taps = (0..<kernel[axis]).filter { tap in
                (0..<output[axis]).contains { position in
                    (0..<input[axis]).contains(position * stride + tap * dilation - padBegin[axis])
                }
            }
            guard let first = taps.first, let last = taps.last else { return unchanged }
            used.append(first...last)
            newBegin[axis] = padBegin[axis] - first * dilation
            newEnd[axis] = (output[axis] - 1) * stride + (last - first) * dilation + 1 - input[axis] - newBegin[axis]
            guard newBegin[axis] >= 0, newEnd[axis] >= 0 else { return unchanged }
        }
        guard used[0].count < kernel[0] || used[1].count < kernel[1] else { return unchanged }
        let weights = convolution.weights.floats
        let planes = convolution.weights.shape[0] * convolution.weights.shape[1]
        var trimmed: [Float] = []
        trimmed.reserveCapacity(planes * used[0].count * used[1].count)
        for plane in 0..<planes {
            for row in used[0] {
                for column in used[1] { trimmed.append(weights[(plane * kernel[0] + row) * kernel[1] + column]) }
            }
        }
        var result = convolution
        result.weights = ConstantTensor(floats: trimmed, shape: Array(convolution.weights.shape[..<2]) + [used[0].count, used[1].count])
        result.pads = newBegin + newEnd
        return (result, newBegin, newEnd)
    }

    /// Whether a ConvTranspose is the U-Net's 4×4, stride-2, pad-1 upsampling: oneDNN 2.6 runs
    /// that as a deconvolution at a fraction of its convolution speed (a few GFLOP/s for the
    /// final 3-channel layer), so the plan splits it into four 2×2 convolutions instead.
    private static func runsAsSubpixelConvolutions(_ convolution: Convolution) -> Bool {
        convolution.transposed && convolution.groups == 1 && convolution.kernel == [4, 4]
            && convolution.strides == [2, 2] && convolution.pads == [1, 1, 1, 1] && convolution.autoPad == .explicit
            && convolution.dilations == [1, 1] && convolution.outputPadding == [0, 0]
    }

    /// A 4×4 stride-2 pad-1 transposed convolution as four stride-1 2×2 convolutions, one per
    /// output pixel phase (row parity a, column parity b), written side by side in the blocked layout
    /// (channels padded to a whole block) and interleaved into the output by one reorder. Output pixel (2m + a, 2p + b) takes input rows
    /// m - 1, m (a = 0; kernel rows 3, 1) or m, m + 1 (a = 1; kernel rows 2, 0), same for columns.
    private func addSubpixelDeconvolution(input: Int, _ convolution: Convolution, outputShape: [Int],
                                          postOps: [FusedPostOp], name: String) throws -> Int {
        let shape = activations[input].shape
        let (batch, inputs, height, width) = (shape[0], shape[1], shape[2], shape[3])
        let outputs = convolution.outputChannels
        let phaseShape = [batch, outputs, height, width]
        let block = Self.channelBlock
        let phaseLayout = try dnnl_memory_desc_t.float32(phaseShape, layout: .tag(Self.blockedTag))
        let phaseBytes = phaseLayout.byteCount
        let phases = addStorage(bytes: 0, kind: .arena)
        let weights = convolution.weights.floats
        let taps = [[3, 1], [2, 0]]
        for a in 0..<2 {
            for b in 0..<2 {
                var phaseWeights = [Float](repeating: 0, count: outputs * inputs * 4)
                for output in 0..<outputs {
                    for input in 0..<inputs {
                        for row in 0..<2 {
                            for column in 0..<2 {
                                phaseWeights[((output * inputs + input) * 2 + row) * 2 + column] =
                                    weights[((input * outputs + output) * 4 + taps[a][row]) * 4 + taps[b][column]]
                            }
                        }
                    }
                }
                let phase = Convolution(transposed: false,
                                        weights: ConstantTensor(floats: phaseWeights, shape: [outputs, inputs, 2, 2]),
                                        bias: convolution.bias, strides: [1, 1], dilations: [1, 1],
                                        pads: [1 - a, 1 - b, a, b], autoPad: .explicit, groups: 1, outputPadding: [0, 0])
                _ = try addConvolution(input: input, phase, padBegin: [1 - a, 1 - b], padEnd: [a, b],
                                       outputShape: phaseShape, postOps: postOps,
                                       destination: (phaseLayout, phases, (a * 2 + b) * phaseBytes),
                                       name: "\(name) phase \(a)\(b)", category: .deconvolution)
            }
        }
        // Both sides as plain 7-D tensors [n, channel block, m, a, p, b, B]: the phases are
        // stored [a][b][n][block][m][p][B], the blocked output [n][block][m][a][p][b][B].
        let blocks = (outputs + block - 1) / block
        let phaseElements = Int64(batch * blocks * height * width * block)
        let dims = [batch, blocks, height, 2, width, 2, block].map { Int64($0) }
        let phaseStrides: [Int64] = [Int64(blocks * height * width * block), Int64(height * width * block), Int64(width * block),
                                     2 * phaseElements, Int64(block), phaseElements, 1]
        var interleavedView = dnnl_memory_desc_t()
        try dnnlCheck(dnnl_memory_desc_init_by_strides(&interleavedView, 7, dims, dnnl_f32, phaseStrides),
                      "describing the deconvolution phases")
        let source = addActivation(shape: dims.map { Int($0) }, descriptor: interleavedView, storage: phases)
        let output = addActivation(shape: outputShape, descriptor: try .float32(outputShape, layout: .tag(Self.blockedTag)))
        let destination = addActivation(shape: dims.map { Int($0) }, descriptor: try .float32(dims.map { Int($0) }),
                                        storage: activations[output].storage)
        try addReorder(from: source, to: destination, name: "\(name) interleave", category: .deconvolution)
        return output
    }

    private func planInnerProduct(_ node: LoweredNode, _ product: InnerProduct) throws {
        var input = try activation(node.inputs[0])
        let shape = activations[input].shape
        guard shape.count == 2, shape[1] == product.inputs else {
            throw shapeError("input \(shape) does not fit a [\(product.outputs), \(product.inputs)] matrix")
        }
        let outputShape = [shape[0], product.outputs]
        let (fused, sumAddend, afterSum) = try splitAtSum(node.postOps, reading: node.inputs[0], outputShape: outputShape)
        var sourceDescriptor = try dnnl_memory_desc_t.float32(shape, layout: .any)
        var weightsDescriptor = try dnnl_memory_desc_t.float32([product.outputs, product.inputs], layout: .any)
        var biasDescriptor = try dnnl_memory_desc_t.float32([product.outputs])
        var destinationDescriptor = try sumAddend.map { activations[$0].descriptor }
            ?? dnnl_memory_desc_t.float32(outputShape, layout: .any)
        var desc = dnnl_inner_product_desc_t()
        try dnnlCheck(withOptionalPointer(product.bias != nil, &biasDescriptor) { bias in
            dnnl_inner_product_forward_desc_init(&desc, dnnl_forward_inference, &sourceDescriptor, &weightsDescriptor,
                                                 bias, &destinationDescriptor)
        }, "describing the inner product")
        let attributes = try PrimitiveAttributes(postOps: fused)
        let descriptor = try PrimitiveDescriptor(&desc, attributes: attributes, context: context,
                                                 what: "creating the inner product")
        input = try inLayout(input, descriptor.memoryDescriptor(dnnl_query_src_md))
        let weights = try weightsMemory(for: node.name, product.weights, dims: [product.outputs, product.inputs], userTag: dnnl_ab,
                                        wanted: descriptor.memoryDescriptor(dnnl_query_weights_md))
        let output = sumAddend.map {
            addActivation(shape: outputShape, descriptor: activations[$0].descriptor, storage: activations[$0].storage)
        } ?? addActivation(shape: outputShape, descriptor: descriptor.memoryDescriptor(dnnl_query_dst_md))
        var arguments: [(Int32, Argument)] = [(DNNL_ARG_SRC, .activation(input)), (DNNL_ARG_WEIGHTS, .fixed(weights)),
                                              (DNNL_ARG_DST, .activation(output))]
        if let bias = product.bias {
            arguments.append((DNNL_ARG_BIAS, .fixed(try constantMemory(bias, dims: [product.outputs]))))
        }
        try addPrimitive(descriptor, arguments, name: node.name, category: .innerProduct,
                         flops: 2 * Double(shape[0] * product.outputs * product.inputs))
        try finishPostOps(node, output: output, afterSum: afterSum)
    }

    /// Splits fused post-ops at a residual sum. The sum stays fused, in its place among the
    /// post-ops (an activation after it applies to the sum), only when the addend's buffer may be
    /// overwritten: it is computed already, read by nothing later (the producing step's own
    /// `source` included), not a caller's buffer, and of the same shape. Otherwise the sum and
    /// what follows it run as a separate binary step.
    private func splitAtSum(_ postOps: [PlannedPostOp], reading source: String, outputShape: [Int]) throws
        -> (fused: [FusedPostOp], sumAddend: Int?, afterSum: (addend: String, postOps: [Eltwise])?) {
        var fused: [FusedPostOp] = []
        for (index, postOp) in postOps.enumerated() {
            switch postOp {
            case .eltwise(let eltwise):
                fused.append(.eltwise(eltwise))
            case .sum(let addend):
                let rest = postOps[(index + 1)...].compactMap { postOp -> Eltwise? in
                    if case .eltwise(let eltwise) = postOp { eltwise } else { nil }
                }
                if addend != source, case .activation(let id) = values[addend], graph.lastUse[addend] == nodeIndex,
                   activations[id].shape == outputShape, case .arena = storages[activations[id].storage].kind,
                   storages[activations[id].storage].activations == 1 {
                    return (fused + [.sum] + rest.map { .eltwise($0) }, id, nil)
                }
                return (fused, nil, (addend, rest))
            }
        }
        return (fused, nil, nil)
    }

    private func finishPostOps(_ node: LoweredNode, output: Int, afterSum: (addend: String, postOps: [Eltwise])?) throws {
        guard let afterSum else {
            define(node.outputs[0], output)
            return
        }
        let addend = try activation(afterSum.addend)
        define(node.outputs[0], try addBinary(.add, output, addend, postOps: afterSum.postOps, name: node.name))
    }

    private func planChannelAffine(_ node: LoweredNode, scale: [Float], shift: [Float]) throws {
        let input = try activation(node.inputs[0])
        let shape = activations[input].shape
        guard shape.count >= 2, shape[1] == scale.count else { throw shapeError("input \(shape) has not \(scale.count) channels") }
        var data = activations[input].descriptor
        var desc = dnnl_batch_normalization_desc_t()
        // y = (x - 0) / sqrt(1 + 0) * scale + shift
        let flags = dnnl_use_global_stats.rawValue | dnnl_use_scale.rawValue | dnnl_use_shift.rawValue
        try dnnlCheck(dnnl_batch_normalization_forward_desc_init(&desc, dnnl_forward_inference, &data, 0, flags),
                      "describing the batch normalization")
        let descriptor = try PrimitiveDescriptor(&desc, attributes: try PrimitiveAttributes(), context: context,
                                                 what: "creating the batch normalization")
        let output = addActivation(shape: shape, descriptor: descriptor.memoryDescriptor(dnnl_query_dst_md))
        let channels = scale.count
        try addPrimitive(descriptor, [
            (DNNL_ARG_SRC, .activation(input)), (DNNL_ARG_DST, .activation(output)),
            (DNNL_ARG_MEAN, .fixed(try constantMemory([Float](repeating: 0, count: channels), dims: [channels]))),
            (DNNL_ARG_VARIANCE, .fixed(try constantMemory([Float](repeating: 1, count: channels), dims: [channels]))),
            (DNNL_ARG_SCALE, .fixed(try constantMemory(scale, dims: [channels]))),
            (DNNL_ARG_SHIFT, .fixed(try constantMemory(shift, dims: [channels]))),
        ], name: node.name, category: .normalization, flops: 2 * Double(shape.reduce(1, *)))
        define(node.outputs[0], output)
    }

    private func planInstanceNormalization(_ node: LoweredNode, scale: [Float], shift: [Float], epsilon: Float) throws {
        let input = try plain(try activation(node.inputs[0]))
        let shape = activations[input].shape
        guard shape.count >= 3, shape[1] == scale.count else { throw shapeError("input \(shape) has not \(scale.count) channels") }
        let output = addActivation(shape: shape, descriptor: try .float32(shape))
        let (planes, channels, planeSize) = (shape[0] * shape[1], shape[1], shape[2...].reduce(1, *))
        addKernel(name: node.name, category: .normalization, flops: 6 * Double(shape.reduce(1, *)),
                  inputs: [input], output: output) { inputs, output in
            for plane in 0..<planes {
                let source = inputs[0] + plane * planeSize, destination = output + plane * planeSize
                var sum = 0.0
                for index in 0..<planeSize { sum += Double(source[index]) }
                let mean = sum / Double(planeSize)
                var squares = 0.0
                for index in 0..<planeSize {
                    let centered = Double(source[index]) - mean
                    squares += centered * centered
                }
                let inverse = 1 / (squares / Double(planeSize) + Double(epsilon)).squareRoot()
                let factor = Float(inverse) * scale[plane % channels]
                let offset = shift[plane % channels] - Float(mean) * factor
                for index in 0..<planeSize { destination[index] = source[index] * factor + offset }
            }
        }
        define(node.outputs[0], output)
    }

    private func planBinary(_ node: LoweredNode, _ binary: BinaryOperator) throws {
        let lhs = try value(node.inputs[0]), rhs = try value(node.inputs[1])
        switch (lhs, rhs) {
        case (.constant(let a), .constant(let b)):
            define(node.outputs[0], try fold(binary, a, b))
        case (.activation(let a), .activation(let b)):
            let (aShape, bShape) = (activations[a].shape, activations[b].shape)
            if aShape == bShape || broadcasts(bShape, to: aShape) {
                define(node.outputs[0], try addBinary(binary, a, b, postOps: [], name: node.name))
            } else if broadcasts(aShape, to: bShape), binary == .add || binary == .mul {
                define(node.outputs[0], try addBinary(binary, b, a, postOps: [], name: node.name))
            } else {
                throw shapeError("cannot broadcast \(aShape) and \(bShape)")
            }
        case (.activation(let a), .constant(let c)):
            let shape = activations[a].shape
            let constant = try constantOperand(c, broadcastTo: shape)
            define(node.outputs[0], try addBinary(binary, a, constant, postOps: [], name: node.name))
        case (.constant(let c), .activation(let a)):
            let shape = activations[a].shape
            let constant = try constantOperand(c, broadcastTo: shape)
            switch binary {
            case .add, .mul:
                define(node.outputs[0], try addBinary(binary, a, constant, postOps: [], name: node.name))
            case .sub:
                let negated = try addEltwise(.linear(scale: -1, shift: 0), input: a, name: node.name)
                define(node.outputs[0], try addBinary(.add, negated, constant, postOps: [], name: node.name))
            case .div:
                throw EngineError(.unsupportedOperator, node: node.name, op: node.op,
                                  "dividing a constant by a computed tensor is not supported")
            }
        }
    }

    /// A constant as a binary operand: its own activation-like memory, rank-matched to `shape`.
    private func constantOperand(_ constant: ConstantTensor, broadcastTo shape: [Int]) throws -> Int {
        guard constant.shape.count <= shape.count else { throw shapeError("constant \(constant.shape) outranks \(shape)") }
        let dims = [Int](repeating: 1, count: shape.count - constant.shape.count) + constant.shape
        guard broadcasts(dims, to: shape) else { throw shapeError("cannot broadcast \(constant.shape) to \(shape)") }
        let memory = try constantMemory(constant.floats, dims: dims)
        let storage = addStorage(bytes: 0, kind: .arena)
        let id = addActivation(shape: dims, descriptor: memory.descriptor, storage: storage)
        fixedActivations[id] = memory
        return id
    }

    /// Activations backed by a constant memory rather than the arena (binary operands).
    private var fixedActivations: [Int: Memory] = [:]

    private func planConcat(_ node: LoweredNode, axis: Int) throws {
        let inputs = try node.inputs.map { try value($0) }
        if inputs.allSatisfy({ if case .constant = $0 { true } else { false } }) {
            let constants = inputs.compactMap { if case .constant(let c) = $0 { c } else { nil } }
            guard constants.allSatisfy({ $0.shape.count == 1 }) else { throw shapeError("only 1-D constants concatenate") }
            if constants.allSatisfy({ $0.integers != nil }) {
                let integers = constants.flatMap { $0.integers ?? [] }
                define(node.outputs[0], ConstantTensor(integers: integers, shape: [integers.count]))
            } else {
                let floats = constants.flatMap(\.floats)
                define(node.outputs[0], ConstantTensor(floats: floats, shape: [floats.count]))
            }
            return
        }
        let ids = try node.inputs.map { try activation($0) }
        let first = activations[ids[0]].shape
        let axis = try normalize(axis: axis, rank: first.count)
        for id in ids {
            let shape = activations[id].shape
            guard shape.count == first.count,
                  shape.indices.allSatisfy({ $0 == axis || shape[$0] == first[$0] }) else {
                throw shapeError("cannot concatenate \(first) and \(shape) along axis \(axis)")
            }
        }
        var outputShape = first
        outputShape[axis] = ids.reduce(0) { $0 + activations[$1].shape[axis] }
        let sources = ids.map { activations[$0].descriptor }
        let attributes = try PrimitiveAttributes()
        var handle: dnnl_primitive_desc_t?
        try dnnlCheck(sources.withUnsafeBufferPointer { buffer in
            dnnl_concat_primitive_desc_create(&handle, nil, Int32(sources.count), Int32(axis), buffer.baseAddress,
                                              attributes.handle, context.engine)
        }, "creating the concat")
        guard let handle else { throw EngineError(.backendFailure, "oneDNN returned no concat descriptor") }
        let descriptor = PrimitiveDescriptor(adopting: handle)
        let output = addActivation(shape: outputShape, descriptor: descriptor.memoryDescriptor(dnnl_query_dst_md))
        var arguments: [(Int32, Argument)] = [(DNNL_ARG_DST, .activation(output))]
        for (index, id) in ids.enumerated() { arguments.append((DNNL_ARG_MULTIPLE_SRC + Int32(index), .activation(id))) }
        try addPrimitive(descriptor, arguments, name: node.name, category: .concat, flops: 0)
        define(node.outputs[0], output)
    }

    private func planPad(_ node: LoweredNode, mode: PadMode, pads: [Int]?, value fill: Float) throws {
        let input = try plain(try activation(node.inputs[0]))
        let shape = activations[input].shape
        let pads = try pads ?? optionalIntegers(node, input: 1) ?? []
        guard pads.count == 2 * shape.count else { throw shapeError("pads \(pads) do not fit \(shape)") }
        let rank = shape.count
        let before = Array(pads[..<rank]), after = Array(pads[rank...])
        guard pads.allSatisfy({ $0 >= 0 && $0 <= 1 << 16 }) else {
            throw EngineError(.invalidAttribute, node: node.name, op: node.op, "pads \(pads) are negative or out of range")
        }
        if mode == .reflect {
            guard rank >= 2, (0..<(rank - 2)).allSatisfy({ before[$0] == 0 && after[$0] == 0 }),
                  (0..<rank).allSatisfy({ before[$0] < shape[$0] && after[$0] < shape[$0] }) else {
                throw shapeError("reflect pads \(pads) must be spatial and smaller than \(shape)")
            }
        }
        let outputShape = (0..<rank).map { shape[$0] + before[$0] + after[$0] }
        let output = addActivation(shape: outputShape, descriptor: try .float32(outputShape))
        let inputStrides = Self.strides(shape), outputStrides = Self.strides(outputShape)
        let total = outputShape.reduce(1, *)
        addKernel(name: node.name, category: .other, flops: 0, inputs: [input], output: output) { inputs, output in
            for index in 0..<total {
                var remainder = index, source = 0, inside = true
                for axis in 0..<rank {
                    var position = remainder / outputStrides[axis] - before[axis]
                    remainder %= outputStrides[axis]
                    if position < 0 || position >= shape[axis] {
                        if mode == .constant {
                            inside = false
                            break
                        }
                        position = position < 0 ? -position : 2 * (shape[axis] - 1) - position
                    }
                    source += position * inputStrides[axis]
                }
                output[index] = inside ? inputs[0][source] : fill
            }
        }
        define(node.outputs[0], output)
    }

    private func planPooling(_ node: LoweredNode, _ pooling: Pooling) throws {
        let input = try activation(node.inputs[0])
        let shape = activations[input].shape
        guard shape.count == 4 else { throw shapeError("expects a 4-D input, not \(shape)") }
        var padEnd = Array(pooling.pads[2..<4])
        let padBegin = Array(pooling.pads[0..<2])
        let outputSpatial: [Int] = try (0..<2).map { axis in
            let effective = (pooling.kernel[axis] - 1) * pooling.dilations[axis] + 1
            let span = shape[axis + 2] + padBegin[axis] + padEnd[axis] - effective
            guard span >= 0 else { throw shapeError("input \(shape) is smaller than the pooling window") }
            var size = (pooling.ceilMode ? (span + pooling.strides[axis] - 1) : span) / pooling.strides[axis] + 1
            // A window may not start in the end padding (ONNX/PyTorch rule).
            if pooling.ceilMode, (size - 1) * pooling.strides[axis] >= shape[axis + 2] + padBegin[axis] { size -= 1 }
            padEnd[axis] = (size - 1) * pooling.strides[axis] + effective - shape[axis + 2] - padBegin[axis]
            return size
        }
        let outputShape = [shape[0], shape[1]] + outputSpatial
        var source = activations[input].descriptor
        var destination = try dnnl_memory_desc_t.float32(outputShape, layout: .any)
        let algorithm = pooling.maximum ? dnnl_pooling_max
            : pooling.countIncludePad ? dnnl_pooling_avg_include_padding : dnnl_pooling_avg_exclude_padding
        if !pooling.maximum, pooling.countIncludePad, padEnd != Array(pooling.pads[2..<4]) {
            throw EngineError(.invalidAttribute, node: node.name, op: node.op,
                              "ceil_mode with count_include_pad is not supported")
        }
        var desc = dnnl_pooling_v2_desc_t()
        try dnnlCheck(dnnl_pooling_v2_forward_desc_init(
            &desc, dnnl_forward_inference, algorithm, &source, &destination, pooling.strides.map { Int64($0) },
            pooling.kernel.map { Int64($0) }, pooling.dilations.map { Int64($0 - 1) }, padBegin.map { Int64($0) },
            padEnd.map { Int64($0) }), "describing the pooling")
        let descriptor = try PrimitiveDescriptor(&desc, attributes: try PrimitiveAttributes(), context: context,
                                                 what: "creating the pooling")
        let output = addActivation(shape: outputShape, descriptor: descriptor.memoryDescriptor(dnnl_query_dst_md))
        try addPrimitive(descriptor, [(DNNL_ARG_SRC, .activation(input)), (DNNL_ARG_DST, .activation(output))],
                         name: node.name, category: .pooling,
                         flops: Double(outputShape.reduce(1, *) * pooling.kernel.reduce(1, *)))
        define(node.outputs[0], output)
    }

    private func planReshape(_ node: LoweredNode, allowZero: Bool) throws {
        let shape = try shapeOf(node.inputs[0])
        guard let target = try optionalIntegers(node, input: 1) else { throw shapeError("needs a constant shape") }
        var resolved = target.enumerated().map { index, dim in
            dim == 0 && !allowZero && index < shape.count ? shape[index] : dim
        }
        let known = resolved.filter { $0 != -1 }.reduce(1, *)
        if let inferred = resolved.firstIndex(of: -1) {
            guard known > 0, shape.reduce(1, *) % known == 0 else { throw shapeError("cannot reshape \(shape) to \(target)") }
            resolved[inferred] = shape.reduce(1, *) / known
        }
        try reshape(node, to: resolved)
    }

    /// Gives `node`'s output the data of its first input under a new shape.
    private func reshape(_ node: LoweredNode, to shape: [Int]) throws {
        switch try value(node.inputs[0]) {
        case .constant(var constant):
            guard shape.reduce(1, *) == constant.count else { throw shapeError("cannot reshape \(constant.shape) to \(shape)") }
            constant.shape = shape
            define(node.outputs[0], constant)
        case .activation(let id):
            guard shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) == activations[id].shape.reduce(1, *) else {
                throw shapeError("cannot reshape \(activations[id].shape) to \(shape)")
            }
            let source = try plain(id)
            define(node.outputs[0], addActivation(shape: shape, descriptor: try .float32(shape),
                                                  storage: activations[source].storage))
        }
    }

    private func planSoftmax(_ node: LoweredNode, axis: Int) throws {
        let input = try activation(node.inputs[0])
        let shape = activations[input].shape
        let axis = try normalize(axis: axis, rank: shape.count)
        if axis != shape.count - 1, graph.opsetVersion < 13 {
            throw EngineError(.invalidAttribute, node: node.name, op: node.op,
                              "softmax over flattened trailing axes (opset < 13) is supported only on the last axis")
        }
        var data = activations[input].descriptor
        var desc = dnnl_softmax_desc_t()
        try dnnlCheck(dnnl_softmax_forward_desc_init(&desc, dnnl_forward_inference, &data, Int32(axis)),
                      "describing the softmax")
        let descriptor = try PrimitiveDescriptor(&desc, attributes: try PrimitiveAttributes(), context: context,
                                                 what: "creating the softmax")
        let output = addActivation(shape: shape, descriptor: descriptor.memoryDescriptor(dnnl_query_dst_md))
        try addPrimitive(descriptor, [(DNNL_ARG_SRC, .activation(input)), (DNNL_ARG_DST, .activation(output))],
                         name: node.name, category: .elementwise, flops: 0)
        define(node.outputs[0], output)
    }

    private func planGather(_ node: LoweredNode, axis: Int) throws {
        let data = try constant(node.inputs[0], of: node)
        let indices = try constant(node.inputs[1], of: node)
        guard data.shape.count == 1, try normalize(axis: axis, rank: 1) == 0, let positions = indices.integers else {
            throw EngineError(.unsupportedOperator, node: node.name, op: node.op,
                              "only gathering integer indices from a 1-D constant (a shape) is supported")
        }
        let count = data.shape[0]
        let picked = try positions.map { position -> Int in
            let index = Int(position < 0 ? position + Int64(count) : position)
            guard (0..<count).contains(index) else { throw shapeError("index \(position) is out of range") }
            return index
        }
        let elements: ConstantTensor.Elements = switch data.elements {
        case .float(let values): .float(picked.map { values[$0] })
        case .int64(let values): .int64(picked.map { values[$0] })
        }
        define(node.outputs[0], ConstantTensor(shape: indices.shape, elements: elements))
    }

    // MARK: - Building blocks

    /// The layout for a convolution's source and destination. Left to oneDNN, 2.6 picks NHWC
    /// for convolutions (brgconv) but nChw16c for deconvolutions, and every switch between them
    /// costs a reorder and a slow mixed-layout concat; so wide tensors are pinned to the
    /// blocked layout.
    private static func activationLayout(channels: Int) -> MemoryLayoutChoice {
        channels % channelBlock == 0 ? .tag(blockedTag) : .any
    }

    /// The channel block of the blocked activation layout: the floats in one vector register,
    /// 16 with AVX-512 and 8 with AVX2. oneDNN's JIT convolutions take only their own ISA's
    /// block; given the other, it falls back to reference kernels a hundred times slower.
    static let channelBlock: Int = {
        let avx512Core = dnnl_cpu_isa_avx512_core.rawValue
        return dnnl_get_effective_cpu_isa().rawValue & avx512Core == avx512Core ? 16 : 8
    }()

    /// nChw16c or nChw8c, after ``channelBlock``.
    static var blockedTag: dnnl_format_tag_t { channelBlock == 16 ? dnnl_aBcd16b : dnnl_aBcd8b }

    private func addEltwise(_ eltwise: Eltwise, input: Int, name: String) throws -> Int {
        var data = activations[input].descriptor
        var desc = dnnl_eltwise_desc_t()
        try dnnlCheck(dnnl_eltwise_forward_desc_init(&desc, dnnl_forward_inference, eltwise.algorithm, &data,
                                                     eltwise.alpha, eltwise.beta), "describing the element-wise op")
        let descriptor = try PrimitiveDescriptor(&desc, attributes: try PrimitiveAttributes(), context: context,
                                                 what: "creating the element-wise op")
        let output = addActivation(shape: activations[input].shape, descriptor: descriptor.memoryDescriptor(dnnl_query_dst_md))
        try addPrimitive(descriptor, [(DNNL_ARG_SRC, .activation(input)), (DNNL_ARG_DST, .activation(output))],
                         name: name, category: .elementwise, flops: Double(activations[input].shape.reduce(1, *)))
        return output
    }

    /// `lhs op rhs` with `rhs` broadcast to `lhs`'s shape, then `postOps`.
    private func addBinary(_ binary: BinaryOperator, _ lhs: Int, _ rhs: Int, postOps: [Eltwise], name: String) throws -> Int {
        var rhs = rhs
        if activations[rhs].shape == activations[lhs].shape, fixedActivations[rhs] == nil {
            rhs = try inLayout(rhs, activations[lhs].descriptor)
        }
        var source0 = activations[lhs].descriptor, source1 = activations[rhs].descriptor
        var destination = activations[lhs].descriptor
        var desc = dnnl_binary_desc_t()
        try dnnlCheck(dnnl_binary_desc_init(&desc, binary.algorithm, &source0, &source1, &destination),
                      "describing the binary op")
        let descriptor = try PrimitiveDescriptor(&desc, attributes: try PrimitiveAttributes(postOps: postOps.map { .eltwise($0) }),
                                                 context: context, what: "creating the binary op")
        let output = addActivation(shape: activations[lhs].shape, descriptor: descriptor.memoryDescriptor(dnnl_query_dst_md))
        try addPrimitive(descriptor, [(DNNL_ARG_SRC_0, .activation(lhs)), (DNNL_ARG_SRC_1, .activation(rhs)),
                                      (DNNL_ARG_DST, .activation(output))],
                         name: name, category: .elementwise, flops: Double(activations[lhs].shape.reduce(1, *)))
        return output
    }

    /// `id` in layout `descriptor`, reordered once (and shared by later readers) if it differs.
    private func inLayout(_ id: Int, _ descriptor: dnnl_memory_desc_t) throws -> Int {
        if activations[id].descriptor.isSameLayout(as: descriptor) { return id }
        if let existing = reorders[id]?.first(where: { $0.0.isSameLayout(as: descriptor) }) { return existing.1 }
        let output = addActivation(shape: activations[id].shape, descriptor: descriptor)
        try addReorder(from: id, to: output, name: "reorder")
        reorders[id, default: []].append((descriptor, output))
        return output
    }

    private func plain(_ id: Int) throws -> Int {
        try inLayout(id, .float32(activations[id].shape))
    }

    private func addReorder(from source: Int, to destination: Int, name: String,
                            category: StepCategory = .reorder) throws {
        var sourceDescriptor = activations[source].descriptor, destinationDescriptor = activations[destination].descriptor
        let attributes = try PrimitiveAttributes()
        var handle: dnnl_primitive_desc_t?
        try dnnlCheck(dnnl_reorder_primitive_desc_create(&handle, &sourceDescriptor, context.engine, &destinationDescriptor,
                                                         context.engine, attributes.handle), "creating a reorder")
        guard let handle else { throw EngineError(.backendFailure, "oneDNN returned no reorder descriptor") }
        try addPrimitive(PrimitiveDescriptor(adopting: handle),
                         [(DNNL_ARG_FROM, .activation(source)), (DNNL_ARG_TO, .activation(destination))],
                         name: name, category: category, flops: 0)
    }

    /// Adds a step for `descriptor`. It runs serially when `serial` says so, or, by default,
    /// when it picks its threads at execution and its output is small.
    private func addPrimitive(_ descriptor: PrimitiveDescriptor, _ arguments: [(Int32, Argument)], name: String,
                              category: StepCategory, flops: Double, serial: Bool? = nil) throws {
        let primitive = try Primitive(descriptor, what: "creating \(name)")
        var arguments = arguments
        let scratchpad = descriptor.scratchpadBytes
        if scratchpad > 0 {
            scratchpadBytes = max(scratchpadBytes, scratchpad)
            arguments.append((DNNL_ARG_SCRATCHPAD, .scratchpad(descriptor.memoryDescriptor(dnnl_query_scratchpad_md))))
        }
        let serial = serial ?? (Self.threadedAtExecution.contains(descriptor.primitiveKind.rawValue)
            && descriptor.memoryDescriptor(dnnl_query_dst_md).shape.reduce(1, *) < Self.serialElementLimit)
        steps.append(PendingStep(name: name, category: category, flops: flops, serial: serial,
                                 work: .primitive(primitive, arguments)))
    }

    /// Primitives that pick their thread count when they run (the convolutions fix theirs when
    /// created). Below `serialElementLimit` elements they run on the calling thread alone:
    /// waking the OpenMP team costs more than the work, and far more on a busy machine.
    private static let threadedAtExecution = Set([dnnl_reorder, dnnl_eltwise, dnnl_concat, dnnl_binary, dnnl_softmax,
                                                  dnnl_pooling_v2].map(\.rawValue))
    private static let serialElementLimit = 1 << 16
    /// Convolutions below this many floating-point operations (tens of microseconds) get one thread.
    private static let serialFlopLimit = 4e6

    private func addKernel(name: String, category: StepCategory, flops: Double, inputs: [Int], output: Int,
                           _ kernel: @escaping ([UnsafePointer<Float>], UnsafeMutablePointer<Float>) -> Void) {
        steps.append(PendingStep(name: name, category: category, flops: flops,
                                 work: .kernel(inputs: inputs, output: output, kernel)))
    }

    /// Plain weights reordered once into the layout the primitive chose; shared by every plan of
    /// the model that wants the same step's weights in the same layout.
    private func weightsMemory(for step: String, _ values: [Float], dims: [Int], userTag: dnnl_format_tag_t,
                               wanted: dnnl_memory_desc_t) throws -> Memory {
        try weightsCache.memory(for: step, layout: wanted) {
            let user = try Memory(ownedBufferFor: .float32(dims, layout: .tag(userTag)), context: context)
            try fill(user, with: values)
            if user.descriptor.isSameLayout(as: wanted) { return user }
            let target = try Memory(ownedBufferFor: wanted, context: context)
            var source = user.descriptor, destination = wanted
            var handle: dnnl_primitive_desc_t?
            try dnnlCheck(dnnl_reorder_primitive_desc_create(&handle, &source, context.engine, &destination,
                                                             context.engine, nil), "creating a weights reorder")
            guard let handle else { throw EngineError(.backendFailure, "oneDNN returned no reorder descriptor") }
            let reorder = try Primitive(PrimitiveDescriptor(adopting: handle), what: "creating a weights reorder")
            let arguments = [dnnl_exec_arg_t(arg: DNNL_ARG_FROM, memory: user.handle),
                             dnnl_exec_arg_t(arg: DNNL_ARG_TO, memory: target.handle)]
            try dnnlCheck(dnnl_primitive_execute(reorder.handle, context.stream, 2, arguments), "reordering weights")
            try dnnlCheck(dnnl_stream_wait(context.stream), "reordering weights")
            return target
        }
    }

    private func fill(_ memory: Memory, with values: [Float]) throws {
        guard let pointer = memory.dataPointer, memory.descriptor.byteCount == values.count * MemoryLayout<Float>.size else {
            throw EngineError(.backendFailure, "a constant buffer has the wrong size")
        }
        values.withUnsafeBytes { pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    private func constantMemory(_ values: [Float], dims: [Int]) throws -> Memory {
        try constantMemory(values, descriptor: .float32(dims))
    }

    private func constantMemory(_ values: [Float], descriptor: dnnl_memory_desc_t) throws -> Memory {
        let memory = try Memory(ownedBufferFor: descriptor, context: context)
        try fill(memory, with: values)
        retained.append(memory)
        return memory
    }

    // MARK: - Values

    private func addStorage(bytes: Int, kind: StorageKind) -> Int {
        storages.append(Storage(bytes: bytes, kind: kind))
        return storages.count - 1
    }

    private func addActivation(shape: [Int], descriptor: dnnl_memory_desc_t, storage: Int? = nil,
                               byteOffset: Int = 0) -> Int {
        let storage = storage ?? addStorage(bytes: 0, kind: .arena)
        storages[storage].bytes = max(storages[storage].bytes, byteOffset + descriptor.byteCount)
        storages[storage].activations += 1
        activations.append(Activation(shape: shape, descriptor: descriptor, storage: storage, byteOffset: byteOffset))
        return activations.count - 1
    }

    private func define(_ name: String, _ activation: Int) {
        values[name] = .activation(activation)
    }

    private func define(_ name: String, _ constant: ConstantTensor) {
        values[name] = .constant(constant)
    }

    private func value(_ name: String) throws -> Value {
        guard let value = values[name] else { throw EngineError(.malformedModel, "value '\(name)' is not defined") }
        return value
    }

    private func activation(_ name: String) throws -> Int {
        switch try value(name) {
        case .activation(let id): return id
        case .constant: throw EngineError(.unsupportedOperator, "input '\(name)' is a constant where a computed tensor is expected")
        }
    }

    private func constant(_ name: String, of node: LoweredNode) throws -> ConstantTensor {
        switch try value(name) {
        case .constant(let constant): return constant
        case .activation:
            throw EngineError(.unsupportedOperator, node: node.name, op: node.op, "input '\(name)' must be computable while planning")
        }
    }

    private func shapeOf(_ name: String) throws -> [Int] {
        switch try value(name) {
        case .constant(let constant): constant.shape
        case .activation(let id): activations[id].shape
        }
    }

    private func optionalIntegers(_ node: LoweredNode, input index: Int) throws -> [Int]? {
        guard index < node.inputs.count, !node.inputs[index].isEmpty else { return nil }
        let constant = try constant(node.inputs[index], of: node)
        guard let integers = constant.integers else { throw shapeError("input \(index) must hold integers") }
        return integers.map { Int($0) }
    }

    private func fold(_ binary: BinaryOperator, _ a: ConstantTensor, _ b: ConstantTensor) throws -> ConstantTensor {
        let shape = a.count >= b.count ? a.shape : b.shape
        let count = max(a.count, b.count)
        guard a.count == b.count || a.count == 1 || b.count == 1 else {
            throw shapeError("constant folding supports equal shapes or scalars, not \(a.shape) and \(b.shape)")
        }
        if let x = a.integers, let y = b.integers {
            let result = try (0..<count).map { index -> Int64 in
                guard let value = binary.apply(x[x.count == 1 ? 0 : index], y[y.count == 1 ? 0 : index]) else {
                    throw shapeError("integer division by zero")
                }
                return value
            }
            return ConstantTensor(integers: result, shape: shape)
        }
        let x = a.floats, y = b.floats
        return ConstantTensor(floats: (0..<count).map { binary.apply(x[x.count == 1 ? 0 : $0], y[y.count == 1 ? 0 : $0]) },
                              shape: shape)
    }

    private func broadcasts(_ small: [Int], to large: [Int]) -> Bool {
        small.count == large.count && zip(small, large).allSatisfy { $0 == $1 || $0 == 1 }
    }

    private func normalize(axis: Int, rank: Int, inclusive: Bool = false) throws -> Int {
        let limit = inclusive ? rank + 1 : rank
        let normalized = axis < 0 ? axis + rank : axis
        guard (0..<limit).contains(normalized) else { throw shapeError("axis \(axis) is out of range for rank \(rank)") }
        return normalized
    }

    private func shapeError(_ message: String) -> EngineError {
        let node = graph.nodes[nodeIndex]
        return EngineError(.invalidShape, node: node.name, op: node.op, message)
    }

    private static func strides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        for axis in stride(from: shape.count - 2, through: 0, by: -1) { strides[axis] = strides[axis + 1] * shape[axis + 1] }
        return strides
    }

    // MARK: - Arena

    /// Places every arena storage by liveness (storages alive at the same step never overlap),
    /// allocates the arena, and binds memory objects.
    private func finish(outputShapes: [[Int]], constantOutputs: [Int: [Float]]) throws -> ExecutionPlan {
        func touch(_ id: Int, _ step: Int) {
            let storage = activations[id].storage
            storages[storage].firstStep = min(storages[storage].firstStep, step)
            storages[storage].lastStep = max(storages[storage].lastStep, step)
        }
        for (index, step) in steps.enumerated() {
            switch step.work {
            case .primitive(_, let arguments):
                for case (_, .activation(let id)) in arguments { touch(id, index) }
            case .kernel(let inputs, let output, _):
                for id in inputs + [output] { touch(id, index) }
            }
        }
        let alignment = 64
        var placed: [Int] = []
        var arenaBytes = 0
        let order = storages.indices.filter { index in
            if case .arena = storages[index].kind { storages[index].lastStep >= 0 } else { false }
        }.sorted { storages[$0].bytes > storages[$1].bytes }
        for index in order {
            let bytes = (storages[index].bytes + alignment - 1) / alignment * alignment
            let conflicts = placed.filter {
                storages[$0].firstStep <= storages[index].lastStep && storages[index].firstStep <= storages[$0].lastStep
            }.map { (storages[$0].offset, storages[$0].offset + (storages[$0].bytes + alignment - 1) / alignment * alignment) }
                .sorted { $0.0 < $1.0 }
            var offset = 0
            for (start, end) in conflicts where start < offset + bytes && offset < end {
                offset = max(offset, end)
            }
            storages[index].offset = offset
            arenaBytes = max(arenaBytes, offset + bytes)
            placed.append(index)
        }
        let scratchpadOffset = arenaBytes
        arenaBytes += scratchpadBytes
        var allocation: UnsafeMutableRawPointer?
        guard posix_memalign(&allocation, 4096, max(arenaBytes, alignment)) == 0, let arena = allocation else {
            throw EngineError(.invalidShape, "cannot allocate the \(arenaBytes)-byte activation arena for \(activations.first?.shape ?? [])")
        }
        var memories: [Memory?] = []
        var inputBindings: [(Memory, Int)] = [], outputBindings: [(Memory, Int)] = []
        do {
            for (id, activation) in activations.enumerated() {
                if let fixed = fixedActivations[id] {
                    memories.append(fixed)
                    continue
                }
                let storage = storages[activation.storage]
                guard storage.lastStep >= 0 else {
                    memories.append(nil)
                    continue
                }
                switch storage.kind {
                case .arena:
                    memories.append(try Memory(descriptor: activation.descriptor, handle: arena + storage.offset + activation.byteOffset,
                                               context: context))
                case .input(let index):
                    let memory = try Memory(descriptor: activation.descriptor, handle: nil, context: context)
                    inputBindings.append((memory, index))
                    memories.append(memory)
                case .output(let index):
                    let memory = try Memory(descriptor: activation.descriptor, handle: nil, context: context)
                    outputBindings.append((memory, index))
                    memories.append(memory)
                }
            }
            var finished: [PlanStep] = []
            for step in steps {
                switch step.work {
                case .primitive(let primitive, let arguments):
                    let bound = try arguments.map { arg, source -> dnnl_exec_arg_t in
                        switch source {
                        case .activation(let id):
                            guard let memory = memories[id] else { throw EngineError(.backendFailure, "unbound activation") }
                            return dnnl_exec_arg_t(arg: arg, memory: memory.handle)
                        case .fixed(let memory):
                            return dnnl_exec_arg_t(arg: arg, memory: memory.handle)
                        case .scratchpad(let descriptor):
                            let memory = try Memory(descriptor: descriptor, handle: arena + scratchpadOffset, context: context)
                            retained.append(memory)
                            return dnnl_exec_arg_t(arg: arg, memory: memory.handle)
                        }
                    }
                    retained.append(primitive)
                    finished.append(PlanStep(name: step.name, category: step.category, flops: step.flops,
                                             serial: step.serial, work: .primitive(primitive, bound)))
                case .kernel(let inputs, let output, let kernel):
                    let sources = inputs.compactMap { memories[$0] }
                    guard let destination = memories[output] else { throw EngineError(.backendFailure, "unbound activation") }
                    finished.append(PlanStep(name: step.name, category: step.category, flops: step.flops, serial: false,
                                             work: .kernel {
                        let pointers = sources.map { UnsafePointer($0.dataPointer!.assumingMemoryBound(to: Float.self)) }
                        kernel(pointers, destination.dataPointer!.assumingMemoryBound(to: Float.self))
                    }))
                }
            }
            retained.append(contentsOf: memories.compactMap { $0 })
            return ExecutionPlan(outputShapes: outputShapes, openMPThreads: Int(omp_get_max_threads()), steps: finished, inputBindings: inputBindings,
                                 outputBindings: outputBindings, constantOutputs: constantOutputs, arena: arena,
                                 arenaBytes: arenaBytes, retained: retained)
        } catch {
            free(arena)
            throw error
        }
    }
}

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

/// Calls `body` with a pointer to `value`, or with `nil` when `present` is false.
private func withOptionalPointer<T, R>(_ present: Bool, _ value: inout T, _ body: (UnsafeMutablePointer<T>?) throws -> R) rethrows -> R {
    if present {
        return try withUnsafeMutablePointer(to: &value) { try body($0) }
    }
    return try body(nil)
}
