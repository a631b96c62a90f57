import CDNNL
import Foundation

/// The element-wise, normalisation, layout and shape operators.
extension PlanBuilder {
    func planChannelAffine(_ node: LoweredNode, scale: [Float], shift: [Float]) throws {
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

    func planInstanceNormalization(_ node: LoweredNode, scale: [Float], shift: [Float], epsilon: Float) throws {
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

    func planBinary(_ node: LoweredNode, _ binary: BinaryOperator) throws {
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
    func constantOperand(_ constant: ConstantTensor, broadcastTo shape: [Int]) throws -> Int {
        guard constant.shape.count <= shape.count else { throw shapeError("constant \(constant.shape) outranks \(shape)") }
        let dims = [Int](repeating: 1, count: shape.count - constant.shape.count) + constant.shape
        guard broadcasts(dims, to: shape) else { throw shapeError("cannot broadcast \(constant.shape) to \(shape)") }
        let memory = try constantMemory(constant.floats, dims: dims)
        let storage = addStorage(bytes: 0, kind: .arena)
        let id = addActivation(shape: dims, descriptor: memory.descriptor, storage: storage)
        fixedActivations[id] = memory
        return id
    }

    func planConcat(_ node: LoweredNode, axis: Int) throws {
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
        if let output = try addBlockedChannelConcat(ids, axis: axis, outputShape: outputShape, name: node.name) {
            define(node.outputs[0], output)
            return
        }
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

    /// A channel concat of blocked tensors whose channels fill whole blocks, as one copy per
    /// input into its block range of the output. oneDNN 2.6's concat runs such a concat several
    /// times slower than the copies (and slower still with more threads), and at batch 1 the
    /// U-Net's four concats cost as much as its deconvolutions. Nil where the inputs do not fit.
    func addBlockedChannelConcat(_ ids: [Int], axis: Int, outputShape: [Int], name: String) throws -> Int? {
        let block = Self.channelBlock
        guard axis == 1, outputShape.count == 4 else { return nil }
        for id in ids {
            let shape = activations[id].shape
            guard shape[1] % block == 0,
                  activations[id].descriptor.isSameLayout(as: try .float32(shape, layout: .tag(Self.blockedTag)))
            else { return nil }
        }
        let (batch, height, width) = (outputShape[0], outputShape[2], outputShape[3])
        let output = addActivation(shape: outputShape, descriptor: try .float32(outputShape, layout: .tag(Self.blockedTag)))
        // Each side as a plain 5-D tensor [n, block, h, w, B]; the output's block stride spans all its blocks.
        let outputStrides = [outputShape[1] * height * width, height * width * block, width * block, block, 1].map { Int64($0) }
        var blockOffset = 0
        for (index, id) in ids.enumerated() {
            let blocks = activations[id].shape[1] / block
            let dims = [batch, blocks, height, width, block]
            let source = addActivation(shape: dims, descriptor: try .float32(dims), storage: activations[id].storage,
                                       byteOffset: activations[id].byteOffset)
            var view = dnnl_memory_desc_t()
            try dnnlCheck(dnnl_memory_desc_init_by_strides(&view, 5, dims.map { Int64($0) }, dnnl_f32, outputStrides),
                          "describing part \(index) of the concat")
            let destination = addActivation(shape: dims, descriptor: view, storage: activations[output].storage,
                                            byteOffset: activations[output].byteOffset
                                                + blockOffset * height * width * block * MemoryLayout<Float>.size)
            try addReorder(from: source, to: destination, name: "\(name) part \(index)", category: .concat)
            blockOffset += blocks
        }
        return output
    }

    func planPad(_ node: LoweredNode, mode: PadMode, pads: [Int]?, value fill: Float) throws {
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

    func planPooling(_ node: LoweredNode, _ pooling: Pooling) throws {
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

    func planReshape(_ node: LoweredNode, allowZero: Bool) throws {
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
    func reshape(_ node: LoweredNode, to shape: [Int]) throws {
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

    func planSoftmax(_ node: LoweredNode, axis: Int) throws {
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

    func planGather(_ node: LoweredNode, axis: Int) throws {
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
}
