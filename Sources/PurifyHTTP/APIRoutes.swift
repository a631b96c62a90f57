internal import Foundation
internal import HTTPTypes
public import Hummingbird
public import Logging
public import CoreMetrics
internal import PurifyPipeline
internal import Synchronization

/// The API's routes over a ``PurificationBackend``:
///
/// - `POST /v1/purify?bundle=NAME&name=NAME`: the body is a PNG or JPEG; the answer is JSON,
///   `{"request_id", "report", "image": {"content_type", "base64"}}` (200 purified; 422 the
///   input was refused or failed, with the report and no image; 500 the engine or the encoder
///   failed).
/// - `GET /v1/bundles`: the bundles requests may name.
/// - `GET /metrics`: Prometheus text, as `purifyctl metrics` gives it.
/// - `GET /healthz`: 200 while the process answers; `GET /readyz`: 200 while requests are taken.
///
/// `/v1/` needs a bearer token when the configuration lists any. A body over the limit gets
/// 413 before it is decoded; past `max_in_flight` requests 429, while starting or stopping and
/// past the request timeout 503, all three with `Retry-After`. Every answer carries
/// `X-Request-Id` (the client's when it sent a valid one), which the logs and the report's
/// `input.path` (`http:<id>`) repeat.
public final class APIRoutes: Sendable {
    public let configuration: APIConfiguration
    public let backend: any PurificationBackend
    private let metrics: any MetricsFactory
    private let metricsText: @Sendable () async -> String
    private let logger: Logger
    private let inFlight = Atomic<Int>(0)
    private let draining = Atomic<Bool>(false)

    /// - Parameters:
    ///   - metrics: Where the API counts and times its answers.
    ///   - metricsText: What `GET /metrics` answers, in the Prometheus text format.
    public init(configuration: APIConfiguration, backend: any PurificationBackend, metrics: any MetricsFactory,
                metricsText: @escaping @Sendable () async -> String, logger: Logger) {
        self.configuration = configuration
        self.backend = backend
        self.metrics = metrics
        self.metricsText = metricsText
        self.logger = logger
    }

    /// From now on `/readyz` answers 503 and new purification requests get 503 (`unavailable`):
    /// the server is shutting down and answers only what it holds.
    public func beginDraining() {
        draining.store(true, ordering: .relaxed)
    }

    /// Whether purification requests are taken.
    var isReady: Bool {
        !draining.load(ordering: .relaxed) && backend.isAcceptingRequests
    }

