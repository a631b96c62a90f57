#if canImport(Glibc)
internal import Glibc
#endif
internal import CPurifySystem

extension FileSystem {
    /// renameat2 with RENAME_NOREPLACE of the entry named by the bytes `rawName` in `directory`
    /// to `name` there; false when `name` exists already. For names that are not UTF-8, which a
    /// Swift `String` cannot carry.
    public static func renameWithoutReplacing(rawName: [UInt8], in directory: String, to name: String) throws(SystemError) -> Bool {
        let source = Array(directory.utf8) + [UInt8(ascii: "/")] + rawName + [0]
        let destination = FilePaths.join(directory, name)
        while true {
            let result = source.withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { CPurify_renameNoReplace(AT_FDCWD, $0.baseAddress, AT_FDCWD, destination) }
            }
            if result == 0 { return true }
            switch Errno.current {
            case .interrupted: continue
            case .fileExists: return false
            case let error:
                throw SystemError("renameat2", path: "\(String(decoding: source.dropLast(), as: UTF8.self)) -> \(destination)", errno: error)
            }
        }
    }

    /// rename(2) that never replaces: returns false when `destination` already exists.
    public static func renameWithoutReplacing(_ source: String, to destination: String) throws(SystemError) -> Bool {
        while true {
            if CPurify_renameNoReplace(AT_FDCWD, source, AT_FDCWD, destination) == 0 { return true }
            switch Errno.current {
            case .interrupted: continue
            case .fileExists: return false
            case let error: throw SystemError("renameat2", path: "\(source) -> \(destination)", errno: error)
            }
        }
    }
}
