import CDNNL

/// Decodes one node's attributes and constant inputs into an `Operation`, rejecting attributes
/// it does not know and values it cannot honour with an error that names the node and op.
struct NodeDecoder {
    let node: GraphNode
    let opsetVersion: Int
    let constants: [String: ConstantTensor]
    let resolve: (String) -> String

    func operation() throws -> Operation {
        try requireInputs(1)
        switch node.op {
        case "Conv", "ConvTranspose":
            return .convolution(try convolution())
        case "Gemm":
            return .innerProduct(try gemm())
        case "MatMul":
            return .innerProduct(try matMulByConstant())
        case "InstanceNormalization":
            try allowAttributes(["epsilon"])
            let scale = try constantInput(1).floats
            let shift = try constantInput(2).floats
            guard scale.count == shift.count else { throw invalid("scale and bias differ in length") }
            return .instanceNormalization(scale: scale, shift: shift, epsilon: try float("epsilon", default: 1e-5))
        case "Relu":
            try allowAttributes([])
            return .eltwise(Eltwise(algorithm: dnnl_eltwise_relu, alpha: 0, beta: 0))
        case "LeakyRelu":
            try allowAttributes(["alpha"])
            return .eltwise(Eltwise(algorithm: dnnl_eltwise_relu, alpha: try float("alpha", default: 0.01), beta: 0))
        case "Tanh":
            try allowAttributes([])
            return .eltwise(Eltwise(algorithm: dnnl_eltwise_tanh, alpha: 0, beta: 0))
        case "Sigmoid":
            try allowAttributes([])
            return .eltwise(Eltwise(algorithm: dnnl_eltwise_logistic, alpha: 0, beta: 0))
        case "Clip":
            return .eltwise(try clip())
        case "Add", "Sub", "Mul", "Div":
            try allowAttributes([])
            try requireInputs(2)
            let binary: BinaryOperator = switch node.op {
            case "Add": .add
            case "Sub": .sub
            case "Mul": .mul
            default: .div
            }
            return .binary(binary)
        case "Concat":
            try allowAttributes(["axis"])
            guard let axis = try integer("axis") else { throw invalid("attribute 'axis' is required") }
            return .concat(axis: axis)
        case "Pad":
            return try pad()
        case "MaxPool", "AveragePool":
            return .pool(try pooling())
        case "GlobalAveragePool":
            try allowAttributes([])
            return .globalAveragePool
        case "Flatten":
            try allowAttributes(["axis"])
            return .flatten(axis: try integer("axis") ?? 1)
        case "Reshape":
            try allowAttributes(["allowzero"])
            try requireInputs(2)
            return .reshape(allowZero: try integer("allowzero") == 1)
        case "Squeeze", "Unsqueeze":
            try allowAttributes(opsetVersion < 13 ? ["axes"] : [])
            let axes = try integers("axes")
            if opsetVersion < 13, axes == nil, node.op == "Unsqueeze" { throw invalid("attribute 'axes' is required") }
            return node.op == "Squeeze" ? .squeeze(axes: axes) : .unsqueeze(axes: axes)
        case "Softmax":
            try allowAttributes(["axis"])
            return .softmax(axis: try integer("axis") ?? (opsetVersion < 13 ? 1 : -1))
        case "Shape":
            try allowAttributes(["start", "end"])
            return .shape(start: try integer("start") ?? 0, end: try integer("end"))
        case "Gather":
            try allowAttributes(["axis"])
            try requireInputs(2)
            return .gather(axis: try integer("axis") ?? 0)
        case "Cast":
            try allowAttributes(["to", "saturate"])
            switch try integer("to") {
            case 1, 11: return .castToFloat
            case 6, 7: return .castToInteger
            default: throw invalid("cast to element type \(String(describing: try integer("to"))) is not supported")
            }
        default:
            throw EngineError(.unsupportedOperator, node: node.name, op: node.op, "operator '\(node.op)' is not supported")
        }
    }

    func constantValue() throws -> ConstantTensor {
        try allowAttributes(["value", "value_float", "value_floats", "value_int", "value_ints"])
        guard node.outputs.count == 1 else { throw invalid("needs exactly one output") }
        switch node.attributes.first?.value {
        case .tensor(let tensor): return tensor
        case .float(let value): return ConstantTensor(floats: [value], shape: [])
        case .floats(let values): return ConstantTensor(floats: values, shape: [values.count])
        case .int(let value): return ConstantTensor(integers: [value], shape: [])
        case .ints(let values): return ConstantTensor(integers: values, shape: [values.count])
        default: throw invalid("needs exactly one value attribute of a supported kind")
        }
    }

