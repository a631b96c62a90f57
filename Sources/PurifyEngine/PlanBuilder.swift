import CDNNL
import Foundation

/// Builds an `ExecutionPlan` for one set of input shapes: walks the lowered graph in order,
/// infers shapes, creates oneDNN primitives (weights in the layout oneDNN picks with
/// `format_tag_any`, reordered once; activations of whole channel blocks kept in nChw16c, or
/// nChw8c on a CPU without AVX-512, from layer to layer), and lays every activation out in one arena by liveness.
///
/// This file holds the walk, the values and the binding of the finished plan; the operators are
/// planned in `PlanBuilder+Convolution.swift` and `PlanBuilder+Operators.swift`, and the arena's
/// placement is the pure ``ArenaLayout``.
final class PlanBuilder {
    enum Value {
        case constant(ConstantTensor)
        case activation(Int)
    }

    enum StorageKind {
        case arena
        case input(Int)
        case output(Int)
    }

    struct Storage {
        var bytes: Int
        var kind: StorageKind
        var activations = 0
        var firstStep = Int.max
        var lastStep = -1
        var offset = 0
    }

    struct Activation {
        var shape: [Int]
        var descriptor: dnnl_memory_desc_t
        var storage: Int
        /// Where in the storage the activation starts (phases of a split deconvolution).
        var byteOffset = 0
    }

    enum Argument {
        case activation(Int)
        case fixed(Memory)
        case scratchpad(dnnl_memory_desc_t)
    }

    enum PendingWork {
        case primitive(Primitive, [(Int32, Argument)])
        case kernel(inputs: [Int], output: Int, (_ inputs: [UnsafePointer<Float>], _ output: UnsafeMutablePointer<Float>) -> Void)
    }

    struct PendingStep {
        var name: String
        var category: StepCategory
        var flops: Double
        var serial = false
        var work: PendingWork
    }

    let graph: LoweredGraph
    let context: DNNLContext
    var values: [String: Value] = [:]
    var activations: [Activation] = []
    var storages: [Storage] = []
    var steps: [PendingStep] = []
    var retained: [AnyObject] = []
    var reorders: [Int: [(dnnl_memory_desc_t, Int)]] = [:]
    var scratchpadBytes = 0
    /// The node being planned, for error messages and liveness checks.
    var nodeIndex = 0

    /// Activations backed by a constant memory rather than the arena (binary operands).
    var fixedActivations: [Int: Memory] = [:]
    let weightsCache: WeightsCache

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

