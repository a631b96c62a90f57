import Foundation
import Logging
import PurifyDaemon
import PurifyEngine
import PurifyPipeline
import Testing

@Suite("Configuration")
struct ConfigurationTests {
    static let minimal = """
        [[inbox]]
        path = "in"
        outbox = "out"
        bundle = "models/mnist"
        """

    /// The package root, found from this file's path.
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    @Test("the shipped example parses and says what its comments say")
    func shippedExample() throws {
        let configuration = try DaemonConfiguration.load(from: Self.packageRoot + "/etc/purifyd/purifyd.toml")
        #expect(configuration.stateDirectory == "/var/lib/purifyd")
        #expect(configuration.controlSocketPath == "/run/purifyd/control.sock")
        #expect(configuration.drainDeadline == .seconds(30))
        #expect(configuration.logLevel == .info)
        #expect(configuration.engine == EngineConfiguration(threads: nil, planCache: PlanCacheLimits(plans: 32, arenaBytes: 1 << 30)))
        #expect(configuration.inboxes.count == 1)
        let inbox = try #require(configuration.inboxes.first)
        #expect(inbox.name == "mnist")
        #expect(inbox.path == "/srv/purifyd/mnist/inbox")
        #expect(inbox.bundlePath == "/usr/local/share/purifyd/models/mnist")
        #expect(inbox.afterSuccess == .delete)
        #expect(inbox.spoolDirectory == "/srv/purifyd/mnist/spool")
        #expect(inbox.failedDirectory == "/srv/purifyd/mnist/spool/failed")
        // The example documents the defaults: parsing it must give what leaving every key out gives.
        let defaults = try DaemonConfiguration(toml: Self.minimal, baseDirectory: "/x")
        #expect(configuration.engine == defaults.engine)
        #expect(inbox.limits == defaults.inboxes[0].limits)
        #expect(inbox.batching == defaults.inboxes[0].batching)
        #expect(inbox.queueCapacity == defaults.inboxes[0].queueCapacity)
        #expect(inbox.jpegQuality == defaults.inboxes[0].jpegQuality)
        #expect(inbox.outputFormat == defaults.inboxes[0].outputFormat)
        #expect(inbox.classifierEnabled == defaults.inboxes[0].classifierEnabled)
        #expect(inbox.inputPolicy == defaults.inboxes[0].inputPolicy)
        #expect(inbox.memory == defaults.inboxes[0].memory)
        #expect(inbox.rescanInterval == nil && defaults.inboxes[0].rescanInterval == nil)
    }

    @Test("defaults fill in and relative paths resolve against the base directory")
    func defaultsAndRelativePaths() throws {
        let configuration = try DaemonConfiguration(toml: Self.minimal, baseDirectory: "/etc/purifyd/")
        let inbox = configuration.inboxes[0]
        #expect(inbox.path == "/etc/purifyd/in")
        #expect(inbox.outbox == "/etc/purifyd/out")
        #expect(inbox.bundlePath == "/etc/purifyd/models/mnist")
        #expect(inbox.name == "in")
        #expect(inbox.spoolDirectory == "/var/lib/purifyd/in")
        #expect(inbox.failedDirectory == "/var/lib/purifyd/in/failed")
        #expect(inbox.batching == BatchingConfiguration(maxBatch: 16, maxDelay: .milliseconds(10)))
    }

