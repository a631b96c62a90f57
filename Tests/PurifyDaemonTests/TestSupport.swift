import Foundation
import Logging
import Synchronization

/// A fresh directory under /tmp, removed when the value is deinitialised.
final class TemporaryDirectory: Sendable {
    let path: String

    init() throws {
        var template = Array("/tmp/purifyd-test.XXXXXX".utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw POSIXError(.init(rawValue: errno) ?? .EIO)
        }
        path = String(cString: created)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    func subdirectory(_ name: String) throws -> String {
        let subdirectory = path + "/" + name
        try FileManager.default.createDirectory(atPath: subdirectory, withIntermediateDirectories: true)
        return subdirectory
    }
}

/// Writes `contents` to `path` and closes it.
func writeFile(_ path: String, _ contents: String = "data") throws {
    try Data(contents.utf8).write(to: URL(fileURLWithPath: path))
}

/// Runs an external command (cp, mv, mkfifo…) and fails the test if it fails.
func runCommand(_ executable: String, _ arguments: String...) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw POSIXError(.EIO, userInfo: [NSLocalizedDescriptionKey: "\(executable) \(arguments) exited \(process.terminationStatus)"])
    }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it held.
func eventually(timeout: Duration = .seconds(10), _ condition: () throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try condition()
}

/// Collects what an async sequence yields, for assertions from the test task.
final class Collected<Element: Sendable>: Sendable {
    private let elements = Mutex<[Element]>([])

    var all: [Element] { elements.withLock { $0 } }

    func append(_ element: Element) {
        elements.withLock { $0.append(element) }
    }
}

let testLogger: Logger = {
    var logger = Logger(label: "purifyd.tests")
    logger.logLevel = .critical
    return logger
}()
