import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Glibc
import PurifyControl
import PurifyImage
import PurifyTestSupport
import Testing

/// The HTTP API of a running `purifyd`: requests through the inbox's pipeline, the answers'
/// encoding, tokens, limits, backpressure and `/metrics`.
@Suite("purifyd HTTP API", .serialized)
struct HTTPTests {
    @Test("Purifies through the inbox's pipeline and batcher; bundles, health, readiness, tokens, limits, metrics")
    func purifyThroughTheAPI() async throws {
        let folder = try DaemonFolder()
        let token = "test-token-0123456789abcdef"
        try Data("# API clients\n\(token)\n".utf8).write(to: URL(fileURLWithPath: folder.root + "/tokens"))
        chmod(folder.root + "/tokens", 0o600)
        // A long batch delay with batches of 4: four inputs arriving together share one batch.
        try writeConfiguration(in: folder, batch: 4, delayMilliseconds: 5000, http: """
            listen = "127.0.0.1:0"
            max_body_bytes = 100000
            token_file = "tokens"
            """)
        try await DaemonProcess.running(in: folder) { daemon in
            let api = try await APIClient(folder: folder, token: token)
            #expect(try await api.get("/healthz").status == 200)
            #expect(try await api.get("/readyz").status == 200)

            let bundles = try await api.get("/v1/bundles")
            #expect(bundles.status == 200)
            let listed = try #require(try bundles.json()["bundles"] as? [[String: Any]])
            #expect(listed.count == 1 && listed[0]["inbox"] as? String == "test" && listed[0]["max_bytes"] as? Int == 33554432)
            let bundleName = try #require(listed[0]["name"] as? String)

            // Three requests and one inbox file at once: one batch of four.
            let names = try folder.makeImages(1, prefix: "inbox")
            async let first = api.purify(pngImage(seed: 1), requestID: "req-1")
            async let second = api.purify(pngImage(seed: 2), requestID: "req-2")
            async let third = api.purify(pngImage(seed: 3), query: "bundle=\(bundleName)&name=third.png")
            try await Task.sleep(for: .milliseconds(200))
            try folder.drop(names)
            let answers = try await [first, second, third]
            for answer in answers {
                #expect(answer.status == 200, "\(answer.text)")
                let envelope = try answer.json()
                let report = try #require(envelope["report"] as? [String: Any])
                #expect(report["status"] as? String == "purified")
                let batch = try #require(report["batch"] as? [String: Any])
                #expect(batch["size"] as? Int == 4, "the requests and the inbox file share a batch: \(batch)")
                let image = try #require(envelope["image"] as? [String: Any])
                #expect(image["content_type"] as? String == "image/png")
                let base64 = try #require(image["base64"] as? String)
                let bytes = try #require(Data(base64Encoded: base64))
                let decoded = try ImageDecoder().decode(Array(bytes))
                #expect(decoded.width == 28 && decoded.height == 28)
                let output = try #require(report["output"] as? [String: Any])
                #expect(output["bytes"] as? Int == bytes.count)
            }
            let firstEnvelope = try answers[0].json()
            #expect(firstEnvelope["request_id"] as? String == "req-1")
            #expect(answers[0].headers["x-request-id"] == "req-1")
            #expect(((firstEnvelope["report"] as? [String: Any])?["input"] as? [String: Any])?["path"] as? String == "http:req-1")
            let thirdReport = try answers[2].json()["report"] as? [String: Any]
            #expect((thirdReport?["input"] as? [String: Any])?["name"] as? String == "third.png")
            #expect(await eventually(timeout: .seconds(30)) { folder.committedReports.count == 1 })
            let inboxReport = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder.outbox + "/inbox0.png.json"))) as? [String: Any]
            #expect((inboxReport?["batch"] as? [String: Any])?["size"] as? Int == 4)

            // Refusals.
            #expect(try await api.purify(pngImage(seed: 4), token: .none).status == 401)
            #expect(try await api.purify(pngImage(seed: 4), token: .bearer("wrong-token-0123456789abcdef")).status == 401)
            #expect(try await api.get("/v1/bundles", token: .none).status == 401)
            let unknown = try await api.purify(pngImage(seed: 4), query: "bundle=no-such-bundle")
            let unknownError = try unknown.json()["error"] as? [String: Any]
            #expect(unknown.status == 404 && unknownError?["code"] as? String == "unknown_bundle")
            let corrupt = try await api.purify(Array("not an image".utf8))
            #expect(corrupt.status == 422)
            let failed = try #require(try corrupt.json()["report"] as? [String: Any])
            #expect(failed["status"] as? String == "failed" && (failed["error"] as? [String: Any])?["code"] as? String == "unsupported")
            let corruptEnvelope = try corrupt.json()
            #expect(corruptEnvelope["image"] == nil)
            let large = try await api.purify([UInt8](repeating: 0x89, count: 100_001))
            #expect(large.status == 413)
            #expect(try await api.purify([]).status == 400)

            // The metrics: the inboxes', the pipeline's histograms per stage and bundle, the API's.
            let metrics = try await api.get("/metrics", token: .none)
            #expect(metrics.status == 200)
            for family in ["purifyd_files_claimed_total{inbox=\"test\"} 1", "purifyd_build_info{version=",
                           "purifyd_stage_duration_seconds_bucket{stage=\"purify\",bundle=\"\(bundleName)\",le=",
                           "purifyd_results_total{bundle=\"\(bundleName)\",source=\"http\",status=\"purified\"} 3",
                           "purifyd_results_total{bundle=\"\(bundleName)\",source=\"inbox\",status=\"purified\"} 1",
                           "purifyd_failures_total{code=\"unsupported\",stage=\"decode\"} 1",
                           "purifyd_http_requests_total{route=\"/v1/purify\",status=\"401\"} 2",
                           "purifyd_http_request_duration_seconds_bucket{route=\"/v1/purify\",le="] {
                #expect(metrics.text.contains(family), "\(family) missing from /metrics")
            }
            // The control socket's `metrics` is the same document.
            let control = try await daemon.request(.metrics)
            guard case .string(let text)? = control["text"] else { Issue.record("metrics has no text"); return }
            #expect(text.contains("purifyd_results_total{bundle=\"\(bundleName)\",source=\"http\",status=\"purified\"} 3"))
        }
    }

    @Test("Past max_in_flight a request gets 429, past the timeout 503, both with Retry-After")
    func backpressure() async throws {
        let folder = try DaemonFolder()
        // Batches wait 4 s to fill: the first request stays in flight past its 2 s timeout. The
        // second is sent 1 s after the first, so each request has a second of slack (to be
        // admitted, to arrive) on a busy machine or under a sanitizer; 300 ms and a 1 s timeout
        // failed under AddressSanitizer with the machine loaded.
        try writeConfiguration(in: folder, batch: 16, delayMilliseconds: 4000, http: """
            listen = "127.0.0.1:0"
            max_in_flight = 1
            request_timeout_s = 2
            retry_after_s = 2
            """)
        try await DaemonProcess.running(in: folder) { _ in
            let api = try await APIClient(folder: folder, token: nil)
            async let slow = api.purify(pngImage(seed: 1))
            try await Task.sleep(for: .seconds(1))
            let refused = try await api.purify(pngImage(seed: 2))
            #expect(refused.status == 429 && refused.headers["retry-after"] == "2")
            let refusedError = try refused.json()["error"] as? [String: Any]
            #expect(refusedError?["code"] as? String == "busy")
            let timedOut = try await slow
            #expect(timedOut.status == 503 && timedOut.headers["retry-after"] == "2")
            let timedOutError = try timedOut.json()["error"] as? [String: Any]
            #expect(timedOutError?["code"] as? String == "timeout")
            #expect(try await api.get("/readyz").status == 200)
        }
    }
}

