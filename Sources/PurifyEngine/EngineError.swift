/// An error from loading or running a model: a code to match on and a message that names what
/// went wrong (the node and operator where there is one).
public struct EngineError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure an ``EngineError`` is; compare with the static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Kind: Hashable, Sendable {
            case unreadableFile
            case malformedModel
            case unsupportedOperator
            case invalidAttribute
            case invalidShape
            case invalidInput
            case backendFailure
        }

        private let kind: Kind

        private init(_ kind: Kind) {
            self.kind = kind
        }

        /// The model file could not be opened or read.
        public static let unreadableFile = Code(.unreadableFile)
        /// The file is not a well-formed ONNX model (truncated, garbage, dangling references).
        public static let malformedModel = Code(.malformedModel)
        /// The model uses an operator the engine does not implement.
        public static let unsupportedOperator = Code(.unsupportedOperator)
        /// A node carries an attribute the engine does not know, or a value it cannot honour.
        public static let invalidAttribute = Code(.invalidAttribute)
        /// Shapes inside the graph do not fit together for the given input shape.
        public static let invalidShape = Code(.invalidShape)
        /// The tensors passed to `run` do not match the model's inputs.
        public static let invalidInput = Code(.invalidInput)
        /// oneDNN refused or failed an operation.
        public static let backendFailure = Code(.backendFailure)

        public var description: String {
            switch kind {
            case .unreadableFile: "unreadable file"
            case .malformedModel: "malformed model"
            case .unsupportedOperator: "unsupported operator"
            case .invalidAttribute: "invalid attribute"
            case .invalidShape: "invalid shape"
            case .invalidInput: "invalid input"
            case .backendFailure: "backend failure"
            }
        }
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