    /// Inference-mode BatchNormalization as a per-channel scale and shift.
    func batchNormalizationAffine() throws -> (scale: [Float], shift: [Float]) {
        try allowAttributes(["epsilon", "momentum", "training_mode", "spatial"])
        if try integer("training_mode") == 1 { throw invalid("training_mode=1 is not supported at inference") }
        if let spatial = try integer("spatial"), spatial != 1 { throw invalid("spatial=\(spatial) is not supported") }
        try requireInputs(5)
        guard node.outputs.count == 1 || node.outputs.dropFirst().allSatisfy(\.isEmpty) else {
            throw invalid("training outputs (running mean and variance) are not supported")
        }
        let gamma = try constantInput(1).floats, beta = try constantInput(2).floats
        let mean = try constantInput(3).floats, variance = try constantInput(4).floats
        guard Set([gamma.count, beta.count, mean.count, variance.count]).count == 1 else {
            throw invalid("scale, bias, mean and variance differ in length")
        }
        let epsilon = try float("epsilon", default: 1e-5)
        let scale = zip(gamma, variance).map { $0 / (($1 + epsilon).squareRoot()) }
        let shift = (0..<gamma.count).map { beta[$0] - mean[$0] * scale[$0] }
        return (scale, shift)
    }

    // MARK: - Operations with more to check

    private func convolution() throws -> Convolution {
        let transposed = node.op == "ConvTranspose"
        try allowAttributes(["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"]
                            + (transposed ? ["output_padding"] : []))
        guard node.inputs.count >= 2 else { throw invalid("needs an input and weights") }
        let weights = try constantInput(1)
        guard weights.shape.count == 4, weights.shape.allSatisfy({ $0 > 0 }), weights.integers == nil else {
            throw EngineError(.unsupportedOperator, node: node.name, op: node.op,
                              "only 2-D float convolutions are supported (weights \(weights.shape))")
        }
        let kernel = Array(weights.shape.dropFirst(2))
        if let declared = try integers("kernel_shape"), declared != kernel {
            throw invalid("kernel_shape \(declared) does not match the weights \(weights.shape)")
        }
        let groups = try integer("group") ?? 1
        guard groups >= 1, weights.shape[0] % groups == 0 else {
            throw invalid("group=\(groups) does not divide the weights \(weights.shape)")
        }
        let strides = try integers("strides") ?? [1, 1]
        let dilations = try integers("dilations") ?? [1, 1]
        let pads = try integers("pads") ?? [0, 0, 0, 0]
        let outputPadding = try integers("output_padding") ?? [0, 0]
        guard strides.count == 2, strides.allSatisfy({ $0 >= 1 }) else { throw invalid("strides \(strides) are not valid") }
        guard dilations.count == 2, dilations.allSatisfy({ $0 >= 1 }) else {
            throw invalid("dilations \(dilations) are not valid")
        }
        guard pads.count == 4, pads.allSatisfy({ $0 >= 0 }) else { throw invalid("pads \(pads) are not valid") }
        guard outputPadding.count == 2, zip(outputPadding, strides).allSatisfy({ $0 >= 0 && $0 < $1 }) else {
            throw invalid("output_padding \(outputPadding) is not valid")
        }
        let autoPad: AutoPad
        switch try string("auto_pad") ?? "NOTSET" {
        case "NOTSET": autoPad = .explicit
        case "VALID": autoPad = .valid
        case "SAME_UPPER" where !transposed: autoPad = .sameUpper
        case "SAME_LOWER" where !transposed: autoPad = .sameLower
        case let other: throw invalid("auto_pad '\(other)' is not supported")
        }
        var bias: [Float]?
        if node.inputs.count > 2, !node.inputs[2].isEmpty {
            bias = try constantInput(2).floats
        }
        var convolution = Convolution(transposed: transposed, weights: weights, bias: nil, strides: strides,
                                      dilations: dilations, pads: autoPad == .valid ? [0, 0, 0, 0] : pads,
                                      autoPad: autoPad, groups: groups, outputPadding: outputPadding)
        if let bias, bias.count != convolution.outputChannels {
            throw invalid("bias has \(bias.count) values for \(convolution.outputChannels) output channels")
        }
        convolution.bias = bias
        return convolution
    }