    @Test("every key of a full file is read")
    func fullFile() throws {
        let toml = """
            state_directory = "/s"
            control_socket = "/r/c.sock"
            allowed_uids = [1000, 1001]
            allowed_gids = [27]
            drain_deadline_s = 5
            log_level = "debug"
            engine = { threads = 3, plan_cache_plans = 5, plan_cache_mib = 64 }
            [[inbox]]
            name = "a"
            path = "/in/a"
            outbox = "/out/a"
            bundle = "/b"
            output_format = "jpeg"
            jpeg_quality = 75
            classifier = false
            queue_capacity = 8
            after_success = "archive"
            archive_dir = "/archive"
            failed_dir = "/failed"
            spool_dir = "/spool/a"
            limits = { max_bytes = 100, max_pixels = 200, max_side = 300 }
            batch = { max_batch = 4, max_delay_ms = 0 }
            input_policy = "tile"
            rescan_interval_s = 30
            memory = { tile_side = 128, batch_pixels = 65536, pixels_in_flight = 1000000 }
            [[inbox]]
            path = "/in/b"
            outbox = "/out/b"
            bundle = "/b"
            """
        let configuration = try DaemonConfiguration(toml: toml, baseDirectory: "/")
        #expect(configuration == DaemonConfiguration(
            stateDirectory: "/s",
            controlSocketPath: "/r/c.sock",
            allowedUIDs: [1000, 1001],
            allowedGIDs: [27],
            drainDeadline: .seconds(5),
            logLevel: .debug,
            engine: EngineConfiguration(threads: 3, planCache: PlanCacheLimits(plans: 5, arenaBytes: 64 << 20)),
            inboxes: [
                InboxConfiguration(
                    name: "a", path: "/in/a", outbox: "/out/a", bundlePath: "/b", outputFormat: .jpeg,
                    jpegQuality: 75, classifierEnabled: false,
                    limits: InputLimits(maxBytes: 100, maxPixels: 200, maxSide: 300),
                    batching: BatchingConfiguration(maxBatch: 4, maxDelay: .zero), inputPolicy: .tile,
                    memory: MemoryConfiguration(tileSide: 128, batchPixels: 65536, pixelsInFlight: 1_000_000), queueCapacity: 8,
                    afterSuccess: .archive(directory: "/archive"), rescanInterval: .seconds(30), spoolDirectory: "/spool/a",
                    failedDirectory: "/failed"
                ),
                InboxConfiguration(name: "b", path: "/in/b", outbox: "/out/b", bundlePath: "/b", spoolDirectory: "/s/b"),
            ]
        ))
    }

    @Test("control characters and bad header keys are syntax errors, not a crash of the TOML parser (inputs fuzz-config found)")
    func controlCharacters() throws {
        // toml++ (inside TOMLKit) aborted the process on an assertion in parse_key for this text.
        let found: [UInt8] = [0x5B, 0x01, 0x61, 0x6E, 0x62, 0x2B, 0, 0, 0, 0, 0, 0, 0, 0x68, 0x20, 0x3D, 0x20, 0x22] + Array("indle = \"models/mni".utf8)
            + [0x01] + Array("ast\"\n".utf8)
        // Two more it found: a table header whose key begins with a bracket or a non-ASCII character.
        for text in [String(decoding: found, as: UTF8.self), "[[inbox]]\npath = \"in\u{7F}\"\n",
                     "[[[inbox]]\npath =\nn\"i\" outbox = \"out\"\n", "[[\u{FFFD}inbox]]\n", "[a.!b]\n"] {
            #expect(throws: ConfigurationError.self) { try DaemonConfiguration(toml: text, baseDirectory: "/") }
        }
        do {
            _ = try DaemonConfiguration(toml: String(decoding: found, as: UTF8.self), baseDirectory: "/")
        } catch {
            #expect(error.message == "TOML syntax error at line 1, column 2: control character U+0001 is not allowed in TOML")
        }
        // Tabs and CRLF line ends stay valid.
        #expect(try DaemonConfiguration(toml: "[[inbox]]\r\npath\t= \"in\"\r\noutbox = \"out\"\r\nbundle = \"b\"\r\n", baseDirectory: "/").inboxes.count == 1)
    }

    @Test("errors name the key path", arguments: [
        ("[[inbox]]\npath=\"/i\"\noutbox=\"/o\"\nbundle=\"/b\"\n[inbox.batch]\nmax_delay_ms = \"5\"", "inbox[0].batch.max_delay_ms", "expected an integer, found a string"),
        ("[[inbox]]\npath=\"/i\"\noutbox=\"/o\"\nbundle=\"/b\"\n[inbox.batch]\nmax_delay_ms = -1", "inbox[0].batch.max_delay_ms", "must be between 0 and 60000 (got -1)"),
        ("[[inbox]]\npath=\"/i\"\noutbox=\"/o\"\nbundle=\"/b\"\n[inbox.limits]\nmax_sides = 3", "inbox[0].limits.max_sides", "unknown key"),
        ("colour = 1\n[[inbox]]\npath=\"/i\"\noutbox=\"/o\"\nbundle=\"/b\"", "colour", "unknown key"),
        ("[[inbox]]\npath=\"/i\"\noutbox=\"/o\"\nbundle=\"/b\"\n[[inbox]]\npath=\"/j\"\noutbox=\"/p\"", "inbox[1].bundle", "is required"),
        ("[[inbox]]\npath=\"/i\"\noutbox=\"/o\"\nbundle=\"/b\"\noutput_format=\"gif\"", "inbox[0].output_format", "must be one of same, png, jpeg (got \"gif\")"),
        ("[[inbox]]\npath=\"/i\"\noutbox=\"/o\"\nbundle=\"/b\"\ninput_policy=\"crop\"", "inbox[0].input_policy", "must be one of reject, resize, tile (got \"crop\")"),
        ("[[inbox]]\npath=\"/i\"\noutbox=\"/o\"\nbundle=\"/b\"\n[inbox.memory]\ntile_side = 4", "inbox[0].memory.tile_side", "must be between 8 and 8192 (got 4)"),
        ("[[inbox]]\npath=\"/i\"\noutbox=\"/o\"\nbundle=\"/b\"\nafter_success=\"archive\"", "inbox[0].archive_dir", "is required when after_success = \"archive\""),
        ("[[inbox]]\npath=\"/i\"\noutbox=\"/i\"\nbundle=\"/b\"", "inbox[0].outbox", "must differ from path (/i)"),
        ("[[inbox]]\npath=\"/x/i\"\noutbox=\"/o\"\nbundle=\"/b\"\n[[inbox]]\npath=\"/y/i\"\noutbox=\"/p\"\nbundle=\"/b\"", "inbox[1].name", "\"i\" is already the name of inbox[0]"),
        ("allowed_uids = [1, -2]\n[[inbox]]\npath=\"/i\"\noutbox=\"/o\"\nbundle=\"/b\"", "allowed_uids[1]", "must be a numeric id between 0 and 4294967294"),
        ("log_level = \"loud\"\n[[inbox]]\npath=\"/i\"\noutbox=\"/o\"\nbundle=\"/b\"", "log_level", "must be one of trace, debug, info, notice, warning, error, critical (got \"loud\")"),
        ("state_directory = \"/s\"", "inbox", "at least one [[inbox]] table is required"),
        ("[engine]\nthreads = 0\n[[inbox]]\npath=\"/i\"\noutbox=\"/o\"\nbundle=\"/b\"", "engine.threads", "must be between 1 and 1024 (got 0)"),
        ("[engine]\nplan_cache = 3\n[[inbox]]\npath=\"/i\"\noutbox=\"/o\"\nbundle=\"/b\"", "engine.plan_cache", "unknown key"),
    ])
    func errorsNameTheKey(toml: String, keyPath: String, message: String) {
        #expect(throws: ConfigurationError(keyPath: keyPath, message: message)) {
            try DaemonConfiguration(toml: toml, baseDirectory: "/")
        }
    }

    @Test("a TOML syntax error reports its line")
    func syntaxError() {
        let error = #expect(throws: ConfigurationError.self) {
            try DaemonConfiguration(toml: "[[inbox]]\npath = \n", baseDirectory: "/")
        }
        #expect(error?.keyPath == "")
        #expect(error?.message.contains("line 2") == true)
    }
}
