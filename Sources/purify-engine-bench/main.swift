// Times PurifyEngine on one ONNX model for the engine benchmark (bench/engine/bench.py drives it).
//
//   purify-engine-bench MODEL.onnx --shape C,H,W --batches 1,16 --threads 2 [--seconds 2] [--profile]
//
// Prints one JSON object per batch size: {"batch": 16, "images_per_second": ..., ...}; with
// --profile, also the time and GFLOP/s per kind of step.
import Foundation
import PurifyEngine

struct Options {
    var model = ""
    var shape = [3, 32, 32]
    var batches = [1, 16]
    var threads = ProcessInfo.processInfo.activeProcessorCount
    var seconds = 2.0
    var profile = false

    init(_ arguments: [String]) throws {
        var remaining = arguments[...]
        func value(_ flag: String) throws -> String {
            guard let next = remaining.popFirst() else { throw UsageError("\(flag) needs a value") }
            return next
        }
        func integers(_ text: String) throws -> [Int] {
            try text.split(separator: ",").map {
                guard let value = Int($0), value > 0 else { throw UsageError("'\(text)' is not a list of positive integers") }
                return value
            }
        }
        while let argument = remaining.popFirst() {
            switch argument {
            case "--shape": shape = try integers(value(argument))
            case "--batches": batches = try integers(value(argument))
            case "--threads": threads = try integers(value(argument)).first ?? threads
            case "--seconds":
                guard let parsed = Double(try value(argument)), parsed > 0 else { throw UsageError("--seconds needs a number") }
                seconds = parsed
            case "--profile": profile = true
            case _ where !argument.hasPrefix("-") && model.isEmpty: model = argument
            default: throw UsageError("unknown argument '\(argument)'")
            }
        }
        guard !model.isEmpty else { throw UsageError("usage: purify-engine-bench MODEL.onnx [--shape C,H,W] [--batches 1,16] [--threads N] [--seconds S] [--profile]") }
    }
}

struct UsageError: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

func measure(_ model: InferenceModel, input: Tensor, seconds: Double) async throws -> (runs: Int, seconds: Double) {
    for _ in 0..<3 { _ = try await model.run(input) }
    let clock = ContinuousClock()
    let start = clock.now
    var runs = 0
    while true {
        _ = try await model.run(input)
        runs += 1
        let elapsed = start.duration(to: clock.now)
        let total = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        if total >= seconds { return (runs, total) }
    }
}

func json(_ object: [String: Any]) throws -> String {
    String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
}

do {
    let options = try Options(Array(CommandLine.arguments.dropFirst()))
    let engine = try InferenceEngine(threadCount: options.threads)
    let model = try await engine.loadModel(at: options.model)
    var generator = SystemRandomNumberGenerator()
    for batch in options.batches {
        let shape = [batch] + options.shape
        let input = Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in Float.random(in: 0...1, using: &generator) })
        let (runs, seconds) = try await measure(model, input: input, seconds: options.seconds)
        var result: [String: Any] = [
            "batch": batch, "runs": runs, "seconds": seconds,
            "images_per_second": Double(runs * batch) / seconds,
            "milliseconds_per_image": seconds * 1000 / Double(runs * batch),
        ]
        if options.profile {
            let iterations = max(3, runs / 4)
            let profile = try await model.profile(input, iterations: iterations)
            func rows(_ entries: [Profile.Entry]) -> [[String: Any]] {
                entries.map { entry in
                    [
                        "name": entry.name,
                        "milliseconds_per_run": entry.secondsPerRun * 1000,
                        "gflops_per_second": entry.secondsPerRun > 0 ? entry.flopsPerRun / entry.secondsPerRun / 1e9 : 0,
                    ]
                }
            }
            result["profile"] = rows(profile.categories)
            result["steps"] = rows(profile.steps)
        }
        print(try json(result))
    }
} catch {
    FileHandle.standardError.write(Data("purify-engine-bench: \(error)\n".utf8))
    exit(1)
}
