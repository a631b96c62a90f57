import Foundation
import Glibc
import PurifyControl
import PurifyImage
import PurifySystem
import PurifyTestSupport
import Testing

/// The package's root folder, from this file's path.
let packageRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The pipeline tests' random-weight, MNIST-shaped bundle (Tests/PurifyPipelineTests/Fixtures).
let fixtureBundle = packageRoot + "/Tests/PurifyPipelineTests/Fixtures/bundle"

/// `purifyd` in the directory of the running test executable (SwiftPM builds it there).
let purifydPath: String? = {
    guard let testExecutable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
    let path = URL(fileURLWithPath: testExecutable).deletingLastPathComponent().appendingPathComponent("purifyd").path
    return FileManager.default.isExecutableFile(atPath: path) ? path : nil
}()

/// A folder under /tmp for one daemon: `inbox/`, `outbox/`, `spool/` (with `failed/`),
/// `state/`, `run/control.sock`, `src/` for files to drop, the configuration `purifyd.toml`
/// and the daemon's log `purifyd.log`. Removed when the value goes away.
final class DaemonFolder: Sendable {
    private let directory: TemporaryDirectory
    var root: String { directory.path }

    init() throws {
        directory = try TemporaryDirectory(prefix: "purifyd-it")
        for folder in ["inbox", "run", "src"] { _ = try directory.subdirectory(folder) }
    }

    var inbox: String { root + "/inbox" }
    var outbox: String { root + "/outbox" }
    var failed: String { root + "/spool/failed" }
    var claimed: String { root + "/spool/claimed" }
    var source: String { root + "/src" }
    var socket: String { root + "/run/control.sock" }
    var configurationPath: String { root + "/purifyd.toml" }
    var log: String { root + "/purifyd.log" }

    /// Writes the configuration: one inbox `test` over the fixture bundle, `extra` appended to
    /// the inbox table.
    func writeConfiguration(queueCapacity: Int = 8, classifier: Bool = true, outputFormat: String = "same",
                            bundle: String = fixtureBundle, logLevel: String = "info", extra: String = "") throws {
        let toml = """
            log_level = "\(logLevel)"
            state_directory = "state"
            control_socket = "run/control.sock"
            drain_deadline_s = 30
            [[inbox]]
            name = "test"
            path = "inbox"
            outbox = "outbox"
            spool_dir = "spool"
            bundle = "\(bundle)"
            queue_capacity = \(queueCapacity)
            classifier = \(classifier)
            output_format = "\(outputFormat)"
            \(extra)
            [inbox.batch]
            max_batch = 16
            max_delay_ms = 5

            """
        try Data(toml.utf8).write(to: URL(fileURLWithPath: configurationPath))
    }

    /// Names in `folder` (none when it does not exist).
    func names(in folder: String) -> Set<String> {
        Set((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
    }

    /// Reports committed in the outbox (`<output>.json`).
    var committedReports: Set<String> { names(in: outbox).filter { $0.hasSuffix(".json") } }
    /// Error reports in `failed/` (`<input>.error.json`).
    var failureReports: Set<String> { names(in: failed).filter { $0.hasSuffix(".error.json") } }

    /// Writes `count` distinct 28×28 gray PNGs to `src/` as `<prefix><n>.png` and returns their names.
    func makeImages(_ count: Int, prefix: String = "digit") throws -> [String] {
        try (0..<count).map { index in
            let name = "\(prefix)\(index).png"
            try Data(pngImage(seed: UInt64(index))).write(to: URL(fileURLWithPath: source + "/" + name))
            return name
        }
    }

    /// Renames files from `src/` into the inbox, as a producer that writes elsewhere does.
    func drop(_ names: [String]) throws {
        for name in names {
            guard rename(source + "/" + name, inbox + "/" + name) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        }
    }

    /// The daemon's log so far, for failure messages.
    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
}

/// A 28×28 gray PNG of deterministic noise.
func pngImage(seed: UInt64, width: Int = 28, height: Int = 28) -> [UInt8] {
    var state = seed &* 6364136223846793005 &+ 1442695040888963407
    let pixels = (0..<(width * height)).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return UInt8(truncatingIfNeeded: state >> 56)
    }
    // Encoding a valid in-memory image cannot fail.
    return try! ImageEncoder().encode(PixelImage(width: width, height: height, layout: .gray, pixels: pixels), as: .png)
}

/// A running `purifyd` on a ``DaemonFolder``'s configuration, its output going to the folder's log.
final class DaemonProcess {
    let folder: DaemonFolder
    let process: Process
    var pid: pid_t { process.processIdentifier }

    private init(folder: DaemonFolder, process: Process) {
        self.folder = folder
        self.process = process
    }

