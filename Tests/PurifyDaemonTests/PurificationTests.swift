import Foundation
import Logging
import PurifyControl
@testable import PurifyDaemon
import PurifyImage
import PurifyPipeline
import PurifyTestSupport
import Testing

@Suite("Pipeline glue: spool committer, statistics, reload changes")
struct PurificationTests {
    /// An inbox `test` under `root` with a recovered spool.
    private static func spool(in root: TemporaryDirectory) throws -> InboxSpool {
        let configuration = InboxConfiguration(
            name: "test", path: try root.subdirectory("inbox"), outbox: root.path + "/outbox", bundlePath: "/unused",
            spoolDirectory: root.path + "/spool")
        let spool = InboxSpool(configuration: configuration, logger: testLogger)
        #expect(try spool.recover().isEmpty)
        return spool
    }

    private static func claim(_ name: String, in spool: InboxSpool) throws -> ClaimedFile {
        try writeFile(spool.configuration.path + "/" + name, "input bytes")
        guard case .claimed(let file) = try spool.claim(name) else {
            throw DaemonError(code: .spoolConflict, message: "\(name) was not claimed")
        }
        return file
    }

    /// A report as the pipeline writes one; `output` nil for a failure.
    private static func report(name: String, output: String?) throws -> PurificationReport {
        let outcome = if let output {
            #""status":"purified","output":{"path":"\#(output)","format":"png","bytes":5}"#
        } else {
            #""status":"failed","error":{"code":"truncated","stage":"decode","message":"the file ends early"}"#
        }
        let json = #"{"schema_version":1,\#(outcome),"input":{"name":"\#(name)","path":"/x"},"#
            + #""bundle":{"name":"b","version":"1","purifier_sha256":"00"},"timings_ms":{"total":2.5,"decode":1.0}}"#
        return try PurificationReport(json: Array(json.utf8))
    }

    @Test("A purified image and its report are committed together; a taken name moves both, and the report says where")
    func commitsThroughTheSpool() throws {
        let root = try TemporaryDirectory()
        let spool = try Self.spool(in: root)
        try writeFile(spool.configuration.outbox + "/digit.png", "an older output")
        let committer = SpoolCommitter()
        let request = committer.register(try Self.claim("digit.jpg", in: spool), from: spool)
        #expect(request.name == "digit.jpg")

        let provisional = try committer.commitImage(Array("image".utf8), format: .png, for: request)
        #expect(provisional == spool.configuration.outbox + "/digit.png")
        let report = try Self.report(name: "digit.jpg", output: provisional)
        let reportPath = try committer.commitReport(try report.encoded(), report: report, for: request)

        #expect(reportPath == spool.configuration.outbox + "/digit-1.png.json")
        #expect(try String(contentsOfFile: spool.configuration.outbox + "/digit-1.png", encoding: .utf8) == "image")
        let committed = try PurificationReport(json: Array(try Data(contentsOf: URL(fileURLWithPath: reportPath))))
        #expect(committed.output?.path == spool.configuration.outbox + "/digit-1.png")
        #expect(spool.statistics.committed == 1 && spool.statistics.inFlight == 0)
        #expect(committer.unregister(request) == nil)
    }

    @Test("A failure report sends the input to failed/ with the pipeline's report inside")
    func failsThroughTheSpool() throws {
        let root = try TemporaryDirectory()
        let spool = try Self.spool(in: root)
        let committer = SpoolCommitter()
        let request = committer.register(try Self.claim("half.png", in: spool), from: spool)
        let report = try Self.report(name: "half.png", output: nil)
        let reportPath = try committer.commitReport(try report.encoded(), report: report, for: request)

        #expect(reportPath == spool.configuration.failedDirectory + "/half.png.error.json")
        let written = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: URL(fileURLWithPath: reportPath)))
        guard case .object(let fields) = written, case .object(let details)? = fields["details"],
              case .object(let pipelineReport)? = details["report"] else {
            Issue.record("no pipeline report in \(written)")
            return
        }
        #expect(fields["error"] == ["code": "truncated", "message": "decode: the file ends early"])
        #expect(pipelineReport["status"] == "failed")
        #expect(spool.statistics.failed == 1 && spool.statistics.inFlight == 0)
    }

    @Test("A request the committer never registered is an error, not a crash")
    func unregisteredRequest() throws {
        let committer = SpoolCommitter()
        let stray = PurificationRequest(inputPath: "/nowhere/x.png", name: "x.png")
        #expect(throws: SpoolCommitterError.self) { try committer.commitImage([1], format: .png, for: stray) }
    }

    @Test("Nearest-rank quantiles, counts per inbox, and the Prometheus summary")
    func statistics() throws {
        #expect(PurificationStatistics.quantile(0.5, of: (1...100).map(Double.init)) == 50)
        #expect(PurificationStatistics.quantile(0.99, of: (1...100).map(Double.init)) == 99)
        #expect(PurificationStatistics.quantile(0.9, of: [7]) == 7)

        let start = ContinuousClock.now
        let statistics = PurificationStatistics(startedAt: start)
        statistics.record(try Self.report(name: "a.png", output: "/out/a.png"), committed: true, inbox: "test", at: start + .seconds(1))
        statistics.record(try Self.report(name: "b.png", output: nil), committed: true, inbox: "test", at: start + .seconds(2))
        #expect(statistics.inboxCounts == ["test": .init(purified: 1, failed: 1, uncommitted: 0)])

        let stats = statistics.statistics(at: start + .seconds(4))
        #expect(stats.throughputPerSecond == 0.5)
        #expect(stats.latency["total"] == .init(count: 2, p50: 2.5, p90: 2.5, p99: 2.5, max: 2.5))
        #expect(stats.latency["purify"] == nil)
        let metrics = statistics.metrics()
        #expect(metrics.contains("purifyd_images_total{inbox=\"test\",result=\"failed\"} 1\n"))
        #expect(metrics.contains("purifyd_stage_latency_seconds_sum{stage=\"decode\"} 0.002\n"))
    }

    @Test("A reload lists the keys that need a restart and nothing the pipelines apply at once")
    func restartKeys() {
        let inbox = InboxConfiguration(name: "a", path: "/in", outbox: "/out", bundlePath: "/models/a", spoolDirectory: "/spool")
        let running = DaemonConfiguration(inboxes: [inbox])
        var livelyChange = running
        livelyChange.inboxes[0].bundlePath = "/models/b"
        livelyChange.inboxes[0].outputFormat = .jpeg
        livelyChange.inboxes[0].batching.maxBatch = 4
        livelyChange.inboxes[0].queueCapacity = 2
        livelyChange.logLevel = .debug
        #expect(ConfigurationChanges.keysNeedingRestart(from: running, to: livelyChange).isEmpty)

        var restart = running
        restart.controlSocketPath = "/tmp/other.sock"
        restart.inboxes[0].outbox = "/elsewhere"
        restart.engine.threads = 1
        restart.inboxes.append(InboxConfiguration(name: "b", path: "/in-b", outbox: "/out-b", bundlePath: "/m", spoolDirectory: "/s"))
        #expect(ConfigurationChanges.keysNeedingRestart(from: running, to: restart)
            == ["control_socket", "engine.threads", "inbox[a].outbox", "inbox[b]"])
    }
}
