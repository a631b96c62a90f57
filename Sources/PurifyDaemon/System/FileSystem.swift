#if canImport(Glibc)
internal import Glibc
#endif
internal import CPurifySystem
// With SwiftNIO in the module graph the compiler attributes Glibc's `struct stat` and `struct
// timespec` to Dispatch's C module, which member-import visibility then wants imported.
internal import CDispatch

/// Thin wrappers over the POSIX file calls the spool and the watcher use: EINTR is retried,
/// failures become ``DaemonError/Code/systemCall`` errors that name the call and the path.
enum FileSystem {
    /// Calls `body` until it does not fail with EINTR; -1 becomes a thrown error.
    @discardableResult
    static func retrying<Result: FixedWidthInteger>(
        _ call: String, path: String? = nil, _ body: () -> Result
    ) throws(DaemonError) -> Result {
        while true {
            let result = body()
            if result != -1 { return result }
            let error = Glibc.errno
            if error != EINTR { throw DaemonError.systemCall(call, path: path, errno: error) }
        }
    }

    /// What `lstat` says about an entry.
    struct EntryStatus {
        var kind: FileKind
        var size: Int
        /// The modification time in seconds since the epoch.
        var modified: Double
        /// How many names the file has (more than one for a hard link).
        var links: Int
    }

    /// `lstat`: the entry's kind, size and modification time, or nil when nothing is at `path`.
    static func entry(at path: String) throws(DaemonError) -> EntryStatus? {
        var status = stat()
        let result = lstat(path, &status)
        return try entryStatus(result == 0 ? status : nil, errno: Glibc.errno, path: path)
    }

