public import PurifyImage

#if canImport(Glibc)
import Glibc
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
import Darwin
private let systemWrite = Darwin.write
#endif

/// Makes a pipeline's results durable: the purified image first, the report last, so that a
/// report's presence means "done". The daemon's spool and the CLI's output folder are two
/// implementations. Both methods are called on the pipeline's I/O threads and may block.
public protocol ResultCommitter: Sendable {
    /// Writes the purified image of `request`, encoded in `format`, and returns its path.
    func commitImage(_ encoded: [UInt8], format: ImageFormat, for request: PurificationRequest) throws -> String

    /// Writes `request`'s report (`json` is `report` encoded) and returns its path. Called for
    /// every request, after ``commitImage(_:format:for:)`` succeeded or for a failure.
    func commitReport(_ json: [UInt8], report: PurificationReport, for request: PurificationRequest) throws -> String
}

/// Writes results under one folder, mirroring request names: the image of `"a/b.jpg"` becomes
/// `a/b.jpg` (or `a/b.png` for PNG output) and its report `a/b.jpg.json`. Every file is written
/// to a temporary dot-file in its folder and renamed into place.
public struct DirectoryCommitter: ResultCommitter {
    /// The output folder; missing folders are created.
    public let directory: String
    /// Whether each file is fsync'ed before its rename (and its folder after), for durability
    /// across a crash; without it the rename is still atomic for readers.
    public let synchronizes: Bool

    public init(directory: String, synchronizes: Bool = false) {
        self.directory = directory
        self.synchronizes = synchronizes
    }

    /// Where the image of `request` goes in `format`: its name with the format's extension
    /// (kept as is when it already names the format, `.jpg` and `.jpeg` alike).
    public func imagePath(for request: PurificationRequest, format: ImageFormat) -> String {
        let name = request.name
        let fileName = name.split(separator: "/").last.map(String.init) ?? name
        let dot = fileName.lastIndex(of: ".")
        let currentExtension = dot.map { fileName[fileName.index(after: $0)...].lowercased() }
        let keeps = switch format {
        case .png: currentExtension == "png"
        case .jpeg: currentExtension == "jpg" || currentExtension == "jpeg"
        }
        if keeps { return join(directory, name) }
        let stem = dot.map { String(name.dropLast(fileName.distance(from: $0, to: fileName.endIndex))) } ?? name
        return join(directory, stem + "." + format.fileExtension)
    }

    /// Where the report of `request` goes.
    public func reportPath(for request: PurificationRequest) -> String {
        join(directory, request.name + ".json")
    }

    public func commitImage(_ encoded: [UInt8], format: ImageFormat, for request: PurificationRequest) throws -> String {
        let path = imagePath(for: request, format: format)
        try AtomicFile.write(encoded, to: path, synchronizes: synchronizes)
        return path
    }

    public func commitReport(_ json: [UInt8], report: PurificationReport, for request: PurificationRequest) throws -> String {
        let path = reportPath(for: request)
        try AtomicFile.write(json, to: path, synchronizes: synchronizes)
        return path
    }

    private func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }
}

/// A file-system failure, with the system's words.
public struct FileError: Error, Hashable, Sendable, CustomStringConvertible {
    public let message: String

    init(_ operation: String, _ path: String, errno code: Int32 = errno) {
        message = "cannot \(operation) \(path): \(String(cString: strerror(code)))"
    }

    init(message: String) {
        self.message = message
    }

    public var description: String { message }
}

/// Writes files so that readers see the old content or the new, never a part.
enum AtomicFile {
    /// Writes `bytes` to a temporary dot-file beside `path`, optionally fsyncs it, renames it
    /// to `path` and optionally fsyncs the folder. Missing folders are created (mode 0755).
    static func write(_ bytes: [UInt8], to path: String, synchronizes: Bool) throws(FileError) {
        let slash = path.lastIndex(of: "/")
        let folder = slash.map { String(path[..<$0]) } ?? "."
        let fileName = slash.map { String(path[path.index(after: $0)...]) } ?? path
        try makeDirectories(folder)
        var suffix = UInt64.random(in: 0...UInt64.max)
        var temporary = ""
        var descriptor: Int32 = -1
        for _ in 0..<8 where descriptor < 0 {
            temporary = "\(folder)/.\(fileName).\(String(suffix, radix: 36)).tmp"
            descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o644)
            if descriptor < 0 && errno != EEXIST { throw FileError("create", temporary) }
            suffix &+= 1
        }
        guard descriptor >= 0 else { throw FileError(message: "cannot create a temporary file beside \(path)") }
        var failure: FileError?
        bytes.withUnsafeBytes { buffer in
            var written = 0
            while written < buffer.count {
                let count = systemWrite(descriptor, buffer.baseAddress! + written, buffer.count - written)
                if count < 0 {
                    if errno == EINTR { continue }
                    failure = FileError("write", temporary)
                    return
                }
                written += count
            }
        }
        if failure == nil && synchronizes && fsync(descriptor) != 0 { failure = FileError("fsync", temporary) }
        if close(descriptor) != 0 && failure == nil { failure = FileError("close", temporary) }
        if failure == nil && rename(temporary, path) != 0 { failure = FileError("rename", temporary) }
        if let failure {
            unlink(temporary)
            throw failure
        }
        if synchronizes { try synchronizeDirectory(folder) }
    }

    private static func makeDirectories(_ folder: String) throws(FileError) {
        var status = stat()
        if stat(folder, &status) == 0 {
            guard status.st_mode & S_IFMT == S_IFDIR else { throw FileError(message: "\(folder) is not a folder") }
            return
        }
        if let slash = folder.lastIndex(of: "/"), slash != folder.startIndex {
            try makeDirectories(String(folder[..<slash]))
        }
        if mkdir(folder, 0o755) != 0 && errno != EEXIST { throw FileError("create folder", folder) }
    }

    private static func synchronizeDirectory(_ folder: String) throws(FileError) {
        let descriptor = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileError("open", folder) }
        defer { close(descriptor) }
        if fsync(descriptor) != 0 { throw FileError("fsync", folder) }
    }
}