    /// The router; ``APIServer`` serves it.
    public func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: RequestAccounting(metrics: metrics, logger: logger))
        router.get("healthz") { _, _ in Self.text(.ok, "ok\n") }
        router.get("readyz") { [self] _, _ in
            isReady ? Self.text(.ok, "ready\n") : retry(Self.text(.serviceUnavailable, "not ready\n"))
        }
        router.get("metrics") { [self] _, _ in
            let text = await metricsText()
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        let v1 = router.group("v1")
        if !configuration.tokens.isEmpty { v1.add(middleware: BearerTokens(tokens: configuration.tokens)) }
        v1.get("bundles") { [self] _, _ in
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.sortedKeys]
            let json = try encoder.encode(["bundles": backend.servedBundles()])
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: json)))
        }
        v1.post("purify") { [self] request, context in try await purify(request, context: context) }
        return router
    }

    private func purify(_ request: Request, context: BasicRequestContext) async throws -> Response {
        // RequestAccounting put the request's id on its logger.
        let requestID = context.logger[metadataKey: "request_id"].map { "\($0)" } ?? "\(RequestID())"
        let logger = context.logger
        let bundles = backend.servedBundles()
        let bundleName = request.uri.queryParameters["bundle"].map(String.init) ?? bundles.first?.name ?? ""
        let name = request.uri.queryParameters["name"].map(String.init) ?? "request-\(requestID)"
        guard (1...255).contains(name.utf8.count), !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0 == "/" }) else {
            return Self.error(.badRequest, "invalid_name", "name must be 1 to 255 bytes without / or control characters")
        }
        guard isReady else {
            return retry(Self.error(.serviceUnavailable, "unavailable", "the daemon is starting or stopping"))
        }
        if let length = request.headers[.contentLength].flatMap(Int.init), length > configuration.maxBodyBytes {
            return Self.error(.contentTooLarge, "too_large", "the body's \(length) bytes exceed the limit of \(configuration.maxBodyBytes)")
        }
        let admitted = inFlight.wrappingAdd(1, ordering: .relaxed).newValue <= configuration.maxInFlight
        defer { inFlight.wrappingSubtract(1, ordering: .relaxed) }
        guard admitted else {
            logger.notice("request refused: too many in flight", metadata: ["limit": "\(configuration.maxInFlight)"])
            return retry(Self.error(.tooManyRequests, "busy", "\(configuration.maxInFlight) requests are in progress"))
        }
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: configuration.maxBodyBytes)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            return Self.error(.contentTooLarge, "too_large", "the body exceeds the limit of \(configuration.maxBodyBytes) bytes")
        }
        guard body.readableBytes > 0 else {
            return Self.error(.badRequest, "empty", "the body must be a PNG or JPEG image")
        }
        let image = Array(buffer: body)
        let backend = backend
        let outcome: Result<PurifiedImage, APIRefusal>? = await withTaskGroup(of: Result<PurifiedImage, APIRefusal>?.self) { group in
            group.addTask {
                do throws(APIRefusal) {
                    return .success(try await backend.purify(image, bundle: bundleName, name: name, requestID: "\(requestID)"))
                } catch {
                    return .failure(error)
                }
            }
            group.addTask { [timeout = configuration.requestTimeout] in
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        switch outcome {
        case nil:
            logger.notice("request timed out", metadata: ["timeout": "\(configuration.requestTimeout)"])
            return retry(Self.error(.serviceUnavailable, "timeout", "not purified within \(configuration.requestTimeout)"))
        case .failure(let refusal):
            logger.notice("request refused", metadata: ["reason": "\(refusal.reason.rawValue)", "error": "\(refusal.message)"])
            return refusal.reason == .unknownBundle
                ? Self.error(.notFound, refusal.reason.rawValue, refusal.message)
                : retry(Self.error(.serviceUnavailable, refusal.reason.rawValue, refusal.message))
        case .success(let purified):
            let status = Self.status(of: purified.report)
            if status == .ok {
                logger.debug("purified", metadata: ["bundle": "\(bundleName)", "bytes": "\(image.count)"])
            } else {
                logger.notice("not purified", metadata: [
                    "bundle": "\(bundleName)", "code": "\(purified.report.error?.code ?? "")",
                    "error": "\(purified.report.error?.message ?? "")",
                ])
            }
            return try Self.envelope(purified, requestID: "\(requestID)", status: status)
        }
    }

    /// 200 for a purified image; 500 when the engine, the encoder or memory failed; 422 for
    /// what the input itself caused.
    static func status(of report: PurificationReport) -> HTTPResponse.Status {
        guard report.status == .failed else { return .ok }
        switch report.error?.code {
        case "inference", "io", "encoding_failed", "out_of_memory": return .internalServerError
        default: return .unprocessableContent
        }
    }

    /// `{"request_id": …, "report": {…}, "image": {"content_type": …, "base64": …}}`, the
    /// report exactly as the inboxes write it.
    static func envelope(_ purified: PurifiedImage, requestID: String, status: HTTPResponse.Status) throws -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: try envelopeJSON(purified, requestID: requestID))))
    }

    static func envelopeJSON(_ purified: PurifiedImage, requestID: String) throws -> [UInt8] {
        var json = Array(#"{"request_id":""#.utf8) + Array(requestID.utf8) + Array(#"","report":"#.utf8)
        json += try purified.report.encoded()
        if let image = purified.image, let format = purified.report.output?.format {
            json += Array(#","image":{"content_type":"image/"#.utf8) + Array(format.utf8)
            json += Array(#"","base64":""#.utf8) + Array(Data(image).base64EncodedData()) + Array(#""}"#.utf8)
        }
        json += Array("}\n".utf8)
        return json
    }

    private func retry(_ response: Response) -> Response {
        var response = response
        response.headers[.retryAfter] = "\(configuration.retryAfterSeconds)"
        return response
    }

    static func text(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// `{"error": {"code": …, "message": …}}`.
    static func error(_ status: HTTPResponse.Status, _ code: String, _ message: String) -> Response {
        let json = try! JSONSerialization.data(withJSONObject: ["error": ["code": code, "message": message]], options: [.sortedKeys])
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: json + Data("\n".utf8))))
    }
}

