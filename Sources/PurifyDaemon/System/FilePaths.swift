/// Lexical path helpers (no file system access) for the POSIX paths the daemon works with.
enum FilePaths {
    /// `path` if absolute, otherwise `base/path`; trailing slashes removed.
    static func absolute(_ path: String, relativeTo base: String) -> String {
        let joined = path.hasPrefix("/") ? path : join(base, path)
        return trimmingTrailingSlashes(joined)
    }

    /// The components joined with single slashes.
    static func join(_ first: String, _ rest: String...) -> String {
        var result = trimmingTrailingSlashes(first)
        for component in rest {
            let trimmed = component.drop(while: { $0 == "/" })
            result = result.hasSuffix("/") ? result + trimmed : result + "/" + trimmed
        }
        return result
    }

    /// The directory part of `path` (`/` for a top-level entry, `.` for a bare name).
    static func directory(of path: String) -> String {
        let trimmed = trimmingTrailingSlashes(path)
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }

    /// The last component of `path`.
    static func lastComponent(of path: String) -> String {
        let trimmed = trimmingTrailingSlashes(path)
        guard let slash = trimmed.lastIndex(of: "/") else { return trimmed }
        return String(trimmed[trimmed.index(after: slash)...])
    }

    /// `name` split into stem and extension at the last dot that is not the first character
    /// (`"a.tar.gz"` → `("a.tar", "gz")`, `"README"` → `("README", nil)`).
    static func splitExtension(_ name: String) -> (stem: String, extension: String?) {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return (name, nil) }
        return (String(name[..<dot]), String(name[name.index(after: dot)...]))
    }

    private static func trimmingTrailingSlashes(_ path: String) -> String {
        var result = Substring(path)
        while result.count > 1, result.hasSuffix("/") { result = result.dropLast() }
        return String(result)
    }
}
