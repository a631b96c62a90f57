import Foundation
import Logging
import PurifySystem
import PurifyTestSupport

/// Writes `contents` to `path` and closes it.
func writeFile(_ path: String, _ contents: String = "data") throws {
    try Data(contents.utf8).write(to: URL(fileURLWithPath: path))
}

/// Runs an external command (cp, mv, mkfifo…) and fails the test if it fails.
func runCommand(_ executable: String, _ arguments: String...) throws {
    let run = try ProgramRun.runBlocking(executable, arguments)
    guard run.status == 0 else {
        throw POSIXError(.EIO, userInfo: [NSLocalizedDescriptionKey: "\(executable) \(arguments) exited \(run.status): \(run.standardError)"])
    }
}

/// Collects what an async sequence yields, for assertions from the test task.
final class Collected<Element: Sendable>: Sendable {
    private let elements = Locked<[Element]>([])

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
