#if canImport(Glibc)
public import Glibc
#endif

/// Why ``FileSystem/readRegularFile(atPath:maxBytes:followsSymlinks:)`` gave no bytes: the file
/// was refused for what it is, or a system call failed.
public enum RegularFileReadError: Error, Sendable, CustomStringConvertible {
    /// A final symbolic link, with `followsSymlinks` false.
    case symbolicLink(path: String)
    /// A directory, FIFO, socket or device.
    case notRegularFile(path: String)
    /// Larger than the limit, from its size before reading or from what it grew to while read.
    case tooLarge(path: String, bytes: Int, limit: Int)
    case failed(SystemError)

    public var description: String {
        switch self {
        case .symbolicLink(let path): "\(path) is a symbolic link"
        case .notRegularFile(let path): "\(path) is not a regular file"
        case .tooLarge(let path, let bytes, let limit): "\(path): \(bytes) bytes exceed the limit of \(limit) bytes"
        case .failed(let error): error.description
        }
    }
}

extension FileSystem {
    /// The whole of a regular file, for input the daemon or a user hands over: opening never
    /// blocks on a FIFO, a final symbolic link is refused unless `followsSymlinks`, and a file over
    /// `maxBytes` is refused from its size before anything is read, or as soon as it has grown
    /// past the limit while being read. A file that shrinks while read gives what was there.
    public static func readRegularFile(
        atPath path: String, maxBytes: Int, followsSymlinks: Bool = false
    ) throws(RegularFileReadError) -> [UInt8] {
        // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        let flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | (followsSymlinks ? 0 : O_NOFOLLOW)
        let fd: Int32
        do throws(SystemError) {
            fd = try SystemCall.retrying("open", path: path) { open(path, flags) }
        } catch {
            if error.errno == .tooManySymbolicLinkLevels && !followsSymlinks { throw .symbolicLink(path: path) }
            throw .failed(error)
        }
        defer { close(fd) }
        var status = stat()
        do throws(SystemError) {
            try SystemCall.retrying("fstat", path: path) { fstat(fd, &status) }
        } catch {
            throw .failed(error)
        }
        guard FileKind(mode: status.st_mode) == .regular else { throw .notRegularFile(path: path) }
        let size = Int(status.st_size)
        guard size <= maxBytes else { throw .tooLarge(path: path, bytes: size, limit: maxBytes) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(size)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count: Int
            do throws(SystemError) {
                count = try SystemCall.retrying("read", path: path) {
                    chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
                }
            } catch {
                throw .failed(error)
            }
            if count == 0 { break }
            guard bytes.count + count <= maxBytes else {
                throw .tooLarge(path: path, bytes: bytes.count + count, limit: maxBytes)
            }
            bytes += chunk[..<count]
        }
        return bytes
    }
}
