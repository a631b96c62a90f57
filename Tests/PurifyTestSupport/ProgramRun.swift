import Foundation
import PurifySystem

/// How a program run to its end exited and what it printed.
public struct ProgramRun: Sendable {
    public var status: Int32
    public var standardOutput: String
    public var standardError: String

    /// Runs `executable` with `arguments` to its end, off the cooperative pool. With an
    /// `environment`, the child gets exactly that plus this process's sanitizer settings
    /// (`*SAN_OPTIONS`: suppressions, leak detection), without which a child under
    /// AddressSanitizer reports the suppressed leaks as failures; without one it inherits this
    /// process's environment.
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) async throws -> ProgramRun {
        try await offPool { try runBlocking(executable, arguments, environment: environment) }
    }

    /// ``run(_:_:environment:)`` on the calling thread.
    public static func runBlocking(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> ProgramRun {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment {
            process.environment = ProcessInfo.processInfo.environment.filter { $0.key.hasSuffix("SAN_OPTIONS") }
                .merging(environment) { _, new in new }
        }
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // Both pipes are drained at once: a child that fills one pipe (64 KiB: a sanitizer's
        // report on standard error) while this thread waits for the end of the other would
        // block for good.
        let errorDrain = try PipeDrain(errors.fileHandleForReading)
        let standardOutput = output.fileHandleForReading.readDataToEndOfFile()
        let standardError = errorDrain.wait()
        process.waitUntilExit()
        return ProgramRun(status: process.terminationStatus, standardOutput: String(decoding: standardOutput, as: UTF8.self),
                          standardError: String(decoding: standardError, as: UTF8.self))
    }
}

/// Reads a pipe to its end on a thread of its own.
private final class PipeDrain: Sendable {
    private let data = Locked(Data())
    private let finished = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) throws {
        try SystemThread.start(name: "test-pipe") { [self] in
            let read = handle.readDataToEndOfFile()
            data.withLock { $0 = read }
            finished.signal()
        }
    }

    /// Waits for the end of the pipe and returns what was read.
    func wait() -> Data {
        finished.wait()
        return data.withLock { $0 }
    }
}
