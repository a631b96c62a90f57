public import PurifyHTTP
public import PurifyImage
public import PurifyPipeline
internal import PurifySystem

/// Hands the results of HTTP API requests back to the callers waiting for them: the
/// committer side of a request that came in memory and goes out in a response, never touching
/// an inbox's spool. One instance serves every pipeline of the daemon, across reloads.
///
/// A request is ``register(image:name:requestID:)``ed, submitted to a pipeline, and its
/// caller ``wait(for:)``s. The pipeline hands the encoded image to ``commitImage(_:format:for:)``
/// and the report to ``commitReport(_:report:for:)`` on one of its I/O threads, which resumes
/// the caller. A caller that stops waiting (timeout, disconnect) leaves its entry to be
/// dropped when the pipeline is done with it.
public final class APIResponses: ResultCommitter {
    private enum Waiter {
        case pending
        case waiting(CheckedContinuation<PurifiedImage?, Never>)
        case finished(PurifiedImage)
        case abandoned
    }

    private struct Entry {
        var waiter: Waiter = .pending
        var image: [UInt8]?
    }

    /// What API requests' input paths start with; files from an inbox have absolute paths.
    public static let pathPrefix = "http:"

    private let entries = Locked<[String: Entry]>([:])

    public init() {}

    /// Whether `request` is an API request (and so committed here).
    public static func owns(_ request: PurificationRequest) -> Bool {
        request.inputPath.hasPrefix(pathPrefix)
    }

    /// Registers an API request and returns what to submit: `image` as the request's contents,
    /// under the input path `http:<request id>` (with `-2`, `-3`, … when a client repeats an id
    /// still in progress), which the report gives as `input.path`.
    public func register(image: [UInt8], name: String, requestID: String) -> PurificationRequest {
        let path = entries.withLock { entries in
            var path = Self.pathPrefix + requestID
            var suffix = 2
            while entries[path] != nil {
                path = Self.pathPrefix + requestID + "-\(suffix)"
                suffix += 1
            }
            entries[path] = Entry()
            return path
        }
        return PurificationRequest(inputPath: path, name: name, contents: image)
    }

    /// Waits for the result of `request`; nil when the calling task is cancelled first.
    public func wait(for request: PurificationRequest) async -> PurifiedImage? {
        let key = request.inputPath
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<PurifiedImage?, Never>) in
                let ready: PurifiedImage?? = entries.withLock { entries in
                    guard let entry = entries[key] else { return .some(nil) }
                    switch entry.waiter {
                    case .finished(let result):
                        entries[key] = nil
                        return .some(result)
                    case .abandoned:
                        return .some(nil)
                    case .pending, .waiting:
                        entries[key]?.waiter = .waiting(continuation)
                        return .none
                    }
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            abandon(request)
        }
    }

    /// Gives up on `request`: a waiting caller gets nil, and the pipeline's result, if one is
    /// still to come, is dropped.
    public func abandon(_ request: PurificationRequest) {
        let continuation: CheckedContinuation<PurifiedImage?, Never>? = entries.withLock { entries in
            guard let entry = entries[request.inputPath] else { return nil }
            switch entry.waiter {
            case .waiting(let continuation):
                entries[request.inputPath]?.waiter = .abandoned
                return continuation
            case .finished:
                entries[request.inputPath] = nil
                return nil
            case .pending, .abandoned:
                entries[request.inputPath]?.waiter = .abandoned
                return nil
            }
        }
        continuation?.resume(returning: nil)
    }

    /// Forgets a request the pipeline never took.
    public func unregister(_ request: PurificationRequest) {
        abandon(request)
        _ = entries.withLock { $0.removeValue(forKey: request.inputPath) }
    }

    /// Holds the encoded image until the report arrives.
    public func commitImage(_ encoded: [UInt8], format: ImageFormat, for request: PurificationRequest) throws -> String {
        entries.withLock { $0[request.inputPath]?.image = encoded }
        return request.inputPath
    }

    /// Hands the report, and the image held for it, to the caller.
    public func commitReport(_ json: [UInt8], report: PurificationReport, for request: PurificationRequest) throws -> String {
        finish(request, report: report)
        return request.inputPath
    }

    /// Ends `request` with `report`: resumes its caller, or keeps the result for a caller not
    /// yet waiting, or drops it when the caller gave up.
    public func finish(_ request: PurificationRequest, report: PurificationReport) {
        let continuation: (CheckedContinuation<PurifiedImage?, Never>, PurifiedImage)? = entries.withLock { entries in
            guard let entry = entries[request.inputPath] else { return nil }
            let result = PurifiedImage(report: report, image: report.status == .purified ? entry.image : nil)
            switch entry.waiter {
            case .waiting(let continuation):
                entries[request.inputPath] = nil
                return (continuation, result)
            case .pending:
                entries[request.inputPath] = Entry(waiter: .finished(result))
                return nil
            case .finished, .abandoned:
                entries[request.inputPath] = nil
                return nil
            }
        }
        if let (continuation, result) = continuation { continuation.resume(returning: result) }
    }

    /// Requests registered and not yet answered or dropped.
    public var pending: Int { entries.withLock { $0.count } }
}

/// A pipeline's committer: an API request's result goes back to its caller (``APIResponses``),
/// an inbox file's through the inbox's spool (``SpoolCommitter``).
struct RequestRouter: ResultCommitter {
    let spool: SpoolCommitter
    let responses: APIResponses

    func commitImage(_ encoded: [UInt8], format: ImageFormat, for request: PurificationRequest) throws -> String {
        APIResponses.owns(request)
            ? try responses.commitImage(encoded, format: format, for: request)
            : try spool.commitImage(encoded, format: format, for: request)
    }

    func commitReport(_ json: [UInt8], report: PurificationReport, for request: PurificationRequest) throws -> String {
        APIResponses.owns(request)
            ? try responses.commitReport(json, report: report, for: request)
            : try spool.commitReport(json, report: report, for: request)
    }
}
