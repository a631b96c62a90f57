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
        // Read straight into an array one byte longer than the file: a short read is the end (or
        // a file that shrank), a full one means it grew, and the rest is read in chunks.
        var failure: SystemError?
        var bytes = [UInt8](unsafeUninitializedCapacity: size + 1) { buffer, count in
            do throws(SystemError) {
                count = try readAll(fd, path: path, into: UnsafeMutableRawBufferPointer(buffer))
            } catch {
                failure = error
            }
        }
        if let failure { throw .failed(failure) }
        if bytes.count > size {
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            while bytes.count <= maxBytes {
                let count: Int
                do throws(SystemError) {
                    // withUnsafeMutableBytes rethrows untyped: the typed error travels in a Result.
                    count = try chunk.withUnsafeMutableBytes { buffer in
                        Result { () throws(SystemError) in try readAll(fd, path: path, into: buffer) }
                    }.get()
                } catch {
                    throw .failed(error)
                }
                bytes += chunk[..<count]
                if count < chunk.count { break }
            }
            guard bytes.count <= maxBytes else { throw .tooLarge(path: path, bytes: bytes.count, limit: maxBytes) }
        }
        return bytes
    }

    /// Reads until `buffer` is full or the file ends; returns how many bytes it read.
    private static func readAll(_ fd: Int32, path: String, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        var count = 0
        while count < buffer.count {
            let read = try SystemCall.retrying("read", path: path) { Glibc.read(fd, buffer.baseAddress! + count, buffer.count - count) }
            if read == 0 { break }
            count += read
        }
        return count
    }
}
