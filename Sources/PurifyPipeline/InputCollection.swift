import PurifySystem
import Foundation

/// Finds the image files named on a command line, for ``Pipeline/process(_:onResult:)``.
public enum InputCollection {
    /// A named input that does not exist or cannot be listed.
    public struct MissingInput: Error, Hashable, Sendable, CustomStringConvertible {
        /// The path as given.
        public let path: String
        public let description: String
    }

    /// File extensions searched for in folders (compared without case).
    public static let imageExtensions: Set<String> = ["png", "jpg", "jpeg"]

    /// One request per file: a file named directly is taken whatever its name (the format
    /// comes from its bytes) and named by its file name; a folder is searched recursively for
    /// regular files with an ``imageExtensions`` extension, skipping dot-files and dot-folders
    /// (so `*.tmp`, `*.part` and rsync's `.name.XXXXXX`, files still being written, are never
    /// taken), each named by its path below the folder.
    /// Requests come sorted by name within each argument. Runs on a thread of its own.
    ///
    /// - Throws: ``MissingInput`` for a path that does not exist or cannot be listed.
    public static func requests(for paths: [String]) async throws -> [PurificationRequest] {
        try await SystemThread.run(name: "purify-list") {
            try paths.flatMap { path throws(MissingInput) in try requests(for: path) }
        }
    }

    private static func requests(for path: String) throws(MissingInput) -> [PurificationRequest] {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw MissingInput(path: path, description: "\(path): no such file or folder")
        }
        guard isFolder.boolValue else {
            let name = URL(fileURLWithPath: path).lastPathComponent
            return [PurificationRequest(inputPath: path, name: name)]
        }
        let root = URL(fileURLWithPath: path, isDirectory: true).standardizedFileURL
        guard let walker = FileManager.default.enumerator(
            at: root, includingPropertiesForKeys: [.isRegularFileKey], options: [.skipsHiddenFiles]) else {
            throw MissingInput(path: path, description: "\(path): cannot list the folder")
        }
        var found: [PurificationRequest] = []
        let prefix = root.path.hasSuffix("/") ? root.path : root.path + "/"
        for case let url as URL in walker {
            let fileName = url.lastPathComponent
            guard imageExtensions.contains(url.pathExtension.lowercased()),
                  (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true else { continue }
            let full = url.standardizedFileURL.path
            let name = full.hasPrefix(prefix) ? String(full.dropFirst(prefix.count)) : fileName
            found.append(PurificationRequest(inputPath: full, name: name))
        }
        return found.sorted { $0.name < $1.name }
    }
}
