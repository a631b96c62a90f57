/// An error from loading or running a model: a code to match on and a message that names what
/// went wrong (the node and operator where there is one).
public struct EngineError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure an ``EngineError`` is.
    public enum Code: String, Sendable, Hashable, CustomStringConvertible {
        /// The model file could not be opened or read.
        case unreadableFile = "unreadable file"
        /// The file is not a well-formed ONNX model (truncated, garbage, dangling references).
        case malformedModel = "malformed model"
        /// The model uses an operator the engine does not implement.
        case unsupportedOperator = "unsupported operator"
        /// A node carries an attribute the engine does not know, or a value it cannot honour.
        case invalidAttribute = "invalid attribute"
        /// Shapes inside the graph do not fit together for the given input shape.
        case invalidShape = "invalid shape"
        /// The tensors passed to `run` do not match the model's inputs.
        case invalidInput = "invalid input"
        /// oneDNN refused or failed an operation.
        case backendFailure = "backend failure"

        public var description: String { rawValue }
    }

    /// The kind of failure.
    public let code: Code
    /// What failed, in words.
    public let message: String
    /// Whether the message already names the node it is about.
    let namesNode: Bool

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
        namesNode = false
    }

    public var description: String {
        "\(code): \(message)"
    }
}

extension EngineError {
    /// An error about one node of the graph: the message starts with the node's name and op.
    init(_ code: Code, node: String, op: String, _ message: String) {
        self.code = code
        self.message = "node '\(node)' (\(op)): \(message)"
        namesNode = true
    }
}