    /// The sanitizers' settings of the test process (suppressions, leak detection): a child started
    /// with an environment of its own would lose them and report the suppressed leaks as failures.
    static let sanitizerSettings = ProcessInfo.processInfo.environment.filter { $0.key.hasSuffix("SAN_OPTIONS") }

    /// Starts `purifyd --config <folder>/purifyd.toml` and waits until its control socket answers.
    /// The environment is `environment` over what the shipped unit sets (OMP_WAIT_POLICY=PASSIVE:
    /// on a busy machine spinning OpenMP threads slow the engine several times over).
    static func start(in folder: DaemonFolder, environment: [String: String] = [:]) async throws -> DaemonProcess {
        let executable = try #require(purifydPath, "no purifyd binary beside the test bundle")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["--config", folder.configurationPath]
        process.environment = ["PATH": "/usr/bin:/bin", "OMP_WAIT_POLICY": "PASSIVE"].merging(sanitizerSettings) { _, new in new }
            .merging(environment) { _, new in new }
        if !FileManager.default.fileExists(atPath: folder.log) {
            _ = FileManager.default.createFile(atPath: folder.log, contents: nil)
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: folder.log))
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        let daemon = DaemonProcess(folder: folder, process: process)
        let answered = await eventually(timeout: .seconds(60)) {
            (try? await daemon.request(.version)) != nil || !process.isRunning
        }
        #expect(answered && process.isRunning, "purifyd did not come up: \(folder.logText)")
        return daemon
    }

    /// Starts a daemon, runs `body` with it, and kills it (SIGKILL) if `body` left it running.
    static func running(in folder: DaemonFolder, environment: [String: String] = [:],
                        _ body: (DaemonProcess) async throws -> Void) async throws {
        let daemon = try await start(in: folder, environment: environment)
        do {
            try await body(daemon)
        } catch {
            await daemon.kill9()
            throw error
        }
        await daemon.kill9()
    }

    /// One control request over the socket, from a thread of its own; an error reply throws.
    func request(_ command: ControlCommand, _ arguments: [String: JSONValue] = [:]) async throws -> [String: JSONValue] {
        let socket = folder.socket
        return try await offPool { try ControlClient(socketPath: socket, timeout: .seconds(10)).send(command, arguments: arguments) }
    }

    /// The first inbox's entry in `status`.
    func inboxStatus() async throws -> [String: JSONValue] {
        guard case .array(let inboxes)? = try await request(.status)["inboxes"], case .object(let inbox)? = inboxes.first else { return [:] }
        return inbox
    }

    /// Sends `signal` to the daemon.
    func send(_ signal: Int32) {
        kill(pid, signal)
    }

    /// Waits for the process to end and returns its exit status (or the signal that ended it).
    func waitForExit(timeout: Duration = .seconds(60)) async -> (status: Int32, reason: Process.TerminationReason)? {
        guard await eventually(timeout: timeout, { !process.isRunning }) else { return nil }
        // The process has ended, so this returns at once; it also drops the run loop source
        // through which Foundation's Process keeps itself alive until someone waits for it.
        process.waitUntilExit()
        return (process.terminationStatus, process.terminationReason)
    }

    /// The process's peak resident set (VmHWM) in KiB.
    func peakResidentKiB() throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") })
        return try #require(Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
    }

    /// Stops the daemon if it still runs (SIGKILL), so that no test leaks a process.
    func kill9() async {
        if process.isRunning { send(SIGKILL) }
        _ = await waitForExit()
    }
}

/// Opens one connection to the control socket per request, all at once, then sends each request
/// as is, then reads each reply line (empty when the daemon closed without one): concurrent
/// clients as the daemon sees them. Writes with MSG_NOSIGNAL: a daemon that stops reading an
/// overlong line must not kill the test with SIGPIPE.
func rawExchanges(socketPath: String, _ requests: [[UInt8]]) async throws -> [String] {
    try await offPool { try rawExchangesBlocking(socketPath: socketPath, requests) }
}

private func rawExchangesBlocking(socketPath: String, _ requests: [[UInt8]]) throws -> [String] {
    var descriptors: [Int32] = []
    defer { for descriptor in descriptors { close(descriptor) } }
    for _ in requests {
        descriptors.append(try UnixSockets.connected(to: socketPath))
    }
    for (descriptor, request) in zip(descriptors, requests) {
        var offset = 0
        while offset < request.count {
            let sent = request.withUnsafeBytes { send(descriptor, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 { break }  // the daemon stopped reading: its reply is on the way
            offset += sent
        }
    }
    return descriptors.map { descriptor in
        var reply: [UInt8] = []
        var byte: UInt8 = 0
        while recv(descriptor, &byte, 1, 0) == 1, byte != UInt8(ascii: "\n") { reply.append(byte) }
        return String(decoding: reply, as: UTF8.self)
    }
}
