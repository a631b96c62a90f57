/// A dense float32 tensor in row-major order (NCHW for images).
public struct Tensor: Sendable, Hashable {
    /// The extent of each dimension, outermost first.
    public let shape: [Int]
    /// The elements, `shape.reduce(1, *)` of them.
    public let values: [Float]

    /// Wraps `values` as a tensor of `shape`; their counts must agree.
    public init(shape: [Int], values: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(shape.reduce(1, *) == values.count, "\(values.count) values for shape \(shape)")
        self.shape = shape
        self.values = values
    }
}

/// The name and shape of a model input or output as the model declares it.
public struct TensorDescription: Sendable, Hashable {
    /// The graph's name for the tensor, the key `run` uses.
    public let name: String
    /// Each dimension's extent, or `nil` where the model leaves it open (a dynamic batch axis).
    public let shape: [Int?]

    public init(name: String, shape: [Int?]) {
        self.name = name
        self.shape = shape
    }
}
