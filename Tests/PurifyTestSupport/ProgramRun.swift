import Foundation

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
        // Small outputs: reading one pipe to its end cannot block the other one's writer.
        let standardOutput = output.fileHandleForReading.readDataToEndOfFile()
        let standardError = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return ProgramRun(status: process.terminationStatus, standardOutput: String(decoding: standardOutput, as: UTF8.self),
                          standardError: String(decoding: standardError, as: UTF8.self))
    }
}
