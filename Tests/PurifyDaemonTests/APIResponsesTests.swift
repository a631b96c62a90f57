import PurifyDaemon
import PurifyHTTP
import PurifyImage
import PurifyPipeline
import Testing

@Suite("API responses: results back to the waiting request")
struct APIResponsesTests {
    @Test("A result reaches its caller whether it arrives before or after the caller waits")
    func delivery() async throws {
        let responses = APIResponses()
        let early = responses.register(image: [1], name: "a.png", requestID: "r1")
        #expect(early.inputPath == "http:r1" && early.contents == [1] && APIResponses.owns(early))
        _ = try responses.commitImage([9, 9], format: .png, for: early)
        _ = try responses.commitReport([], report: Self.report(.purified), for: early)
        let first = await responses.wait(for: early)
        #expect(first?.image == [9, 9] && first?.report.status == .purified)

        let late = responses.register(image: [2], name: "b.png", requestID: "r2")
        async let waiting = responses.wait(for: late)
        try await Task.sleep(for: .milliseconds(50))
        responses.finish(late, report: Self.report(.failed))
        let second = await waiting
        #expect(second?.report.status == .failed && second?.image == nil)
        #expect(responses.pending == 0)
    }

    @Test("A repeated request id gets a suffix; a caller that gives up gets nil and its result is dropped")
    func abandonment() async throws {
        let responses = APIResponses()
        let first = responses.register(image: [1], name: "a", requestID: "same")
        let second = responses.register(image: [1], name: "a", requestID: "same")
        #expect(first.inputPath == "http:same" && second.inputPath == "http:same-2")

        let waiter = Task { await responses.wait(for: first) }
        try await Task.sleep(for: .milliseconds(50))
        waiter.cancel()
        #expect(await waiter.value == nil)
        _ = try responses.commitReport([], report: Self.report(.purified), for: first)
        responses.unregister(second)
        #expect(responses.pending == 0)
        #expect(!APIResponses.owns(PurificationRequest(inputPath: "/srv/inbox/a.png", name: "a.png")))
    }

    /// A report as the pipeline writes it, purified or failed.
    static func report(_ status: PurificationReport.Status) -> PurificationReport {
        let outcome = status == .purified
            ? #""output":{"path":"http:x","format":"png","bytes":2}"#
            : #""error":{"code":"corrupt","stage":"decode","message":"m"}"#
        let json = #"{"schema_version":1,"status":""# + status.rawValue
            + #"","input":{"name":"a","path":"http:x"},"bundle":{"name":"b","version":"1","purifier_sha256":"00"},"timings_ms":{"total":1},"#
            + outcome + "}"
        return try! PurificationReport(json: Array(json.utf8))
    }
}
