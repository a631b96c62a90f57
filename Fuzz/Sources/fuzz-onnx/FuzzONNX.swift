import Foundation
import PurifyEngine

/// One engine for the whole run: starting oneDNN per input would dominate.
nonisolated(unsafe) let engine = try! InferenceEngine(threadCount: 1)

/// One input: a serialized ONNX model through the loader (protobuf parsing, validation,
/// lowering). An `EngineError` is a correct answer; a crash, a sanitizer report or a hang is a
/// bug. Runs the model once on a small input when it loads, so that planning is covered too.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzONNX(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Data(bytes: data, count: size)
    let done = DispatchSemaphore(value: 0)
    Task {
        defer { done.signal() }
        guard let model = try? await engine.loadModel(serialized: bytes), model.inputs.count == 1 else { return }
        let shape = model.inputs[0].shape.map { $0.map { min(max($0, 1), 64) } ?? 1 }
        guard shape.reduce(1, *) <= 1 << 16 else { return }
        _ = try? await model.run(Tensor(shape: shape, values: [Float](repeating: 0.5, count: shape.reduce(1, *))))
    }
    done.wait()
    return 0
}
