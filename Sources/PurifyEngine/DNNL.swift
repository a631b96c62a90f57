import CDNNL

// Thin owners of oneDNN handles: each destroys its handle when released.

/// Throws a backend error unless oneDNN reported success.
func dnnlCheck(_ status: dnnl_status_t, _ what: @autoclosure () -> String) throws {
    guard status == dnnl_success else {
        throw EngineError(.backendFailure, "\(what()) failed: oneDNN status \(status.rawValue)")
    }
}

/// oneDNN's CPU engine. Memories and primitives from one engine may be used on any of its streams.
final class CPUEngine {
    let handle: dnnl_engine_t

    init() throws {
        var engine: dnnl_engine_t?
        try dnnlCheck(dnnl_engine_create(&engine, dnnl_cpu, 0), "creating the oneDNN CPU engine")
        guard let engine else { throw EngineError(.backendFailure, "oneDNN returned no engine") }
        handle = engine
    }

    deinit {
        dnnl_engine_destroy(handle)
    }
}

/// The CPU engine and an in-order stream, used by one thread.
final class DNNLContext {
    private let cpu: CPUEngine
    let stream: dnnl_stream_t

    var engine: dnnl_engine_t { cpu.handle }

    init(engine: CPUEngine) throws {
        var stream: dnnl_stream_t?
        try dnnlCheck(dnnl_stream_create(&stream, engine.handle, dnnl_stream_default_flags.rawValue),
                      "creating a oneDNN stream")
        guard let stream else { throw EngineError(.backendFailure, "oneDNN returned no stream") }
        cpu = engine
        self.stream = stream
    }

    deinit {
        dnnl_stream_destroy(stream)
    }
}

/// Primitive attributes: user-managed scratchpad plus an optional post-op chain.
final class PrimitiveAttributes {
    let handle: dnnl_primitive_attr_t

    init(postOps: [FusedPostOp] = []) throws {
        var attr: dnnl_primitive_attr_t?
        try dnnlCheck(dnnl_primitive_attr_create(&attr), "creating primitive attributes")
        guard let attr else { throw EngineError(.backendFailure, "oneDNN returned no attributes") }
        handle = attr
        try dnnlCheck(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user),
                      "setting the scratchpad mode")
        guard !postOps.isEmpty else { return }
        var ops: dnnl_post_ops_t?
        try dnnlCheck(dnnl_post_ops_create(&ops), "creating post-ops")
        guard let ops else { throw EngineError(.backendFailure, "oneDNN returned no post-ops") }
        defer { dnnl_post_ops_destroy(ops) }
        for op in postOps {
            switch op {
            case .eltwise(let eltwise):
                try dnnlCheck(dnnl_post_ops_append_eltwise(ops, 1, eltwise.algorithm, eltwise.alpha, eltwise.beta),
                              "appending an eltwise post-op")
            case .sum:
                try dnnlCheck(dnnl_post_ops_append_sum(ops, 1), "appending a sum post-op")
            }
        }
        try dnnlCheck(dnnl_primitive_attr_set_post_ops(attr, ops), "setting post-ops")
    }

    deinit {
        dnnl_primitive_attr_destroy(handle)
    }
}

/// A primitive descriptor: the implementation oneDNN chose, and the layouts it wants.
final class PrimitiveDescriptor {
    let handle: dnnl_primitive_desc_t

    /// Creates a descriptor for an operation descriptor (convolution, eltwise, ...).
    init<Descriptor>(_ descriptor: inout Descriptor, attributes: PrimitiveAttributes, context: DNNLContext,
                     what: @autoclosure () -> String) throws {
        var pd: dnnl_primitive_desc_t?
        let status = withUnsafePointer(to: &descriptor) { pointer in
            dnnl_primitive_desc_create(&pd, UnsafeRawPointer(pointer).assumingMemoryBound(to: dnnl_op_desc_t.self),
                                       attributes.handle, context.engine, nil)
        }
        try dnnlCheck(status, what())
        guard let pd else { throw EngineError(.backendFailure, "oneDNN returned no descriptor for \(what())") }
        handle = pd
    }

    /// Adopts a descriptor made by one of oneDNN's direct constructors (reorder, concat).
    init(adopting handle: dnnl_primitive_desc_t) {
        self.handle = handle
    }

    func memoryDescriptor(_ query: dnnl_query_t, index: Int32 = 0) -> dnnl_memory_desc_t {
        dnnl_primitive_desc_query_md(handle, query, index).pointee
    }

    var primitiveKind: dnnl_primitive_kind_t {
        var kind = dnnl_undefined_primitive
        dnnl_primitive_desc_query(handle, dnnl_query_primitive_kind, 0, &kind)
        return kind
    }