    func plan(_ node: LoweredNode) throws {
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

    // MARK: - Building blocks

    /// The layout for a convolution's source and destination. Left to oneDNN, 2.6 picks NHWC
    /// for convolutions (brgconv) but nChw16c for deconvolutions, and every switch between them
    /// costs a reorder and a slow mixed-layout concat; so wide tensors are pinned to the
    /// blocked layout.
    static func activationLayout(channels: Int) -> MemoryLayoutChoice {
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

    func addEltwise(_ eltwise: Eltwise, input: Int, name: String) throws -> Int {
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
    func addBinary(_ binary: BinaryOperator, _ lhs: Int, _ rhs: Int, postOps: [Eltwise], name: String) throws -> Int {
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
    func inLayout(_ id: Int, _ descriptor: dnnl_memory_desc_t) throws -> Int {
        if activations[id].descriptor.isSameLayout(as: descriptor) { return id }
        if let existing = reorders[id]?.first(where: { $0.0.isSameLayout(as: descriptor) }) { return existing.1 }
        let output = addActivation(shape: activations[id].shape, descriptor: descriptor)
        try addReorder(from: id, to: output, name: "reorder")
        reorders[id, default: []].append((descriptor, output))
        return output
    }

    func plain(_ id: Int) throws -> Int {
        try inLayout(id, .float32(activations[id].shape))
    }

    func addReorder(from source: Int, to destination: Int, name: String,
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
    func addPrimitive(_ descriptor: PrimitiveDescriptor, _ arguments: [(Int32, Argument)], name: String,
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
    static let threadedAtExecution = Set([dnnl_reorder, dnnl_eltwise, dnnl_concat, dnnl_binary, dnnl_softmax,
                                                  dnnl_pooling_v2].map(\.rawValue))
    static let serialElementLimit = 1 << 16
    /// Convolutions below this many floating-point operations (tens of microseconds) get one thread.
    static let serialFlopLimit = 4e6

    func addKernel(name: String, category: StepCategory, flops: Double, inputs: [Int], output: Int,
                           _ kernel: @escaping ([UnsafePointer<Float>], UnsafeMutablePointer<Float>) -> Void) {
        steps.append(PendingStep(name: name, category: category, flops: flops,
                                 work: .kernel(inputs: inputs, output: output, kernel)))
    }

    /// Plain weights reordered once into the layout the primitive chose; shared by every plan of
    /// the model that wants the same step's weights in the same layout.
    func weightsMemory(for step: String, _ values: [Float], dims: [Int], userTag: dnnl_format_tag_t,
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

    func fill(_ memory: Memory, with values: [Float]) throws {
        guard let pointer = memory.dataPointer, memory.descriptor.byteCount == values.count * MemoryLayout<Float>.size else {
            throw EngineError(.backendFailure, "a constant buffer has the wrong size")
        }
        values.withUnsafeBytes { pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    func constantMemory(_ values: [Float], dims: [Int]) throws -> Memory {
        try constantMemory(values, descriptor: .float32(dims))
    }

    func constantMemory(_ values: [Float], descriptor: dnnl_memory_desc_t) throws -> Memory {
        let memory = try Memory(ownedBufferFor: descriptor, context: context)
        try fill(memory, with: values)
        retained.append(memory)
        return memory
    }

    // MARK: - Values

    func addStorage(bytes: Int, kind: StorageKind) -> Int {
        storages.append(Storage(bytes: bytes, kind: kind))
        return storages.count - 1
    }

    func addActivation(shape: [Int], descriptor: dnnl_memory_desc_t, storage: Int? = nil,
                               byteOffset: Int = 0) -> Int {
        let storage = storage ?? addStorage(bytes: 0, kind: .arena)
        storages[storage].bytes = max(storages[storage].bytes, byteOffset + descriptor.byteCount)
        storages[storage].activations += 1
        activations.append(Activation(shape: shape, descriptor: descriptor, storage: storage, byteOffset: byteOffset))
        return activations.count - 1
    }

    func define(_ name: String, _ activation: Int) {
        values[name] = .activation(activation)
    }

    func define(_ name: String, _ constant: ConstantTensor) {
        values[name] = .constant(constant)
    }

    func value(_ name: String) throws -> Value {
        guard let value = values[name] else { throw EngineError(.malformedModel, "value '\(name)' is not defined") }
        return value
    }

    func activation(_ name: String) throws -> Int {
        switch try value(name) {
        case .activation(let id): return id
        case .constant: throw EngineError(.unsupportedOperator, "input '\(name)' is a constant where a computed tensor is expected")
        }
    }

    func constant(_ name: String, of node: LoweredNode) throws -> ConstantTensor {
        switch try value(name) {
        case .constant(let constant): return constant
        case .activation:
            throw EngineError(.unsupportedOperator, node: node.name, op: node.op, "input '\(name)' must be computable while planning")
        }
    }

    func shapeOf(_ name: String) throws -> [Int] {
        switch try value(name) {
        case .constant(let constant): constant.shape
        case .activation(let id): activations[id].shape
        }
    }

    func optionalIntegers(_ node: LoweredNode, input index: Int) throws -> [Int]? {
        guard index < node.inputs.count, !node.inputs[index].isEmpty else { return nil }
        let constant = try constant(node.inputs[index], of: node)
        guard let integers = constant.integers else { throw shapeError("input \(index) must hold integers") }
        return integers.map { Int($0) }
    }

    func fold(_ binary: BinaryOperator, _ a: ConstantTensor, _ b: ConstantTensor) throws -> ConstantTensor {
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

    func broadcasts(_ small: [Int], to large: [Int]) -> Bool {
        small.count == large.count && zip(small, large).allSatisfy { $0 == $1 || $0 == 1 }
    }

    func normalize(axis: Int, rank: Int, inclusive: Bool = false) throws -> Int {
        let limit = inclusive ? rank + 1 : rank
        let normalized = axis < 0 ? axis + rank : axis
        guard (0..<limit).contains(normalized) else { throw shapeError("axis \(axis) is out of range for rank \(rank)") }
        return normalized
    }

    func shapeError(_ message: String) -> EngineError {
        let node = graph.nodes[nodeIndex]
        return EngineError(.invalidShape, node: node.name, op: node.op, message)
    }

    static func strides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        for axis in stride(from: shape.count - 2, through: 0, by: -1) { strides[axis] = strides[axis + 1] * shape[axis + 1] }
        return strides
    }

    // MARK: - Arena

    /// Places every arena storage by liveness (storages alive at the same step never overlap),
    /// allocates the arena, and binds memory objects.
    func finish(outputShapes: [[Int]], constantOutputs: [Int: [Float]]) throws -> ExecutionPlan {
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
        let arenaStorages = storages.indices.filter { index in
            if case .arena = storages[index].kind { storages[index].lastStep >= 0 } else { false }
        }
        let layout = ArenaLayout(placing: arenaStorages.map {
            ArenaLayout.Buffer(bytes: storages[$0].bytes, firstStep: storages[$0].firstStep, lastStep: storages[$0].lastStep)
        }, alignment: alignment)
        for (index, offset) in zip(arenaStorages, layout.offsets) { storages[index].offset = offset }
        var arenaBytes = layout.bytes
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
