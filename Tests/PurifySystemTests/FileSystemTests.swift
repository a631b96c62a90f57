import Foundation
import Glibc
import PurifySystem
import Testing

@Suite struct FileSystemTests {
    private func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "purify-system-\(UInt64.random(in: 0...UInt64.max))"
        try FileSystem.createDirectories(path)
        return path
    }

    @Test func replacingAtomicallyLeavesOnlyTheNewFile() throws {
        let directory = try temporaryDirectory()
        let path = FilePaths.join(directory, "report.json")
        try FileSystem.replaceFileAtomically(path, bytes: Array("old".utf8))
        try FileSystem.replaceFileAtomically(path, bytes: Array("new".utf8), mode: 0o644, synchronizes: false)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "new")
        #expect(try FileSystem.contentsOfDirectory(directory) == ["report.json"])
        var status = stat()
        #expect(stat(path, &status) == 0 && status.st_mode & 0o777 == 0o644)
    }

    @Test func aNamedTemporaryIsReplacedAndConsumed() throws {
        let directory = try temporaryDirectory()
        let path = FilePaths.join(directory, "journal.json")
        let temporary = FilePaths.join(directory, ".journal.json")
        try FileSystem.writeNewFile(temporary, bytes: Array("left by a crash".utf8))
        try FileSystem.replaceFileAtomically(path, bytes: Array("{}".utf8), temporaryPath: temporary)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "{}")
        #expect(try !FileSystem.exists(temporary))
    }

    @Test func aLeftoverTemporaryIsReplacedButADirectoryInTheWayIsAnError() throws {
        let directory = try temporaryDirectory()
        let path = FilePaths.join(directory, ".claim.output")
        try FileSystem.writeNewFileReplacingLeftover(path, bytes: Array("first".utf8))
        try FileSystem.writeNewFileReplacingLeftover(path, bytes: Array("second".utf8))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "second")
        let taken = FilePaths.join(directory, "taken")
        try FileSystem.createDirectories(taken)
        let error = #expect(throws: SystemError.self) { try FileSystem.writeNewFileReplacingLeftover(taken, bytes: [1]) }
        // O_EXCL meets the directory, and unlink(2) refuses to remove it.
        #expect(error?.call == "unlink" && error?.errno == Errno(rawValue: EISDIR))
    }

    @Test func aFailedRenameLeavesNoTemporaryFile() throws {
        let directory = try temporaryDirectory()
        // A directory in the way: rename(2) of a file over a directory fails with EISDIR.
        let path = FilePaths.join(directory, "taken")
        try FileSystem.createDirectories(path)
        let error = #expect(throws: SystemError.self) {
            try FileSystem.replaceFileAtomically(path, bytes: [1, 2, 3])
        }
        #expect(error?.call == "rename")
        #expect(try FileSystem.contentsOfDirectory(directory) == ["taken"])
    }

    @Test func failuresNameTheCallThePathAndTheErrno() throws {
        let directory = try temporaryDirectory()
        let missing = FilePaths.join(directory, "missing", "file")
        let error = #expect(throws: SystemError.self) { try FileSystem.writeNewFile(missing, bytes: []) }
        #expect(error?.errno == .noSuchFileOrDirectory)
        #expect(error?.description == "open \(missing): No such file or directory")
        #expect(try FileSystem.entry(at: missing) == nil)
    }

    @Test func renamingWithoutReplacingRefusesAnExistingName() throws {
        let directory = try temporaryDirectory()
        let first = FilePaths.join(directory, "a"), second = FilePaths.join(directory, "b")
        try FileSystem.writeNewFile(first, bytes: [1])
        try FileSystem.writeNewFile(second, bytes: [2])
        #expect(try !FileSystem.renameWithoutReplacing(first, to: second))
        #expect(try FileSystem.removeIfPresent(second))
        #expect(try FileSystem.renameWithoutReplacing(first, to: second))
        #expect(try FileSystem.entry(at: second)?.kind == .regular)
        #expect(try !FileSystem.removeIfPresent(first))
    }

    @Test func createDirectoriesFollowsALinkToADirectory() throws {
        let directory = try temporaryDirectory()
        let target = FilePaths.join(directory, "target")
        try FileSystem.createDirectories(target)
        let link = FilePaths.join(directory, "link")
        #expect(symlink(target, link) == 0)
        try FileSystem.createDirectories(FilePaths.join(link, "below"))
        #expect(try FileSystem.entry(at: FilePaths.join(target, "below"))?.kind == .directory)
    }

    @Test func createDirectoriesRefusesAFileInTheWay() throws {
        let directory = try temporaryDirectory()
        let file = FilePaths.join(directory, "file")
        try FileSystem.writeNewFile(file, bytes: [])
        let error = #expect(throws: SystemError.self) { try FileSystem.createDirectories(FilePaths.join(file, "below")) }
        #expect(error?.errno == .notDirectory)
    }
}