    var scratchpadBytes: Int {
        var md = memoryDescriptor(dnnl_query_scratchpad_md)
        return dnnl_memory_desc_get_size(&md)
    }

    deinit {
        dnnl_primitive_desc_destroy(handle)
    }
}

/// An executable primitive.
final class Primitive {
    let handle: dnnl_primitive_t

    init(_ descriptor: PrimitiveDescriptor, what: @autoclosure () -> String) throws {
        var primitive: dnnl_primitive_t?
        try dnnlCheck(dnnl_primitive_create(&primitive, descriptor.handle), what())
        guard let primitive else { throw EngineError(.backendFailure, "oneDNN returned no primitive for \(what())") }
        handle = primitive
    }

    deinit {
        dnnl_primitive_destroy(handle)
    }
}

/// A memory object: a layout plus a buffer, either oneDNN's own or one the plan points it at.
final class Memory {
    let handle: dnnl_memory_t
    let descriptor: dnnl_memory_desc_t

    /// A memory whose buffer oneDNN allocates and owns (weights, constants).
    convenience init(ownedBufferFor descriptor: dnnl_memory_desc_t, context: DNNLContext) throws {
        try self.init(descriptor: descriptor, handle: cdnnl_memory_allocate(), context: context)
    }

    /// A memory over `buffer`, which must outlive it; `nil` leaves it unbound until `bind`.
    init(descriptor: dnnl_memory_desc_t, handle buffer: UnsafeMutableRawPointer?, context: DNNLContext) throws {
        var md = descriptor
        var memory: dnnl_memory_t?
        try dnnlCheck(dnnl_memory_create(&memory, &md, context.engine, buffer ?? cdnnl_memory_none()),
                      "creating a memory object")
        guard let memory else { throw EngineError(.backendFailure, "oneDNN returned no memory") }
        handle = memory
        self.descriptor = descriptor
    }

    var dataPointer: UnsafeMutableRawPointer? {
        var pointer: UnsafeMutableRawPointer?
        dnnl_memory_get_data_handle(handle, &pointer)
        return pointer
    }

    func bind(_ buffer: UnsafeMutableRawPointer) throws {
        try dnnlCheck(dnnl_memory_set_data_handle(handle, buffer), "binding a buffer to a memory object")
    }

    deinit {
        dnnl_memory_destroy(handle)
    }
}

/// An element-wise function in oneDNN's terms (also used as a post-op).
struct Eltwise {
    var algorithm: dnnl_alg_kind_t
    var alpha: Float
    var beta: Float

    /// `alpha * x + beta`.
    static func linear(scale: Float, shift: Float) -> Eltwise {
        Eltwise(algorithm: dnnl_eltwise_linear, alpha: scale, beta: shift)
    }

    /// Two linear functions as one: `next(self(x))`.
    func followed(by next: Eltwise) -> Eltwise {
        .linear(scale: alpha * next.alpha, shift: beta * next.alpha + next.beta)
    }
}

/// A post-op fused into a convolution or inner product.
enum FusedPostOp {
    case eltwise(Eltwise)
    /// Accumulate into the destination's previous contents.
    case sum
}

extension dnnl_memory_desc_t {
    /// A plain (row-major) float32 descriptor, or one whose layout the primitive picks.
    static func float32(_ dims: [Int], layout: MemoryLayoutChoice = .plain) throws -> dnnl_memory_desc_t {
        var md = dnnl_memory_desc_t()
        let tag: dnnl_format_tag_t = switch layout {
        case .any: dnnl_format_tag_any
        case .plain: plainFormatTag(rank: dims.count)
        case .tag(let tag): tag
        }
        try dnnlCheck(dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), dims.map { Int64($0) }, dnnl_f32, tag),
                      "describing a \(dims) tensor")
        return md
    }

    /// The logical dimensions.
    var shape: [Int] {
        withUnsafeBytes(of: dims) { raw in
            Array(raw.bindMemory(to: Int64.self).prefix(Int(ndims))).map { Int($0) }
        }
    }

    var byteCount: Int {
        var md = self
        return dnnl_memory_desc_get_size(&md)
    }

    func isSameLayout(as other: dnnl_memory_desc_t) -> Bool {
        var lhs = self
        var rhs = other
        return dnnl_memory_desc_equal(&lhs, &rhs) != 0
    }
}

enum MemoryLayoutChoice {
    case any
    case plain
    case tag(dnnl_format_tag_t)
}

private func plainFormatTag(rank: Int) -> dnnl_format_tag_t {
    switch rank {
    case 1: dnnl_a
    case 2: dnnl_ab
    case 3: dnnl_abc
    case 4: dnnl_abcd
    case 5: dnnl_abcde
    case 6: dnnl_abcdef
    default: dnnl_abcdefg
    }
}
