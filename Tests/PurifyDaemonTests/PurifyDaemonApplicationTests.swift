import Foundation
import Glibc
import Logging
import PurifyControl
import PurifyDaemon
import PurifyTestSupport
import Testing

@Suite("The assembled daemon")
struct PurifyDaemonApplicationTests {
    @Test("READY=1 once the socket listens; files flow; drain with exit stops it with STOPPING=1")
    func lifecycle() async throws {
        let root = try TemporaryDirectory()
        let toml = """
            state_directory = "state"
            control_socket = "run/control.sock"
            drain_deadline_s = 5
            [[inbox]]
            name = "mnist"
            path = "srv/inbox"
            outbox = "srv/outbox"
            spool_dir = "srv/spool"
            bundle = "models/mnist"
            queue_capacity = 2
            """
        let configuration = try DaemonConfiguration(toml: toml, baseDirectory: root.path)
        _ = try root.subdirectory("run")
        _ = try root.subdirectory("srv/inbox")
        let notify = try NotifySocket(abstractWithTimeout: SystemdTests.notifyTimeout)
        let processor = CopyingProcessor()
        let application = try PurifyDaemonApplication(
            configuration: configuration, processor: processor, pipeline: nil, version: "0.1.0-test",
            environment: ["NOTIFY_SOCKET": notify.address], logger: testLogger
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await application.run() }
            let ready = try await offPool { notify.receive() }
            #expect(ready == "READY=1\nSTATUS=1 inbox: 0 in flight, 0 done, 0 failed")

            try writeFile(root.path + "/srv/inbox/digit.png", "pixels")
            #expect(await eventually { processor.processed.all == ["digit.png"] })
            let socketPath = configuration.controlSocketPath
            let status = try await offPool { try RawControlConnection(path: socketPath).request(#"{"id":1,"cmd":"status"}"#) }
            #expect(status?["ok"] == true)
            #expect(status?["state"] == "running")
            let drained = try await offPool { try RawControlConnection(path: socketPath).request(#"{"id":2,"cmd":"drain","args":{"exit":true}}"#) }
            #expect(drained?["exiting"] == true)
            try await group.waitForAll()
            let stopping = try await offPool { notify.receive() }
            #expect(stopping?.hasPrefix("STOPPING=1\nSTATUS=") == true)
        }
        #expect(!FileManager.default.fileExists(atPath: configuration.controlSocketPath))
        #expect(FileManager.default.fileExists(atPath: root.path + "/srv/outbox/digit.png.json"))
    }
}
