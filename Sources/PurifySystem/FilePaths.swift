/// Lexical path helpers (no file system access) for POSIX paths.
public enum FilePaths {
    /// `path` if absolute, otherwise `base/path`; trailing slashes removed.
    public static func absolute(_ path: String, relativeTo base: String) -> String {
        let joined = path.hasPrefix("/") ? path : join(base, path)
        return trimmingTrailingSlashes(joined)
    }

    /// The components joined with single slashes.
    public static func join(_ first: String, _ rest: String...) -> String {
        var result = trimmingTrailingSlashes(first)
        for component in rest {
            let trimmed = component.drop(while: { $0 == "/" })
            result = result.hasSuffix("/") ? result + trimmed : result + "/" + trimmed
        }
        return result
    }

    /// The directory part of `path` (`/` for a top-level entry, `.` for a bare name).
    public static func directory(of path: String) -> String {
        let trimmed = trimmingTrailingSlashes(path)
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }

    /// The last component of `path`.
    public static func lastComponent(of path: String) -> String {
        let trimmed = trimmingTrailingSlashes(path)
        guard let slash = trimmed.lastIndex(of: "/") else { return trimmed }
        return String(trimmed[trimmed.index(after: slash)...])
    }

    /// `name` split into stem and extension at the last dot that is not the first character
    /// (`"a.tar.gz"` → `("a.tar", "gz")`, `"README"` → `("README", nil)`).
    public static func splitExtension(_ name: String) -> (stem: String, extension: String?) {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return (name, nil) }
        return (String(name[..<dot]), String(name[name.index(after: dot)...]))
    }

    /// `name` cut to at most `limit` bytes of UTF-8 by shortening its stem at a character
    /// boundary, keeping the extension (`name` itself when it fits).
    public static func truncated(_ name: String, toBytes limit: Int) -> String {
        guard name.utf8.count > limit else { return name }
        let (stem, fileExtension) = splitExtension(name)
        let suffix = fileExtension.map { ".\($0)" } ?? ""
        var kept = ""
        for character in stem {
            if kept.utf8.count + character.utf8.count + suffix.utf8.count > limit { break }
            kept.append(character)
        }
        return kept + suffix
    }

    /// A name that is not valid UTF-8 made readable: each byte outside a valid UTF-8 sequence
    /// becomes `%XX` (its hex value); nil when `bytes` is valid UTF-8 already.
    public static func escapingInvalidUTF8(_ bytes: [UInt8]) -> String? {
        guard String(validating: bytes, as: UTF8.self) == nil else { return nil }
        var escaped = ""
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var position = 0
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded):
                escaped.unicodeScalars.append(Unicode.UTF8.decode(encoded))
                position += encoded.count
            case .error(let length):
                for byte in bytes[position..<(position + length)] {
                    escaped += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
                }
                position += length
            case .emptyInput:
                return escaped
            }
        }
    }

    private static func trimmingTrailingSlashes(_ path: String) -> String {
        var result = Substring(path)
        while result.count > 1, result.hasSuffix("/") { result = result.dropLast() }
        return String(result)
    }
}

private extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