/// Refuses `/v1/` requests without `Authorization: Bearer <token>` naming a configured token
/// (401 with `WWW-Authenticate: Bearer`). Tokens are compared in constant time.
struct BearerTokens<Context: RequestContext>: RouterMiddleware {
    let tokens: [[UInt8]]

    init(tokens: [String]) {
        self.tokens = tokens.map { Array($0.utf8) }
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
              Self.matches(Array(header.utf8.dropFirst(7)), any: tokens) else {
            var response = APIRoutes.error(.unauthorized, "unauthorized", "a valid bearer token is required")
            response.headers[.wwwAuthenticate] = "Bearer"
            return response
        }
        return try await next(request, context)
    }

    /// Whether `presented` equals one of `tokens`, in time that depends on lengths only.
    static func matches(_ presented: [UInt8], any tokens: [[UInt8]]) -> Bool {
        var found = false
        for token in tokens where token.count == presented.count {
            var difference: UInt8 = 0
            for index in token.indices { difference |= token[index] ^ presented[index] }
            found = found || difference == 0
        }
        return found
    }
}

/// Gives every request its id (a valid `X-Request-Id` from the client, else a new one), puts
/// it on the answer and the request's logger, and counts answers by route and status
/// (`purifyd_http_requests_total`) and times them (`purifyd_http_request_duration_seconds`).
struct RequestAccounting<Context: RequestContext>: RouterMiddleware {
    let metrics: any MetricsFactory
    let logger: Logger
    static var requestIDField: HTTPField.Name { HTTPField.Name("X-Request-Id")! }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        var context = context
        let requestID = request.headers[Self.requestIDField].flatMap(Self.validRequestID) ?? "\(RequestID())"
        context.logger[metadataKey: "request_id"] = "\(requestID)"
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as HTTPError {
            response = APIRoutes.error(error.status, "http", error.body ?? error.status.reasonPhrase)
        }
        response.headers[Self.requestIDField] = requestID
        let route = Self.route(of: request.uri.path)
        Counter(label: "purifyd_http_requests_total", dimensions: [("route", route), ("status", "\(response.status.code)")],
                factory: metrics).increment()
        Timer(label: "purifyd_http_request_duration_seconds", dimensions: [("route", route)], factory: metrics)
            .recordNanoseconds(Self.nanoseconds(started.duration(to: .now)))
        return response
    }

    /// The route's path for a known route, `other` for the rest (labels stay few).
    static func route(of path: String) -> String {
        ["/v1/purify", "/v1/bundles", "/metrics", "/healthz", "/readyz"].contains(path) ? path : "other"
    }

    /// `value` if it is 1 to 128 characters of `A–Z a–z 0–9 . _ : -`.
    static func validRequestID(_ value: String) -> String? {
        guard (1...128).contains(value.utf8.count), value.utf8.allSatisfy({ byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "-"):
                true
            default: false
            }
        }) else { return nil }
        return value
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }
}
