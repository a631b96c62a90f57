import Foundation
import Glibc
import PurifyControl
import PurifyTestSupport
import Testing

/// The real `purifyd` binary: its command line, signals, reloads and the control socket.
@Suite("purifyd: command line, signals and control", .serialized)
struct LifecycleTests {
    @Test("--check-config prints a summary and exits 0, or exits 78 naming the bad key; --version")
    func checkConfiguration() async throws {
        let executable = try #require(purifydPath)
        let folder = try DaemonFolder()
        try folder.writeConfiguration()
        let valid = try await ProgramRun.run(executable, ["--check-config", "--config", folder.configurationPath])
        #expect(valid.status == 0, "\(valid.standardError)")
        #expect(valid.standardOutput.contains("inbox test"))
        #expect(valid.standardOutput.contains("fixture-mnist 0.1.0"))
        #expect(valid.standardOutput.contains("\(folder.root)/inbox"))

        try folder.writeConfiguration(extra: "colour = \"red\"")
        let unknownKey = try await ProgramRun.run(executable, ["--check-config", "--config", folder.configurationPath])
        #expect(unknownKey.status == 78)
        #expect(unknownKey.standardError.contains("inbox[0].colour: unknown key"), "\(unknownKey.standardError)")

        try folder.writeConfiguration(bundle: folder.root + "/no-such-bundle")
        let missingBundle = try await ProgramRun.run(executable, ["--check-config", "--config", folder.configurationPath])
        #expect(missingBundle.status == 78)
        #expect(missingBundle.standardError.contains("inbox[0].bundle:"), "\(missingBundle.standardError)")

        let missingFile = try await ProgramRun.run(executable, ["--check-config", "--config", folder.root + "/absent.toml"])
        #expect(missingFile.status == 78)

        let version = try await ProgramRun.run(executable, ["--version"])
        #expect(version.status == 0)
        #expect(version.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".").count == 3)
    }