    private func gemm() throws -> InnerProduct {
        try allowAttributes(["alpha", "beta", "transA", "transB"])
        guard node.inputs.count >= 2 else { throw invalid("needs two inputs") }
        if try integer("transA") == 1 { throw invalid("transA=1 is not supported") }
        let alpha = try float("alpha", default: 1)
        let beta = try float("beta", default: 1)
        let b = try constantInput(1)
        guard b.shape.count == 2, b.shape.allSatisfy({ $0 > 0 }) else { throw invalid("B must be a matrix, not \(b.shape)") }
        let transposed = try integer("transB") == 1
        var product = transposed
            ? InnerProduct(weights: b.floats, outputs: b.shape[0], inputs: b.shape[1], bias: nil)
            : Self.innerProduct(multiplyingBy: b)
        if alpha != 1 { product.weights = product.weights.map { $0 * alpha } }
        if node.inputs.count > 2, !node.inputs[2].isEmpty {
            let c = try constantInput(2)
            if c.count == 1 {
                product.bias = [Float](repeating: c.floats[0] * beta, count: product.outputs)
            } else {
                guard c.count == product.outputs, c.shape.last == product.outputs else {
                    throw invalid("C of shape \(c.shape) is not a bias over \(product.outputs) outputs")
                }
                product.bias = c.floats.map { $0 * beta }
            }
        }
        return product
    }

    private func matMulByConstant() throws -> InnerProduct {
        try allowAttributes([])
        try requireInputs(2)
        guard let b = constants[resolve(node.inputs[1])] else {
            throw EngineError(.unsupportedOperator, node: node.name, op: node.op,
                              "MatMul is supported only with a constant right-hand matrix")
        }
        guard b.shape.count == 2, b.shape.allSatisfy({ $0 > 0 }) else {
            throw invalid("the constant right-hand side must be a matrix, not \(b.shape)")
        }
        return Self.innerProduct(multiplyingBy: b)
    }

    /// x · B for a [K, N] matrix B: weights are Bᵀ.
    private static func innerProduct(multiplyingBy b: ConstantTensor) -> InnerProduct {
        let rows = b.shape[0], columns = b.shape[1]
        let values = b.floats
        var transposed = [Float](repeating: 0, count: values.count)
        for row in 0..<rows {
            for column in 0..<columns { transposed[column * rows + row] = values[row * columns + column] }
        }
        return InnerProduct(weights: transposed, outputs: columns, inputs: rows, bias: nil)
    }

    private func clip() throws -> Eltwise {
        try allowAttributes(opsetVersion < 11 ? ["min", "max"] : [])
        var lower = -Float.greatestFiniteMagnitude, upper = Float.greatestFiniteMagnitude
        if opsetVersion < 11 {
            lower = try float("min", default: lower)
            upper = try float("max", default: upper)
        } else {
            if node.inputs.count > 1, !node.inputs[1].isEmpty { lower = try scalarInput(1) }
            if node.inputs.count > 2, !node.inputs[2].isEmpty { upper = try scalarInput(2) }
        }
        return Eltwise(algorithm: dnnl_eltwise_clip, alpha: lower, beta: upper)
    }

    private func pad() throws -> Operation {
        try allowAttributes(opsetVersion < 11 ? ["mode", "pads", "value"] : ["mode"])
        let mode: PadMode
        switch try string("mode") ?? "constant" {
        case "constant": mode = .constant
        case "reflect": mode = .reflect
        case let other: throw invalid("mode '\(other)' is not supported")
        }
        if opsetVersion < 11 {
            guard let pads = try integers("pads") else { throw invalid("attribute 'pads' is required") }
            return .pad(mode: mode, pads: pads, value: try float("value", default: 0))
        }
        guard node.inputs.count >= 2 else { throw invalid("needs pads") }
        if node.inputs.count > 3, !node.inputs[3].isEmpty { throw invalid("the axes input is not supported") }
        let value: Float = node.inputs.count > 2 && !node.inputs[2].isEmpty ? try scalarInput(2) : 0
        // Pads may be computed from shapes: read at plan time when not constant here.
        let pads = constants[resolve(node.inputs[1])]?.integers.map { $0.map { Int($0) } }
        return .pad(mode: mode, pads: pads, value: value)
    }

