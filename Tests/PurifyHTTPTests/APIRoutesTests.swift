import Hummingbird
@testable import PurifyHTTP
import PurifyPipeline
import Testing

@Suite("API routes: tokens, request ids, statuses")
struct APIRoutesTests {
    @Test("A bearer token matches only when equal to a configured one")
    func bearerTokens() {
        let tokens = [Array("first-token-0123456789".utf8), Array("second-token-0123456789".utf8)]
        #expect(BearerTokens<BasicRequestContext>.matches(Array("second-token-0123456789".utf8), any: tokens))
        #expect(!BearerTokens<BasicRequestContext>.matches(Array("second-token-012345678".utf8), any: tokens))
        #expect(!BearerTokens<BasicRequestContext>.matches(Array("second-token-0123456780".utf8), any: tokens))
        #expect(!BearerTokens<BasicRequestContext>.matches([], any: tokens))
    }

    @Test("A client's request id is kept when it is 1 to 128 safe characters")
    func requestIDs() {
        #expect(RequestAccounting<BasicRequestContext>.validRequestID("a1.B_2:c-3") == "a1.B_2:c-3")
        #expect(RequestAccounting<BasicRequestContext>.validRequestID(String(repeating: "x", count: 128)) != nil)
        #expect(RequestAccounting<BasicRequestContext>.validRequestID(String(repeating: "x", count: 129)) == nil)
        #expect(RequestAccounting<BasicRequestContext>.validRequestID("") == nil)
        #expect(RequestAccounting<BasicRequestContext>.validRequestID("a b") == nil)
        #expect(RequestAccounting<BasicRequestContext>.validRequestID("a\"b") == nil)
    }

    @Test("Metrics label known routes by path and the rest as other")
    func routes() {
        #expect(RequestAccounting<BasicRequestContext>.route(of: "/v1/purify") == "/v1/purify")
        #expect(RequestAccounting<BasicRequestContext>.route(of: "/v1/purify/x") == "other")
        #expect(RequestAccounting<BasicRequestContext>.route(of: "/favicon.ico") == "other")
    }

    @Test("Failures the input caused are 422, failures of the engine, encoder or memory 500")
    func statuses() throws {
        #expect(APIRoutes.status(of: try #require(Self.report)) == .ok)
        for (code, status) in [("out_of_domain", HTTPResponse.Status.unprocessableContent), ("corrupt", .unprocessableContent),
                               ("too_large", .unprocessableContent), ("inference", .internalServerError),
                               ("out_of_memory", .internalServerError), ("encoding_failed", .internalServerError)] {
            let failed = try PurificationReport(json: Array("""
                {"schema_version":1,"status":"failed","input":{"name":"a.png","path":"http:id-1"},
                 "bundle":{"name":"b","version":"1","purifier_sha256":"00"},"timings_ms":{"total":1.5},
                 "error":{"code":"\(code)","stage":"decode","message":"m"}}
                """.utf8))
            #expect(APIRoutes.status(of: failed) == status, "\(code)")
        }
    }

    @Test("The envelope carries the request id, the report as written and the image in base64")
    func envelope() throws {
        let report = try #require(Self.report)
        let json = try APIRoutes.envelopeJSON(PurifiedImage(report: report, image: [1, 2, 3]), requestID: "id-1")
        let text = String(decoding: json, as: UTF8.self)
        #expect(text.hasPrefix(#"{"request_id":"id-1","report":{"#))
        #expect(text.contains(#""image":{"content_type":"image/png","base64":"AQID"}"#))
        let failed = PurifiedImage(report: report, image: nil)
        #expect(!String(decoding: try APIRoutes.envelopeJSON(failed, requestID: "id-2"), as: UTF8.self).contains("image\":"))
    }

    /// A purified report as the pipeline writes it.
    static let report: PurificationReport? = try? PurificationReport(json: Array(#"""
        {"schema_version":1,"status":"purified","input":{"name":"a.png","path":"http:id-1","bytes":10},
         "bundle":{"name":"b","version":"1","purifier_sha256":"00"},
         "output":{"path":"http:id-1","format":"png","bytes":3},"timings_ms":{"total":1.5}}
        """#.utf8))
}
