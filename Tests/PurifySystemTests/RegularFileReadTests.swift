import Foundation
import Glibc
import PurifySystem
import Testing

@Suite("Reading a handed-over file whole") struct RegularFileReadTests {
    let directory: String

    init() throws {
        directory = NSTemporaryDirectory() + "purify-read-\(UInt64.random(in: 0...UInt64.max))"
        try FileSystem.createDirectories(directory)
    }

    private func file(_ name: String, bytes: [UInt8]) throws -> String {
        let path = FilePaths.join(directory, name)
        try FileSystem.writeNewFile(path, bytes: bytes, synchronizes: false)
        return path
    }

    @Test func aFileUpToTheLimitIsReadWholeAndAnEmptyOneIsEmpty() throws {
        let bytes = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        #expect(try FileSystem.readRegularFile(atPath: file("exact", bytes: bytes), maxBytes: bytes.count) == bytes)
        #expect(try FileSystem.readRegularFile(atPath: file("empty", bytes: []), maxBytes: 10) == [])
    }

    @Test func aFileOverTheLimitIsRefusedWithItsSize() throws {
        let path = try file("big", bytes: [UInt8](repeating: 1, count: 101))
        let error = #expect(throws: RegularFileReadError.self) { try FileSystem.readRegularFile(atPath: path, maxBytes: 100) }
        guard case .tooLarge(_, let bytes, let limit)? = error else { Issue.record("\(String(describing: error))"); return }
        #expect(bytes == 101 && limit == 100)
    }

    /// /proc files say they are empty and are not: a file longer than fstat said, as one that grew.
    @Test func aFileLongerThanItsStatedSizeIsReadToItsEndWithinTheLimit() throws {
        let status = try FileSystem.readRegularFile(atPath: "/proc/self/status", maxBytes: 1 << 20)
        #expect(String(decoding: status, as: UTF8.self).hasPrefix("Name:"))
        #expect(status.count > 100)
        let error = #expect(throws: RegularFileReadError.self) {
            try FileSystem.readRegularFile(atPath: "/proc/self/status", maxBytes: 100)
        }
        guard case .tooLarge(_, let bytes, 100)? = error else { Issue.record("\(String(describing: error))"); return }
        #expect(bytes > 100)
    }

    @Test func aSymbolicLinkIsRefusedUnlessFollowed() throws {
        let target = try file("target", bytes: [1, 2, 3])
        let link = FilePaths.join(directory, "link")
        #expect(symlink(target, link) == 0)
        let error = #expect(throws: RegularFileReadError.self) { try FileSystem.readRegularFile(atPath: link, maxBytes: 10) }
        guard case .symbolicLink? = error else { Issue.record("\(String(describing: error))"); return }
        #expect(try FileSystem.readRegularFile(atPath: link, maxBytes: 10, followsSymlinks: true) == [1, 2, 3])
    }

    @Test func aFIFOIsRefusedWithoutWaitingForAWriterAndADirectoryToo() throws {
        let fifo = FilePaths.join(directory, "fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        for path in [fifo, directory] {
            let error = #expect(throws: RegularFileReadError.self) { try FileSystem.readRegularFile(atPath: path, maxBytes: 10) }
            guard case .notRegularFile? = error else { Issue.record("\(path): \(String(describing: error))"); continue }
        }
    }

    @Test func aMissingFileIsTheFailedOpen() throws {
        let error = #expect(throws: RegularFileReadError.self) {
            try FileSystem.readRegularFile(atPath: FilePaths.join(directory, "missing"), maxBytes: 10)
        }
        guard case .failed(let failure)? = error else { Issue.record("\(String(describing: error))"); return }
        #expect(failure.call == "open" && failure.errno == .noSuchFileOrDirectory)
    }
}
