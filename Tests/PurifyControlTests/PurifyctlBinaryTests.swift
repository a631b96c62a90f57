import Foundation
import Glibc
import PurifyControl
import PurifyTestSupport
import Testing

/// Runs of the built `purifyctl`.
enum PurifyctlRun {
    /// Runs the `purifyctl` built next to this test bundle (SwiftPM puts executables and the
    /// test bundle in one products directory) with `arguments` and `environment` (which replaces
    /// the inherited one), off the cooperative pool; as uid and gid 65534 through setpriv(1)
    /// when `asNobody`.
    static func run(_ arguments: [String], environment: [String: String] = [:], asNobody: Bool = false) async throws -> ProgramRun {
        let executable = try #require(purifyctlPath, "no purifyctl binary beside the test bundle")
        if asNobody {
            return try await ProgramRun.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", executable] + arguments,
                                            environment: environment)
        }
        return try await ProgramRun.run(executable, arguments, environment: environment)
    }

    /// `purifyctl` in the directory of the running test executable, when it is there.
    static let purifyctlPath: String? = {
        guard let testExecutable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
        let path = URL(fileURLWithPath: testExecutable).deletingLastPathComponent().appendingPathComponent("purifyctl").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }()
}

@Suite("The purifyctl binary against a live control socket")
struct PurifyctlBinaryTests {
    @Test("version prints the daemon's version and exits 0")
    func version() async throws {
        try await ServedDaemon.serving { daemon in
            // --socket wins over $PURIFYD_SOCKET.
            let run = try await PurifyctlRun.run(
                ["version", "--socket", daemon.socketPath],
                environment: [ConnectionOptionsForTests.socketVariable: daemon.root.path + "/absent.sock"]
            )
            #expect(run.status == 0, "\(run.standardError)")
            #expect(run.standardOutput == "version  1.2.3-test\n")
            #expect(run.standardError.isEmpty)
        }
    }

    @Test("status --json prints the daemon's reply as one JSON line")
    func statusJSON() async throws {
        try await ServedDaemon.serving { daemon in
            let run = try await PurifyctlRun.run(["status", "--json", "--socket", daemon.socketPath])
            #expect(run.status == 0, "\(run.standardError)")
            #expect(run.standardOutput.hasPrefix(#"{"id":1,"ok":true,"#))
            #expect(run.standardOutput.filter { $0 == "\n" }.count == 1)
            let reply = try JSONDecoder().decode(JSONValue.self, from: Data(run.standardOutput.utf8))
            guard case .object(let members) = reply, case .array(let inboxes)? = members["inboxes"] else {
                Issue.record("not a status reply: \(run.standardOutput)")
                return
            }
            #expect(members["state"] == "running")
            #expect(members["version"] == "1.2.3-test")
            #expect(inboxes.count == 1)
        }
    }

