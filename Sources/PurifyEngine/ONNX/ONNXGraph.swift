import Foundation
import SwiftProtobuf

/// A constant tensor: an initializer, a Constant node's value, or a shape computed while planning.
struct ConstantTensor {
    enum Elements {
        case float([Float])
        case int64([Int64])
    }

    var shape: [Int]
    var elements: Elements

    init(shape: [Int], elements: Elements) {
        self.shape = shape
        self.elements = elements
    }

    init(floats: [Float], shape: [Int]) {
        self.init(shape: shape, elements: .float(floats))
    }

    init(integers: [Int64], shape: [Int]) {
        self.init(shape: shape, elements: .int64(integers))
    }

    var count: Int {
        switch elements {
        case .float(let values): values.count
        case .int64(let values): values.count
        }
    }

    /// The elements as floats, converting integers.
    var floats: [Float] {
        switch elements {
        case .float(let values): values
        case .int64(let values): values.map { Float($0) }
        }
    }

    /// The elements as integers, or `nil` for a float tensor.
    var integers: [Int64]? {
        switch elements {
        case .float: nil
        case .int64(let values): values
        }
    }
}

/// A node attribute's value, decoded from its AttributeProto.
enum AttributeValue {
    case int(Int64)
    case float(Float)
    case ints([Int64])
    case floats([Float])
    case string(String)
    case tensor(ConstantTensor)
}

/// One node of the graph, with its attributes decoded.
struct GraphNode {
    /// The node's name, or a name made from its first output where the model gives none.
    var name: String
    var op: String
    /// Input value names; an empty string marks an omitted optional input.
    var inputs: [String]
    var outputs: [String]
    var attributes: [String: AttributeValue]
}

/// An ONNX model's main graph: declared inputs and outputs, nodes in topological order, and the
/// initializers by name.
struct ONNXGraph {
    var opsetVersion: Int
    var inputs: [TensorDescription]
    var outputs: [TensorDescription]
    var nodes: [GraphNode]
    var initializers: [String: ConstantTensor]

    init(serialized data: Data) throws {
        let model: Onnx_ModelProto
        do {
            model = try Onnx_ModelProto(serializedBytes: data)
        } catch {
            throw EngineError(.malformedModel, "not an ONNX model: \(error)")
        }
        guard model.hasGraph, !model.graph.node.isEmpty else {
            throw EngineError(.malformedModel, "the model has no graph nodes")
        }
        let defaultDomain = model.opsetImport.first { $0.domain.isEmpty || $0.domain == "ai.onnx" }
        guard let defaultDomain else {
            throw EngineError(.malformedModel, "the model imports no version of the default ONNX operator set")
        }
        opsetVersion = Int(defaultDomain.version)
        let graph = model.graph

        var initializers: [String: ConstantTensor] = [:]
        for proto in graph.initializer {
            initializers[proto.name] = try ConstantTensor(proto, context: "initializer '\(proto.name)'")
        }
        self.initializers = initializers
        inputs = try graph.input.filter { initializers[$0.name] == nil }.map { try TensorDescription($0) }
        outputs = try graph.output.map { try TensorDescription($0) }
        guard !inputs.isEmpty, !outputs.isEmpty else {
            throw EngineError(.malformedModel, "the graph declares no inputs or no outputs")
        }
        guard Set(inputs.map(\.name)).count == inputs.count, Set(outputs.map(\.name)).count == outputs.count else {
            throw EngineError(.malformedModel, "the graph declares an input or output name twice")
        }
        nodes = try graph.node.enumerated().map { index, proto in
            try GraphNode(proto, index: index)
        }
    }
}