    /// `lstat` of the entry named by the bytes `rawName` (not necessarily UTF-8) in `directory`.
    static func entry(rawName: [UInt8], in directory: String) throws(DaemonError) -> EntryStatus? {
        let path = Array(directory.utf8) + [UInt8(ascii: "/")] + rawName + [0]
        var status = stat()
        let result = path.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { lstat($0.baseAddress!, &status) }
        }
        return try entryStatus(result == 0 ? status : nil, errno: Glibc.errno, path: String(decoding: path.dropLast(), as: UTF8.self))
    }

    private static func entryStatus(_ status: stat?, errno error: Int32, path: String) throws(DaemonError) -> EntryStatus? {
        if let status {
            let modified = Double(status.st_mtim.tv_sec) + Double(status.st_mtim.tv_nsec) / 1e9
            return EntryStatus(kind: FileKind(mode: status.st_mode), size: Int(status.st_size), modified: modified,
                               links: Int(status.st_nlink))
        }
        if error == ENOENT || error == ENOTDIR { return nil }
        throw DaemonError.systemCall("lstat", path: path, errno: error)
    }

    static func exists(_ path: String) throws(DaemonError) -> Bool {
        try entry(at: path) != nil
    }

    /// `mkdir -p` with `mode` for the directories it creates.
    static func createDirectories(_ path: String, mode: mode_t = 0o750) throws(DaemonError) {
        if let existing = try entry(at: path) {
            guard existing.kind == .directory else {
                throw DaemonError.systemCall("mkdir", path: path, errno: ENOTDIR)
            }
            return
        }
        let parent = FilePaths.directory(of: path)
        if parent != path { try createDirectories(parent, mode: mode) }
        if mkdir(path, mode) != 0, Glibc.errno != EEXIST {
            throw DaemonError.systemCall("mkdir", path: path, errno: Glibc.errno)
        }
    }

    /// The names in a directory, without `.` and `..`, in no particular order. A name that is
    /// not valid UTF-8 comes out with U+FFFD in place of its invalid bytes: use
    /// ``rawContentsOfDirectory(_:)`` where such names must be acted on.
    static func contentsOfDirectory(_ path: String) throws(DaemonError) -> [String] {
        try rawContentsOfDirectory(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The names in a directory as the kernel stores them (bytes, not necessarily UTF-8),
    /// without `.` and `..`, in no particular order.
    static func rawContentsOfDirectory(_ path: String) throws(DaemonError) -> [[UInt8]] {
        guard let directory = opendir(path) else {
            throw DaemonError.systemCall("opendir", path: path, errno: Glibc.errno)
        }
        defer { closedir(directory) }
        var names: [[UInt8]] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: &entry.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
            if name != [0x2E], name != [0x2E, 0x2E] { names.append(name) }
        }
        return names
    }

    /// renameat2 with RENAME_NOREPLACE of the entry named by the bytes `rawName` in `directory`
    /// to `name` there; false when `name` exists already. For names that are not UTF-8, which a
    /// Swift `String` cannot carry.
    static func renameWithoutReplacing(rawName: [UInt8], in directory: String, to name: String) throws(DaemonError) -> Bool {
        let source = Array(directory.utf8) + [UInt8(ascii: "/")] + rawName + [0]
        let destination = FilePaths.join(directory, name)
        while true {
            let result = source.withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { CPurify_renameNoReplace(AT_FDCWD, $0.baseAddress, AT_FDCWD, destination) }
            }
            if result == 0 { return true }
            switch Glibc.errno {
            case EINTR: continue
            case EEXIST: return false
            case let error:
                throw DaemonError.systemCall("renameat2", path: "\(String(decoding: source.dropLast(), as: UTF8.self)) -> \(destination)", errno: error)
            }
        }
    }

    /// rename(2) that never replaces: returns false when `destination` already exists.
    static func renameWithoutReplacing(_ source: String, to destination: String) throws(DaemonError) -> Bool {
        while true {
            if CPurify_renameNoReplace(AT_FDCWD, source, AT_FDCWD, destination) == 0 { return true }
            switch Glibc.errno {
            case EINTR: continue
            case EEXIST: return false
            case let error: throw DaemonError.systemCall("renameat2", path: "\(source) -> \(destination)", errno: error)
            }
        }
    }

    /// rename(2), replacing `destination` if it exists.
    static func rename(_ source: String, to destination: String) throws(DaemonError) {
        try retrying("rename", path: "\(source) -> \(destination)") { Glibc.rename(source, destination) }
    }

    /// unlink(2); a missing file is not an error. Returns whether a file was removed.
    @discardableResult
    static func removeIfPresent(_ path: String) throws(DaemonError) -> Bool {
        if unlink(path) == 0 { return true }
        if Glibc.errno == ENOENT { return false }
        throw DaemonError.systemCall("unlink", path: path, errno: Glibc.errno)
    }

    /// Reads a whole regular file without following a final symlink or blocking on a FIFO;
    /// anything else, or a file over `maxBytes`, is refused with ``DaemonError/Code/inputRejected``.
    static func readRegularFile(_ path: String, maxBytes: Int) throws(DaemonError) -> [UInt8] {
        let fd: Int32
        do {
            fd = try retrying("open", path: path) { open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
        } catch {
            if error.errno == ELOOP { throw DaemonError(code: .inputRejected, message: "\(path) is a symbolic link") }
            throw error
        }
        defer { close(fd) }
        var status = stat()
        try retrying("fstat", path: path) { fstat(fd, &status) }
        guard FileKind(mode: status.st_mode) == .regular else {
            throw DaemonError(code: .inputRejected, message: "\(path) is not a regular file")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(Int(status.st_size), maxBytes))
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = try retrying("read", path: path) { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
            if count == 0 { return bytes }
            bytes += chunk[0..<count]
            if bytes.count > maxBytes {
                throw DaemonError(code: .inputRejected, message: "\(path) is larger than \(maxBytes) bytes")
            }
        }
    }

    /// Creates `path` (which must not exist), writes `bytes`, fsyncs and closes it.
    static func writeNewFile(_ path: String, bytes: some Collection<UInt8>, mode: mode_t = 0o640) throws(DaemonError) {
        let fd = try retrying("open", path: path) {
            open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        }
        var closed = false
        defer { if !closed { close(fd) } }
        let contiguous = Array(bytes)
        var offset = 0
        while offset < contiguous.count {
            let written = try retrying("write", path: path) {
                contiguous.withUnsafeBytes { buffer in write(fd, buffer.baseAddress! + offset, buffer.count - offset) }
            }
            offset += written
        }
        try retrying("fsync", path: path) { fsync(fd) }
        closed = true
        // Linux frees the descriptor even when close fails with EINTR: a retry could close a
        // descriptor another thread has just been given, so EINTR is not retried (nor an error).
        if close(fd) == -1, Glibc.errno != EINTR { throw DaemonError.systemCall("close", path: path, errno: Glibc.errno) }
    }

    /// The wall-clock time in seconds since the epoch (the clock file modification times use).
    static func wallClockNow() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    /// fsyncs a directory so that renames and unlinks in it survive a crash.
    static func synchronizeDirectory(_ path: String) throws(DaemonError) {
        let fd = try retrying("open", path: path) { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { close(fd) }
        try retrying("fsync", path: path) { fsync(fd) }
    }

    /// Writes `bytes` to `path` through `temporaryPath` (created, fsynced, renamed over `path`)
    /// and fsyncs the directory: readers see the old file or the whole new one.
    static func replaceFileAtomically(_ path: String, bytes: some Collection<UInt8>, temporaryPath: String) throws(DaemonError) {
        try removeIfPresent(temporaryPath)
        try writeNewFile(temporaryPath, bytes: bytes)
        try rename(temporaryPath, to: path)
        try synchronizeDirectory(FilePaths.directory(of: path))
    }
}

extension FileKind {
    init(mode: mode_t) {
        switch mode & S_IFMT {
        case S_IFREG: self = .regular
        case S_IFDIR: self = .directory
        case S_IFLNK: self = .symbolicLink
        case S_IFIFO: self = .fifo
        case S_IFSOCK: self = .socket
        case S_IFCHR: self = .characterDevice
        case S_IFBLK: self = .blockDevice
        default: self = .unknown
        }
    }
}

extension FileSystem {
    /// Raises the soft limit on open descriptors to the hard limit: the control socket serves
    /// thousands of connections and each inbox holds descriptors of its own, while a shell's
    /// soft limit is often 1,024 (systemd's unit sets both limits itself).
    static func raiseOpenFileLimit() throws(DaemonError) {
        var limit = rlimit()
        try retrying("getrlimit") { getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) }
        guard limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        try retrying("setrlimit") { setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) }
    }
}