/// Writes a configuration: one inbox `test` over the fixture bundle with the given batching,
/// and an `[http]` table with `http` in it.
private func writeConfiguration(in folder: DaemonFolder, batch: Int, delayMilliseconds: Int, http: String) throws {
    let toml = """
        log_level = "info"
        state_directory = "state"
        control_socket = "run/control.sock"
        [http]
        \(http)
        [[inbox]]
        name = "test"
        path = "inbox"
        outbox = "outbox"
        spool_dir = "spool"
        bundle = "\(fixtureBundle)"
        [inbox.batch]
        max_batch = \(batch)
        max_delay_ms = \(delayMilliseconds)

        """
    try Data(toml.utf8).write(to: URL(fileURLWithPath: folder.configurationPath))
}

/// A client of one daemon's HTTP API, at the address its `http listening` log line names.
struct APIClient: Sendable {
    struct Answer: Sendable {
        var status: Int
        /// By lowercased name.
        var headers: [String: String]
        var body: Data
        var text: String { String(decoding: body, as: UTF8.self) }
        func json() throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any], "not a JSON object: \(text)")
        }
    }

    /// What a request authenticates with.
    enum Token: Sendable {
        /// The client's own token, if it has one.
        case own
        case none
        case bearer(String)
    }

    let base: String
    let token: String?
    private let session: URLSession

    init(folder: DaemonFolder, token: String?) async throws {
        var address: String?
        _ = await eventually(timeout: .seconds(30)) {
            address = folder.logText.split(separator: "\n").first { $0.contains("http listening") }
                .flatMap { $0.split(separator: " ").first { $0.hasPrefix("address=") } }
                .map { String($0.dropFirst("address=".count)) }
            return address != nil
        }
        let listening = try #require(address, "no http listening line: \(folder.logText)")
        base = "http://\(listening)"
        self.token = token
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = 16
        configuration.timeoutIntervalForRequest = 60
        session = URLSession(configuration: configuration)
    }

    func get(_ path: String, token: Token = .own) async throws -> Answer {
        try await send(URLRequest(url: URL(string: base + path)!), token: token)
    }

    func purify(_ image: [UInt8], query: String = "", requestID: String? = nil, token: Token = .own) async throws -> Answer {
        var request = URLRequest(url: URL(string: base + "/v1/purify" + (query.isEmpty ? "" : "?" + query))!)
        request.httpMethod = "POST"
        request.httpBody = Data(image)
        request.setValue("image/png", forHTTPHeaderField: "Content-Type")
        if let requestID { request.setValue(requestID, forHTTPHeaderField: "X-Request-Id") }
        return try await send(request, token: token)
    }

    private func send(_ request: URLRequest, token: Token) async throws -> Answer {
        var request = request
        let bearer: String? = switch token {
        case .own: self.token
        case .none: nil
        case .bearer(let value): value
        }
        if let bearer { request.setValue("Bearer \(bearer)", forHTTPHeaderField: "Authorization") }
        let (body, response) = try await session.data(for: request)
        let http = try #require(response as? HTTPURLResponse)
        var headers: [String: String] = [:]
        for (key, value) in http.allHeaderFields { headers["\(key)".lowercased()] = "\(value)" }
        return Answer(status: http.statusCode, headers: headers, body: body)
    }
}