    @Test("Control round trips: version, status, pause, resume, rescan, stats, metrics, then drain with exit")
    func controlRoundTrips() async throws {
        let executable = try #require(purifydPath)
        let folder = try DaemonFolder()
        try folder.writeConfiguration()
        try await DaemonProcess.running(in: folder) { daemon in

            let version = try await ProgramRun.run(executable, ["--version"]).standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try await daemon.request(.version)["version"] == .string(version))

            let status = try await daemon.request(.status)
            #expect(status["state"] == "running")
            guard case .array(let bundles)? = status["bundles"], case .object(let bundle)? = bundles.first else {
                Issue.record("status lists no bundles: \(status)")
                return
            }
            let manifest = try String(contentsOfFile: fixtureBundle + "/bundle.toml", encoding: .utf8)
            #expect(bundle["inbox"] == "test" && bundle["name"] == "fixture-mnist" && bundle["version"] == "0.1.0")
            guard case .string(let sha)? = bundle["purifier_sha256"] else {
                Issue.record("no purifier checksum in \(bundle)")
                return
            }
            #expect(sha.count == 64 && manifest.contains(sha))

            #expect(try await daemon.request(.pause)["paused"] == ["test"])
            try folder.makeImages(2, prefix: "paused").forEach { try folder.drop([$0]) }
            // The claim loop holds the next name while it waits for the resume.
            #expect(await eventually {
                guard case .int(let waiting)? = try? await daemon.inboxStatus()["waiting_in_inbox"] else { return false }
                return waiting >= 1
            })
            try await Task.sleep(for: .milliseconds(500))
            #expect(folder.names(in: folder.inbox) == ["paused0.png", "paused1.png"])
            #expect(try await daemon.request(.status)["state"] == "paused")

            let rescansBefore = try await daemon.inboxStatus()["rescans"]
            #expect(try await daemon.request(.rescan)["rescanning"] == ["test"])
            #expect(await eventually { (try? await daemon.inboxStatus()["rescans"]) != rescansBefore })

            #expect(try await daemon.request(.resume)["resumed"] == ["test"])
            #expect(await eventually { folder.committedReports == ["paused0.png.json", "paused1.png.json"] }, "\(folder.logText)")

            // The statistics count a result once the pipeline hands it on, just after its report lands.
            #expect(await eventually {
                guard case .object(let inboxes)? = try? await daemon.request(.stats)["inboxes"], case .object(let counts)? = inboxes["test"] else { return false }
                return counts["purified"] == 2
            })
            let stats = try await daemon.request(.stats)
            guard case .object(let latency)? = stats["latency_ms"], case .object(let total)? = latency["total"],
                  let median = number(total["p50"]), let throughput = number(stats["throughput_per_s"]) else {
                Issue.record("stats lack latency or throughput: \(stats)")
                return
            }
            #expect(median > 0 && throughput > 0)
            #expect(latency["purify"] != nil && latency["decode"] != nil)

            guard case .string(let metrics)? = try await daemon.request(.metrics)["text"] else {
                Issue.record("metrics have no text")
                return
            }
            #expect(metrics.contains("purifyd_files_committed_total{inbox=\"test\"} 2\n"))
            #expect(metrics.contains("purifyd_images_total{inbox=\"test\",result=\"purified\"} 2\n"))
            #expect(metrics.contains("purifyd_stage_latency_seconds_count{stage=\"purify\"} 2\n"))
            #expect(metrics.contains("purifyd_bundle_info{inbox=\"test\",bundle=\"fixture-mnist\""))

            let drained = try await daemon.request(.drain, ["exit": true])
            #expect(drained["exiting"] == true)
            let exit = await daemon.waitForExit(timeout: .seconds(30))
            #expect(exit?.status == 0 && exit?.reason == .exit, "\(folder.logText)")
            #expect(!FileManager.default.fileExists(atPath: folder.socket))
        }
    }

    @Test("READY=1 reaches $NOTIFY_SOCKET once the models are loaded; a bundle that fails to load exits 78 without it")
    func readiness() async throws {
        let executable = try #require(purifydPath)
        let folder = try DaemonFolder()
        let notify = try NotifySocket(address: folder.root + "/notify.sock", receiveTimeout: .milliseconds(200))
        try folder.writeConfiguration(bundle: folder.root + "/no-such-bundle")
        let failed = try await ProgramRun.run(executable, ["--config", folder.configurationPath], environment: ["NOTIFY_SOCKET": notify.address])
        #expect(failed.status == 78)
        #expect(failed.standardError.contains("inbox[0].bundle"), "\(failed.standardError)")
        #expect(try await !notify.received().contains { $0.contains("READY=1") })

        try folder.writeConfiguration()
        try await DaemonProcess.running(in: folder, environment: ["NOTIFY_SOCKET": notify.address]) { daemon in
            let messages = try await notify.received()
            #expect(messages.first?.hasPrefix("READY=1\nSTATUS=1 inbox: 0 in flight") == true, "\(messages)")
            let log = folder.logText
            let loaded = try #require(log.range(of: "models loaded"))
            let ready = try #require(log.range(of: "purifyd: ready"))
            #expect(loaded.lowerBound < ready.lowerBound)
            daemon.send(SIGTERM)
            #expect(await daemon.waitForExit()?.status == 0)
            #expect(try await notify.received().contains { $0.hasPrefix("STOPPING=1") })
        }
    }

    @Test("The control socket refuses malformed JSON and overlong lines and serves 50 clients at once")
    func controlSocketAbuse() async throws {
        let folder = try DaemonFolder()
        try folder.writeConfiguration()
        try await DaemonProcess.running(in: folder) { daemon in
            let socket = folder.socket
            let line = { (text: String) in Array(text.utf8) + [UInt8(ascii: "\n")] }
            let refused = try await rawExchanges(socketPath: socket, [
                line("{not json"),
                Array(repeating: UInt8(ascii: "x"), count: 1 << 20) + [UInt8(ascii: "\n")],
                line(#"{"id":3,"cmd":"explode"}"#),
            ])
            #expect(refused[0].contains(#""ok":false"#) && refused[0].contains(#""code":"malformed_request""#), "\(refused[0])")
            #expect(refused[1].contains(#""code":"line_too_long""#), "\(refused[1])")
            #expect(refused[2].hasPrefix(#"{"id":3,"ok":false"#) && refused[2].contains("unknown_command"), "\(refused[2])")

            let replies = try await rawExchanges(socketPath: socket, (0..<50).map { line(#"{"id":\#($0),"cmd":"status"}"#) })
            let answered = replies.enumerated().filter { index, reply in reply.hasPrefix(#"{"id":\#(index),"ok":true"#) }.count
            #expect(answered == 50, "\(replies.filter { !$0.contains(#""ok":true"#) })")
            #expect(daemon.process.isRunning)
            #expect(try await daemon.request(.version)["version"] != nil)
        }
    }

    @Test("SIGHUP with a broken configuration keeps the old one; reload applies a good one")
    func reload() async throws {
        let folder = try DaemonFolder()
        try folder.writeConfiguration()
        try await DaemonProcess.running(in: folder) { daemon in

            try folder.writeConfiguration(extra: "max_batch = 4")
            daemon.send(SIGHUP)
            #expect(await eventually {
                guard case .object(let reloads)? = try? await daemon.request(.status)["reloads"] else { return false }
                return reloads["failed"] == 1
            })
            let status = try await daemon.request(.status)
            guard case .string(let lastError)? = status["last_error"] else {
                Issue.record("no last_error after a failed reload: \(status)")
                return
            }
            #expect(lastError.contains("inbox[0].max_batch"))
            #expect(await eventually { folder.logText.contains("reload failed") })
            #expect(folder.logText.components(separatedBy: "reload").count - 1 == 2, "one line for SIGHUP, one for the outcome: \(folder.logText)")
            #expect(daemon.process.isRunning)
            try folder.drop(try folder.makeImages(1, prefix: "old"))
            #expect(await eventually { folder.committedReports == ["old0.png.json"] }, "\(folder.logText)")

            try folder.writeConfiguration(bundle: folder.root + "/no-such-bundle")
            let refused = await #expect(throws: ControlClientError.self) { try await daemon.request(.reload) }
            #expect(refused?.code == .daemonError)
            #expect(refused?.description.contains("inbox[0].bundle") == true, "\(String(describing: refused))")

            try folder.writeConfiguration(queueCapacity: 3, outputFormat: "jpeg")
            let reloaded = try await daemon.request(.reload)
            #expect(reloaded["reloaded"] == true)
            #expect(reloaded["restart_required"] == [])
            #expect(try await daemon.inboxStatus()["capacity"] == 3)
            try folder.drop(try folder.makeImages(1, prefix: "new"))
            #expect(await eventually { folder.committedReports == ["old0.png.json", "new0.jpg.json"] }, "\(folder.logText)")
            #expect(folder.names(in: folder.outbox).contains("new0.jpg"))

            // log_level applies at once: at "warning", a SIGHUP's info line is no longer written.
            try folder.writeConfiguration(queueCapacity: 3, outputFormat: "jpeg", logLevel: "warning")
            #expect(try await daemon.request(.reload)["reloaded"] == true)
            daemon.send(SIGHUP)
            #expect(await eventually {
                guard case .object(let reloads)? = try? await daemon.request(.status)["reloads"] else { return false }
                return reloads["succeeded"] == 3
            })
            #expect(folder.logText.components(separatedBy: "SIGHUP: reloading").count - 1 == 1, "\(folder.logText)")
        }
    }

    @Test("Heavy: SIGTERM under load drains what is in flight and exits 0; the rest waits in the inbox",
          .timeLimit(.minutes(2)))
    func sigtermDrains() async throws {
        let folder = try DaemonFolder()
        try folder.writeConfiguration(queueCapacity: 32, classifier: false)
        let names = try folder.makeImages(400)
        try await DaemonProcess.running(in: folder) { daemon in
            try folder.drop(names)
            #expect(await eventually { folder.committedReports.count >= 20 })
            daemon.send(SIGTERM)
            let exit = await daemon.waitForExit(timeout: .seconds(60))
            #expect(exit?.status == 0 && exit?.reason == .exit, "\(folder.logText)")
            #expect(folder.names(in: folder.claimed).isEmpty, "files left claimed: not drained")
            let done = Set(folder.committedReports.map { String($0.dropLast(".json".count)) })
            let waiting = folder.names(in: folder.inbox)
            #expect(done.isDisjoint(with: waiting))
            #expect(done.union(waiting) == Set(names))
            #expect(folder.failureReports.isEmpty)
            #expect(waiting.count > 0, "the burst ended before SIGTERM: the test proves nothing")
        }
    }
}

/// A JSON number as a Double (whole numbers arrive as integers).
private func number(_ value: JSONValue?) -> Double? {
    switch value {
    case .int(let integer)?: Double(integer)
    case .double(let double)?: double
    default: nil
    }
}
