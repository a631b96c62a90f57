#if canImport(Glibc)
public import Glibc
#endif

/// What a directory entry is, from `lstat`'s mode bits.
public enum FileKind: Sendable, Equatable {
    case regular, directory, symbolicLink, fifo, socket, characterDevice, blockDevice, unknown
}

/// Thin wrappers over the POSIX file calls the daemon, the pipeline and the control socket use:
/// EINTR is retried, failures become ``SystemError``s that name the call and the path.
public enum FileSystem {
    /// What `lstat` says about an entry.
    public struct EntryStatus: Sendable {
        public var kind: FileKind
        public var size: Int
        /// The modification time in seconds since the epoch.
        public var modified: Double
        /// How many names the file has (more than one for a hard link).
        public var links: Int
    }

    /// `lstat`: the entry's kind, size and modification time, or nil when nothing is at `path`.
    public static func entry(at path: String) throws(SystemError) -> EntryStatus? {
        var status = stat()
        let result = lstat(path, &status)
        return try entryStatus(result == 0 ? status : nil, errno: .current, path: path)
    }

    /// `lstat` of the entry named by the bytes `rawName` (not necessarily UTF-8) in `directory`.
    public static func entry(rawName: [UInt8], in directory: String) throws(SystemError) -> EntryStatus? {
        let path = Array(directory.utf8) + [UInt8(ascii: "/")] + rawName + [0]
        var status = stat()
        let result = path.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { lstat($0.baseAddress!, &status) }
        }
        return try entryStatus(result == 0 ? status : nil, errno: .current, path: String(decoding: path.dropLast(), as: UTF8.self))
    }

    private static func entryStatus(_ status: stat?, errno error: Errno, path: String) throws(SystemError) -> EntryStatus? {
        if let status {
            let modified = Double(status.st_mtim.tv_sec) + Double(status.st_mtim.tv_nsec) / 1e9
            return EntryStatus(kind: FileKind(mode: status.st_mode), size: Int(status.st_size), modified: modified,
                               links: Int(status.st_nlink))
        }
        if error == .noSuchFileOrDirectory || error == .notDirectory { return nil }
        throw SystemError("lstat", path: path, errno: error)
    }

    public static func exists(_ path: String) throws(SystemError) -> Bool {
        try entry(at: path) != nil
    }

    /// `mkdir -p` with `mode` for the directories it creates; like `mkdir -p`, a symbolic link
    /// to a directory counts as the directory.
    public static func createDirectories(_ path: String, mode: mode_t = 0o750) throws(SystemError) {
        var status = stat()
        if stat(path, &status) == 0 {
            guard FileKind(mode: status.st_mode) == .directory else {
                throw SystemError("mkdir", path: path, errno: .notDirectory)
            }
            return
        }
        let parent = FilePaths.directory(of: path)
        if parent != path { try createDirectories(parent, mode: mode) }
        if mkdir(path, mode) != 0, Errno.current != .fileExists {
            throw SystemError("mkdir", path: path, errno: .current)
        }
    }

    /// The names in a directory, without `.` and `..`, in no particular order. A name that is
    /// not valid UTF-8 comes out with U+FFFD in place of its invalid bytes: use
    /// ``rawContentsOfDirectory(_:)`` where such names must be acted on.
    public static func contentsOfDirectory(_ path: String) throws(SystemError) -> [String] {
        try rawContentsOfDirectory(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The names in a directory as the kernel stores them (bytes, not necessarily UTF-8),
    /// without `.` and `..`, in no particular order.
    public static func rawContentsOfDirectory(_ path: String) throws(SystemError) -> [[UInt8]] {
        guard let directory = opendir(path) else {
            throw SystemError("opendir", path: path, errno: .current)
        }
        defer { closedir(directory) }
        var names: [[UInt8]] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: &entry.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
            if name != [0x2E], name != [0x2E, 0x2E] { names.append(name) }
        }
        return names
    }

    /// rename(2), replacing `destination` if it exists.
    public static func rename(_ source: String, to destination: String) throws(SystemError) {
        try SystemCall.retrying("rename", path: "\(source) -> \(destination)") { Glibc.rename(source, destination) }
    }

    /// unlink(2); a missing file is not an error. Returns whether a file was removed.
    @discardableResult
    public static func removeIfPresent(_ path: String) throws(SystemError) -> Bool {
        if unlink(path) == 0 { return true }
        if Errno.current == .noSuchFileOrDirectory { return false }
        throw SystemError("unlink", path: path, errno: .current)
    }

    /// Creates `path` (which must not exist), writes `bytes`, fsyncs it (unless `synchronizes`
    /// is false) and closes it. A failure after the file was created removes it: no half-written
    /// file is left behind.
    public static func writeNewFile(
        _ path: String, bytes: some Collection<UInt8>, mode: mode_t = 0o640, synchronizes: Bool = true
    ) throws(SystemError) {
        let fd = try SystemCall.retrying("open", path: path) {
            open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        }
        do throws(SystemError) {
            try write(bytes, to: fd, path: path, synchronizes: synchronizes)
        } catch {
            _ = try? removeIfPresent(path)
            throw error
        }
    }

    /// ``writeNewFile(_:bytes:mode:synchronizes:)`` for a temporary file of a fixed name: a file
    /// already at `path` (left by a crash) is removed and the write made again. Creating first
    /// spares the common case a failing unlink.
    public static func writeNewFileReplacingLeftover(
        _ path: String, bytes: some Collection<UInt8>, mode: mode_t = 0o640, synchronizes: Bool = true
    ) throws(SystemError) {
        do throws(SystemError) {
            try writeNewFile(path, bytes: bytes, mode: mode, synchronizes: synchronizes)
        } catch where error.errno == .fileExists {
            try removeIfPresent(path)
            try writeNewFile(path, bytes: bytes, mode: mode, synchronizes: synchronizes)
        }
    }

    /// Writes all of `bytes` to the new file `fd`, fsyncs it when `synchronizes`, and closes it.
    private static func write(_ bytes: some Collection<UInt8>, to fd: Int32, path: String, synchronizes: Bool) throws(SystemError) {
        var closed = false
        defer { if !closed { close(fd) } }
        let contiguous = Array(bytes)
        var offset = 0
        while offset < contiguous.count {
            let written = try SystemCall.retrying("write", path: path) {
                contiguous.withUnsafeBytes { buffer in Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset) }
            }
            offset += written
        }
        if synchronizes { try SystemCall.retrying("fsync", path: path) { fsync(fd) } }
        closed = true
        // Linux frees the descriptor even when close fails with EINTR: a retry could close a
        // descriptor another thread has just been given, so EINTR is not retried (nor an error).
        if close(fd) == -1, Errno.current != .interrupted { throw SystemError("close", path: path, errno: .current) }
    }

    /// The wall-clock time in seconds since the epoch (the clock file modification times use).
    public static func wallClockNow() -> Double {
        Double(wallClockNanoseconds()) / 1e9
    }

    /// The wall-clock time in nanoseconds since the epoch.
    public static func wallClockNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// fsyncs a directory so that renames and unlinks in it survive a crash.
    public static func synchronizeDirectory(_ path: String) throws(SystemError) {
        let fd = try SystemCall.retrying("open", path: path) { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { close(fd) }
        try SystemCall.retrying("fsync", path: path) { fsync(fd) }
    }

    /// Writes `bytes` to `path` so that readers see the old file or the whole new one: into a
    /// temporary file in the same directory (`temporaryPath`, or a fresh `.<name>.<random>.tmp`),
    /// renamed over `path`. With `synchronizes` the file is fsynced before the rename and the
    /// directory after, so the new content also survives a crash. No temporary file outlives a
    /// failure.
    public static func replaceFileAtomically(
        _ path: String, bytes: some Collection<UInt8>, temporaryPath: String? = nil, mode: mode_t = 0o640,
        synchronizes: Bool = true
    ) throws(SystemError) {
        let directory = FilePaths.directory(of: path)
        let temporary: String
        if let temporaryPath {
            try writeNewFileReplacingLeftover(temporaryPath, bytes: bytes, mode: mode, synchronizes: synchronizes)
            temporary = temporaryPath
        } else {
            temporary = try writeUniqueTemporary(beside: path, in: directory, bytes: bytes, mode: mode, synchronizes: synchronizes)
        }
        do throws(SystemError) {
            try rename(temporary, to: path)
        } catch {
            _ = try? removeIfPresent(temporary)
            throw error
        }
        if synchronizes { try synchronizeDirectory(directory) }
    }

    private static func writeUniqueTemporary(
        beside path: String, in directory: String, bytes: some Collection<UInt8>, mode: mode_t, synchronizes: Bool
    ) throws(SystemError) -> String {
        let name = FilePaths.lastComponent(of: path)
        var suffix = UInt64.random(in: 0...UInt64.max)
        while true {
            let temporary = FilePaths.join(directory, ".\(name).\(String(suffix, radix: 36)).tmp")
            do throws(SystemError) {
                try writeNewFile(temporary, bytes: bytes, mode: mode, synchronizes: synchronizes)
                return temporary
            } catch where error.errno == .fileExists {
                suffix &+= 1
            }
        }
    }
}

extension FileKind {
    /// The kind `mode`'s type bits (`st_mode & S_IFMT`) name.
    public init(mode: mode_t) {
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
    public static func raiseOpenFileLimit() throws(SystemError) {
        var limit = rlimit()
        try SystemCall.retrying("getrlimit") { getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) }
        guard limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        try SystemCall.retrying("setrlimit") { setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) }
    }
}
