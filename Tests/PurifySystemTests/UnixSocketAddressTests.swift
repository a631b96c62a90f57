import Glibc
import PurifySystem
import Testing

@Suite struct UnixSocketAddressTests {
    @Test func aPathAddressCountsItsTerminatingNUL() throws {
        let address = try UnixSocketAddress(path: "/run/purifyd.sock", for: "connect")
        address.withSocketAddress { pointer, length in
            #expect(Int(length) == MemoryLayout<sa_family_t>.size + "/run/purifyd.sock".utf8.count + 1)
            #expect(Int32(pointer.pointee.sa_family) == AF_UNIX)
        }
    }

    @Test func anAbstractAddressStartsWithNULAndHasNoTerminator() throws {
        let address = try UnixSocketAddress(path: "@notify", for: "sendto")
        address.withSocketAddress { pointer, length in
            #expect(Int(length) == MemoryLayout<sa_family_t>.size + 7)
            pointer.withMemoryRebound(to: sockaddr_un.self, capacity: 1) { address in
                let path = withUnsafeBytes(of: address.pointee.sun_path) { Array($0.prefix(7)) }
                #expect(path == [0] + Array("notify".utf8))
            }
        }
    }

    @Test(arguments: ["", "a\0b", String(repeating: "x", count: 108)])
    func unusablePathsAreRefused(_ path: String) {
        let error = #expect(throws: SystemError.self) { try UnixSocketAddress(path: path, for: "bind") }
        #expect(error?.call == "bind")
        #expect(error?.errno == (path.utf8.count > 107 ? .fileNameTooLong : .invalidArgument))
    }

    @Test func aListenerAndAClientMeetAtTheAddress() throws {
        let path = "/tmp/purify-system-\(UInt32.random(in: 0...UInt32.max)).sock"
        defer { unlink(path) }
        let address = try UnixSocketAddress(path: path, for: "bind")
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        try SystemCall.retrying("bind", path: path) { address.withSocketAddress { bind(listener, $0, $1) } }
        try SystemCall.retrying("listen", path: path) { listen(listener, 1) }
        let client = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        try SystemCall.retrying("connect", path: path) { address.withSocketAddress { connect(client, $0, $1) } }
    }
}
