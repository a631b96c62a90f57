public import PurifyImage
import PurifySystem

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
        if keeps { return FilePaths.join(directory, name) }
        let stem = dot.map { String(name.dropLast(fileName.distance(from: $0, to: fileName.endIndex))) } ?? name
        return FilePaths.join(directory, stem + "." + format.fileExtension)
    }

    /// Where the report of `request` goes.
    public func reportPath(for request: PurificationRequest) -> String {
        FilePaths.join(directory, request.name + ".json")
    }

    public func commitImage(_ encoded: [UInt8], format: ImageFormat, for request: PurificationRequest) throws -> String {
        let path = imagePath(for: request, format: format)
        try write(encoded, to: path)
        return path
    }

    public func commitReport(_ json: [UInt8], report: PurificationReport, for request: PurificationRequest) throws -> String {
        let path = reportPath(for: request)
        try write(json, to: path)
        return path
    }

    private func write(_ bytes: [UInt8], to path: String) throws(SystemError) {
        try FileSystem.createDirectories(FilePaths.directory(of: path), mode: 0o755)
        try FileSystem.replaceFileAtomically(path, bytes: bytes, mode: 0o644, synchronizes: synchronizes)
    }
}