    @Test("status for people: aligned key/value lines, then a table of inboxes")
    func statusForPeople() async throws {
        try await ServedDaemon.serving { daemon in
            let run = try await PurifyctlRun.run(["status"], environment: [ConnectionOptionsForTests.socketVariable: daemon.socketPath])
            #expect(run.status == 0, "\(run.standardError)")
            let lines = run.standardOutput.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            // The uptime is whole seconds since the handler was made: 0 or a little more.
            #expect(lines.count > 2 && lines[2].wholeMatch(of: /uptime {24}\d+s/) != nil, "\(lines)")
            // Keys padded to the longest, bundles[0].classifier_sha256, and two spaces.
            let line = { (key: String, value: String) in key.padding(toLength: 30, withPad: " ", startingAt: 0) + value }
            #expect(Array(lines.prefix(13)) == [
                line("state", "running"),
                line("version", "1.2.3-test"),
                lines.count > 2 ? lines[2] : "",
                line("bundles[0].classifier", "no"),
                line("bundles[0].classifier_sha256", "-"),
                line("bundles[0].directory", "/models/mnist"),
                line("bundles[0].inbox", "mnist"),
                line("bundles[0].name", "mnist"),
                line("bundles[0].purifier_sha256", String(repeating: "a", count: 64)),
                line("bundles[0].version", "1.0.0"),
                line("last_error", "-"),
                line("reloads.failed", "0"),
                line("reloads.succeeded", "0"),
            ])
            let header = try #require(lines.firstIndex { $0.hasPrefix("INBOX") })
            #expect(header == 14)
            #expect(lines[header] == "INBOX  STATE    WAITING  IN FLIGHT  DONE  FAILED  REJECTED  RECOVERED  LAST ERROR")
            #expect(lines[header + 1] == "mnist  running        0        0/8     0       0         0          0  -")
        }
    }

    @Test("exit statuses", arguments: [
        (["pause", "nope"], Int32(65), "no inbox named \"nope\""),
        (["version", "--timeout", "0"], 64, "--timeout"),
        (["frobnicate"], 64, "frobnicate"),
    ])
    func exitStatuses(arguments: [String], status: Int32, excerpt: String) async throws {
        try await ServedDaemon.serving { daemon in
            let run = try await PurifyctlRun.run(arguments + ["--socket", daemon.socketPath])
            #expect(run.status == status)
            #expect(run.standardOutput.isEmpty)
            #expect(run.standardError.contains(excerpt), "\(run.standardError)")
        }
    }

    @Test("metrics prints the Prometheus text as the daemon sent it")
    func metrics() async throws {
        try await ServedDaemon.serving { daemon in
            let run = try await PurifyctlRun.run(["metrics", "--socket", daemon.socketPath])
            #expect(run.status == 0, "\(run.standardError)")
            #expect(run.standardOutput.hasPrefix("# HELP purifyd_files_claimed_total "))
            #expect(run.standardOutput.hasSuffix("purifyd_images_purified_total 7\n"))
        }
    }

    @Test("no daemon: exit 69 with a message on stderr, nothing on stdout")
    func unreachable() async throws {
        let directory = try TemporaryDirectory()
        for arguments in [["version", "--socket", directory.path + "/absent.sock"], ["status", "--json", "--socket", directory.path]] {
            let run = try await PurifyctlRun.run(arguments)
            #expect(run.status == 69)
            #expect(run.standardOutput.isEmpty)
            #expect(run.standardError.hasPrefix("purifyctl: "))
        }
    }

    @Test(
        "a foreign uid: exit 77, whether the socket's directory or the daemon's peer check refuses it",
        .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"))
    )
    func permissionDenied() async throws {
        try await ServedDaemon.serving { daemon in
            // The temporary directory is 0700: uid 65534 cannot reach the socket at all.
            let shutOut = try await PurifyctlRun.run(["version", "--socket", daemon.socketPath], asNobody: true)
            #expect(shutOut.status == 77)
            #expect(shutOut.standardError.contains("permission denied on \(daemon.socketPath)"), "\(shutOut.standardError)")

            // Reachable through the file system: the daemon itself refuses the uid.
            #expect(chmod(daemon.root.path, 0o755) == 0)
            #expect(chmod(daemon.socketPath, 0o666) == 0)
            let refused = try await PurifyctlRun.run(["version", "--socket", daemon.socketPath], asNobody: true)
            #expect(refused.status == 77)
            #expect(refused.standardError.contains("uid 65534 may not use this socket (permission_denied)"), "\(refused.standardError)")
        }
    }

    @Test("a socket path too long for sockaddr_un: exit 64")
    func overlongSocketPath() async throws {
        let run = try await PurifyctlRun.run(["status", "--socket", "/tmp/" + String(repeating: "s", count: 200)])
        #expect(run.status == 64)
        #expect(run.standardError.contains("not a usable socket path"), "\(run.standardError)")
    }

    @Test("a daemon that never replies: exit 75 after --timeout")
    func silentDaemon() async throws {
        let listener = try SilentListener()
        let run = try await PurifyctlRun.run(["stats", "--socket", listener.path, "--timeout", "0.2"])
        #expect(run.status == 75)
        #expect(run.standardError.contains("no complete reply came"), "\(run.standardError)")
    }
}

enum ConnectionOptionsForTests {
    static let socketVariable = "PURIFYD_SOCKET"
}
