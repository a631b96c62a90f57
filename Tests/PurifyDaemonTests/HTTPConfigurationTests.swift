import Foundation
import PurifyDaemon
import PurifyHTTP
import Testing

@Suite("Configuration: the [http] table")
struct HTTPConfigurationTests {
    /// One inbox, the least a configuration has.
    static let inbox = ConfigurationTests.minimal

    @Test("No [http] table, no API; an empty one listens on loopback with the documented defaults")
    func defaults() throws {
        #expect(try DaemonConfiguration(toml: Self.inbox, baseDirectory: "/x").http == nil)
        let http = try #require(try DaemonConfiguration(toml: "[http]\n" + Self.inbox, baseDirectory: "/x").http)
        #expect(http == APIConfiguration(listener: .address(host: "127.0.0.1", port: 8080), maxBodyBytes: 32 << 20,
                                         requestTimeout: .seconds(30), maxInFlight: 256, retryAfterSeconds: 1, tokens: []))
        // The shipped example's commented [http] table states these defaults.
        let example = try String(contentsOfFile: ConfigurationTests.packageRoot + "/etc/purifyd/purifyd.toml", encoding: .utf8)
        let uncommented = example.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            for key in ["[http]", "listen =", "max_body_bytes =", "request_timeout_s =", "max_in_flight =", "retry_after_s ="]
            where line.hasPrefix("# " + key) { return String(line.dropFirst(2)) }
            return String(line)
        }.joined(separator: "\n")
        #expect(try DaemonConfiguration(toml: uncommented, baseDirectory: "/x").http == http)
    }

    @Test("listen takes host:port, [v6]:port or systemd; tokens come from a file only its owner and group read")
    func listenAndTokens() throws {
        func listener(_ text: String) throws -> APIConfiguration.Listener? {
            try DaemonConfiguration(toml: "[http]\nlisten = \"\(text)\"\n" + Self.inbox, baseDirectory: "/x").http?.listener
        }
        #expect(try listener("0.0.0.0:80") == .address(host: "0.0.0.0", port: 80))
        #expect(try listener("[::1]:0") == .address(host: "::1", port: 0))
        #expect(try listener("localhost:8080") == .address(host: "localhost", port: 8080))
        #expect(try listener("systemd") == .systemd)
        for bad in ["8080", "host:", "host:65536", ":80", "[::1:80"] {
            #expect(throws: ConfigurationError.self, "\(bad)") { try listener(bad) }
        }

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("purifyd-tokens-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let toml = "[http]\ntoken_file = \"tokens\"\n" + Self.inbox
        try Data("# clients\n\nfirst-token-0123456789\n  second-token-0123456789  \n".utf8).write(to: URL(fileURLWithPath: folder + "/tokens"))
        try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: folder + "/tokens")
        #expect(try DaemonConfiguration(toml: toml, baseDirectory: folder).http?.tokens == ["first-token-0123456789", "second-token-0123456789"])

        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: folder + "/tokens")
        #expect { try DaemonConfiguration(toml: toml, baseDirectory: folder) } throws: { error in
            (error as? ConfigurationError)?.keyPath == "http.token_file" && "\(error)".contains("accessible to others")
        }
        try Data("short\n".utf8).write(to: URL(fileURLWithPath: folder + "/tokens"))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: folder + "/tokens")
        #expect { try DaemonConfiguration(toml: toml, baseDirectory: folder) } throws: { error in
            "\(error)".contains("line 1")
        }
        #expect { try DaemonConfiguration(toml: "[http]\ntoken_file = \"missing\"\n" + Self.inbox, baseDirectory: folder) } throws: { error in
            (error as? ConfigurationError)?.keyPath == "http.token_file"
        }
        #expect { try DaemonConfiguration(toml: "[http]\nmax_in_flight = 0\n" + Self.inbox, baseDirectory: folder) } throws: { error in
            (error as? ConfigurationError)?.keyPath == "http.max_in_flight"
        }
        #expect { try DaemonConfiguration(toml: "[http]\nport = 1\n" + Self.inbox, baseDirectory: folder) } throws: { error in
            (error as? ConfigurationError)?.keyPath == "http.port"
        }
    }
}