extension GraphNode {
    init(_ proto: Onnx_NodeProto, index: Int) throws {
        let name = proto.name.isEmpty ? "\(proto.opType)#\(index)" : proto.name
        guard proto.domain.isEmpty || proto.domain == "ai.onnx" else {
            throw EngineError(.unsupportedOperator, node: name, op: proto.opType,
                              "operator domain '\(proto.domain)' is not supported")
        }
        guard let output = proto.output.first, !output.isEmpty else {
            throw EngineError(.malformedModel, node: name, op: proto.opType, "the node has no output")
        }
        var attributes: [String: AttributeValue] = [:]
        for attribute in proto.attribute {
            attributes[attribute.name] = try AttributeValue(attribute, node: name, op: proto.opType)
        }
        self.init(name: name, op: proto.opType, inputs: proto.input, outputs: proto.output,
                  attributes: attributes)
    }
}

extension AttributeValue {
    init(_ proto: Onnx_AttributeProto, node: String, op: String) throws {
        switch proto.type {
        case .int: self = .int(proto.i)
        case .float: self = .float(proto.f)
        case .ints: self = .ints(proto.ints)
        case .floats: self = .floats(proto.floats)
        case .string: self = .string(String(decoding: proto.s, as: UTF8.self))
        case .tensor: self = .tensor(try ConstantTensor(proto.t, context: "node '\(node)' (\(op)) attribute '\(proto.name)'"))
        default:
            throw EngineError(.invalidAttribute, node: node, op: op,
                              "attribute '\(proto.name)' has unsupported type \(proto.type)")
        }
    }
}

extension TensorDescription {
    init(_ proto: Onnx_ValueInfoProto) throws {
        guard proto.type.tensorType.elemType == Int32(Onnx_TensorProto.DataType.float.rawValue) else {
            throw EngineError(.unsupportedOperator, "graph input or output '\(proto.name)' is not float32")
        }
        let dims = proto.type.tensorType.shape.dim.map { dim -> Int? in
            if case .dimValue(let value) = dim.value, value > 0 { Int(value) } else { nil }
        }
        self.init(name: proto.name, shape: dims)
    }
}

extension ConstantTensor {
    /// Decodes a TensorProto held inside the file (float, double, int64 or int32 elements).
    init(_ proto: Onnx_TensorProto, context: String) throws {
        guard proto.dataLocation != .external else {
            throw EngineError(.malformedModel, "\(context): external tensor data is not supported")
        }
        guard proto.dims.allSatisfy({ $0 >= 0 && $0 < Int64(Int32.max) }) else {
            throw EngineError(.malformedModel, "\(context): invalid dimensions \(proto.dims)")
        }
        let shape = proto.dims.map { Int($0) }
        let (count, overflow) = shape.reduce((1, false)) { partial, dim in
            let product = partial.0.multipliedReportingOverflow(by: dim)
            return (product.partialValue, partial.1 || product.overflow)
        }
        guard !overflow else {
            throw EngineError(.malformedModel, "\(context): dimensions \(proto.dims) overflow")
        }
        let raw = proto.rawData
        func fromRaw<T>(_ type: T.Type) throws -> [T]? {
            guard !raw.isEmpty else { return nil }
            guard raw.count == count * MemoryLayout<T>.size else {
                throw EngineError(.malformedModel,
                                  "\(context): \(raw.count) bytes of data for \(count) elements")
            }
            return raw.withUnsafeBytes { bytes in
                (0..<count).map { bytes.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) }
            }
        }
        let elements: Elements
        switch Onnx_TensorProto.DataType(rawValue: Int(proto.dataType)) {
        case .float:
            elements = .float(try fromRaw(Float.self) ?? proto.floatData)
        case .double:
            elements = .float((try fromRaw(Double.self) ?? proto.doubleData).map { Float($0) })
        case .int64:
            elements = .int64(try fromRaw(Int64.self) ?? proto.int64Data)
        case .int32:
            elements = .int64((try fromRaw(Int32.self) ?? proto.int32Data.map { $0 }).map { Int64($0) })
        default:
            throw EngineError(.unsupportedOperator, "\(context): element type \(proto.dataType) is not supported")
        }
        self.init(shape: shape, elements: elements)
        guard self.count == count else {
            throw EngineError(.malformedModel, "\(context): \(self.count) elements for shape \(shape)")
        }
    }
}
