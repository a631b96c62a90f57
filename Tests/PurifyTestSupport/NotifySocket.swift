import Glibc

/// A datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
public final class NotifySocket: Sendable {
    private let descriptor: Int32
    /// The value for `$NOTIFY_SOCKET`: the path, or `@name` in the abstract namespace.
    public let address: String

    /// Bound at `address`; each read waits at most `receiveTimeout` for a datagram.
    public init(address: String, receiveTimeout: Duration) throws {
        descriptor = try UnixSockets.bound(at: address, type: SOCK_DGRAM, receiveTimeout: receiveTimeout)
        self.address = address
    }

    /// Bound at a fresh name in the abstract namespace.
    public convenience init(abstractWithTimeout receiveTimeout: Duration) throws {
        try self.init(address: "@purifyd-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))", receiveTimeout: receiveTimeout)
    }

    deinit { close(descriptor) }

    /// The next datagram, or nil after the receive timeout.
    public func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        return count < 0 ? nil : String(decoding: buffer[0..<count], as: UTF8.self)
    }

    /// Every datagram until one receive timeout passes without one, read on a thread of its own.
    public func received() async throws -> [String] {
        try await offPool {
            var messages: [String] = []
            while let message = self.receive() { messages.append(message) }
            return messages
        }
    }
}
