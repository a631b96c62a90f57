import CDNNL
import CPurifyKernels
import Foundation

/// Convolutions, deconvolutions and inner products, with their fused post-ops.
extension PlanBuilder {
    func planConvolution(_ node: LoweredNode, _ convolution: Convolution) throws {
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
        if sumAddend == nil, Self.runsAsNarrowConvolution(convolution, inputChannels: shape[1]),
           let eltwise = Self.eltwiseOnly(fused) {
            output = try addNarrowConvolution(input: input, convolution, padBegin: padBegin, outputShape: outputShape,
                                              postOps: eltwise, name: node.name)
        } else if sumAddend == nil, afterSum == nil, Self.runsAsSubpixelConvolutions(convolution) {
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
    func addConvolution(input: Int, _ convolution: Convolution, padBegin: [Int], padEnd: [Int],
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
    static func trimmingPaddingOnlyTaps(_ convolution: Convolution, input: [Int], output: [Int],
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

    /// Whether a convolution writes fewer channels than one block from a blocked input. oneDNN
    /// 2.6 pads such an output to a whole block and runs it on one thread at a few GFLOP/s: the
    /// purifier's last layer (to 1 or 3 channels at full resolution) took an eighth of a batch-1
    /// run. The plan runs it as its own kernel.
    static func runsAsNarrowConvolution(_ convolution: Convolution, inputChannels: Int) -> Bool {
        narrowConvolutionSupported && !convolution.transposed && convolution.groups == 1 && convolution.outputChannels < channelBlock
            && inputChannels % channelBlock == 0 && convolution.strides == [1, 1] && convolution.dilations == [1, 1]
    }

    /// Whether the CPU has what the narrow-convolution kernel needs (AVX2 and FMA); without it
    /// oneDNN runs those convolutions.
    static let narrowConvolutionSupported = purify_narrow_convolution_supported() != 0

    /// The element-wise operations of `postOps`, or nil if it holds a sum.
    static func eltwiseOnly(_ postOps: [FusedPostOp]) -> [Eltwise]? {
        var eltwise: [Eltwise] = []
        for postOp in postOps {
            guard case .eltwise(let operation) = postOp else { return nil }
            eltwise.append(operation)
        }
        return eltwise
    }

    /// A stride-1 convolution to fewer channels than one block (see ``runsAsNarrowConvolution``),
    /// run by `purify_narrow_convolution` into a plain output; the post-ops follow as oneDNN
    /// element-wise steps.
    func addNarrowConvolution(input: Int, _ convolution: Convolution, padBegin: [Int], outputShape: [Int],
                              postOps: [Eltwise], name: String) throws -> Int {
        let shape = activations[input].shape
        let source = try inLayout(input, .float32(shape, layout: .tag(Self.blockedTag)))
        let (batch, channels, height, width) = (shape[0], shape[1], shape[2], shape[3])
        let (outputs, outputHeight, outputWidth) = (outputShape[1], outputShape[2], outputShape[3])
        let (kernelHeight, kernelWidth) = (convolution.kernel[0], convolution.kernel[1])
        let (top, left) = (padBegin[0], padBegin[1])
        let block = Self.channelBlock
        // [output][ky][kx][input channel]: the weights of one tap and one input block are one vector load.
        let weights = convolution.weights.floats
        var packed = [Float](repeating: 0, count: weights.count)
        for output in 0..<outputs {
            for channel in 0..<channels {
                for row in 0..<kernelHeight {
                    for column in 0..<kernelWidth {
                        packed[((output * kernelHeight + row) * kernelWidth + column) * channels + channel] =
                            weights[((output * channels + channel) * kernelHeight + row) * kernelWidth + column]
                    }
                }
            }
        }
        let bias = convolution.bias ?? [Float](repeating: 0, count: outputs)
        var output = addActivation(shape: outputShape, descriptor: try .float32(outputShape))
        let flops = 2 * Double(outputShape.reduce(1, *) * channels * kernelHeight * kernelWidth)
        addKernel(name: name, category: .convolution, flops: flops, inputs: [source], output: output) { inputs, result in
            purify_narrow_convolution(inputs[0], packed, bias, result, Int32(batch), Int32(channels), Int32(block),
                                      Int32(height), Int32(width), Int32(outputs), Int32(outputHeight), Int32(outputWidth),
                                      Int32(kernelHeight), Int32(kernelWidth), Int32(top), Int32(left))
        }
        for operation in postOps {
            output = try addEltwise(operation, input: output, name: name)
        }
        return output
    }

    /// Whether a ConvTranspose is the U-Net's 4×4, stride-2, pad-1 upsampling: oneDNN 2.6 runs
    /// that as a deconvolution at a fraction of its convolution speed (a few GFLOP/s for the
    /// final 3-channel layer), so the plan splits it into four 2×2 convolutions instead.
    static func runsAsSubpixelConvolutions(_ convolution: Convolution) -> Bool {
        convolution.transposed && convolution.groups == 1 && convolution.kernel == [4, 4]
            && convolution.strides == [2, 2] && convolution.pads == [1, 1, 1, 1] && convolution.autoPad == .explicit
            && convolution.dilations == [1, 1] && convolution.outputPadding == [0, 0]
    }

    /// A 4×4 stride-2 pad-1 transposed convolution as four stride-1 2×2 convolutions, one per
    /// output pixel phase (row parity a, column parity b), written side by side in the blocked layout
    /// (channels padded to a whole block) and interleaved into the output by one reorder. Output pixel (2m + a, 2p + b) takes input rows
    /// m - 1, m (a = 0; kernel rows 3, 1) or m, m + 1 (a = 1; kernel rows 2, 0), same for columns.
    func addSubpixelDeconvolution(input: Int, _ convolution: Convolution, outputShape: [Int],
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

    func planInnerProduct(_ node: LoweredNode, _ product: InnerProduct) throws {
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
    func splitAtSum(_ postOps: [PlannedPostOp], reading source: String, outputShape: [Int]) throws
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

    func finishPostOps(_ node: LoweredNode, output: Int, afterSum: (addend: String, postOps: [Eltwise])?) throws {
        guard let afterSum else {
            define(node.outputs[0], output)
            return
        }
        let addend = try activation(afterSum.addend)
        define(node.outputs[0], try addBinary(.add, output, addend, postOps: afterSum.postOps, name: node.name))
    }
}

/// Calls `body` with a pointer to `value`, or with `nil` when `present` is false.
private func withOptionalPointer<T, R>(_ present: Bool, _ value: inout T, _ body: (UnsafeMutablePointer<T>?) throws -> R) rethrows -> R {
    if present {
        return try withUnsafeMutablePointer(to: &value) { try body($0) }
    }
    return try body(nil)
}