    private func pooling() throws -> Pooling {
        let maximum = node.op == "MaxPool"
        try allowAttributes(["auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides"]
                            + (maximum ? ["storage_order"] : ["count_include_pad"]))
        if maximum, node.outputs.count > 1, !node.outputs[1].isEmpty {
            throw invalid("the indices output is not supported")
        }
        if let order = try integer("storage_order"), order != 0 { throw invalid("storage_order=\(order) is not supported") }
        switch try string("auto_pad") ?? "NOTSET" {
        case "NOTSET", "VALID": break
        case let other: throw invalid("auto_pad '\(other)' is not supported")
        }
        guard let kernel = try integers("kernel_shape"), kernel.count == 2, kernel.allSatisfy({ $0 >= 1 }) else {
            throw invalid("kernel_shape must give two positive sizes")
        }
        let strides = try integers("strides") ?? [1, 1]
        let pads = try string("auto_pad") == "VALID" ? [0, 0, 0, 0] : (try integers("pads") ?? [0, 0, 0, 0])
        let dilations = try integers("dilations") ?? [1, 1]
        guard strides.count == 2, strides.allSatisfy({ $0 >= 1 }), pads.count == 4, pads.allSatisfy({ $0 >= 0 }),
              dilations.count == 2, dilations.allSatisfy({ $0 >= 1 }) else {
            throw invalid("strides \(strides), pads \(pads) or dilations \(dilations) are not valid")
        }
        return Pooling(maximum: maximum, kernel: kernel, strides: strides, pads: pads, dilations: dilations,
                       ceilMode: try integer("ceil_mode") == 1, countIncludePad: try integer("count_include_pad") == 1)
    }

    // MARK: - Attribute and input access

    func allowAttributes(_ allowed: [String]) throws {
        for name in node.attributes.keys.sorted() where !allowed.contains(name) {
            throw EngineError(.invalidAttribute, node: node.name, op: node.op, "attribute '\(name)' is not supported")
        }
    }

    private func invalid(_ message: String) -> EngineError {
        EngineError(.invalidAttribute, node: node.name, op: node.op, message)
    }

    private func requireInputs(_ count: Int) throws {
        guard node.inputs.count >= count, node.inputs.prefix(count).allSatisfy({ !$0.isEmpty }) else {
            throw EngineError(.malformedModel, node: node.name, op: node.op, "needs \(count) inputs")
        }
    }

    private func constantInput(_ index: Int) throws -> ConstantTensor {
        guard index < node.inputs.count, let constant = constants[resolve(node.inputs[index])] else {
            throw EngineError(.unsupportedOperator, node: node.name, op: node.op,
                              "input \(index) must be a constant (an initializer)")
        }
        return constant
    }

    private func scalarInput(_ index: Int) throws -> Float {
        let constant = try constantInput(index)
        guard constant.count == 1 else { throw invalid("input \(index) must be a scalar") }
        return constant.floats[0]
    }

    private func integer(_ name: String) throws -> Int? {
        switch node.attributes[name] {
        case nil: return nil
        case .int(let value): return Int(value)
        default: throw invalid("attribute '\(name)' must be an integer")
        }
    }

    /// A list of sizes (kernel, strides, pads, dilations, axes): each within ±65536, so that no
    /// damaged attribute can ask a plan for absurd amounts of memory.
    private func integers(_ name: String) throws -> [Int]? {
        switch node.attributes[name] {
        case nil: return nil
        case .ints(let values):
            guard values.allSatisfy({ abs($0) <= 1 << 16 }) else { throw invalid("attribute '\(name)' \(values) is out of range") }
            return values.map { Int($0) }
        default: throw invalid("attribute '\(name)' must be a list of integers")
        }
    }

    private func float(_ name: String, default defaultValue: Float) throws -> Float {
        switch node.attributes[name] {
        case nil: return defaultValue
        case .float(let value): return value
        default: throw invalid("attribute '\(name)' must be a float")
        }
    }

    private func string(_ name: String) throws -> String? {
        switch node.attributes[name] {
        case nil: return nil
        case .string(let value): return value
        default: throw invalid("attribute '\(name)' must be a string")
        }
    }
}
