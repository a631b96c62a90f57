internal import CPurifySystem
internal import Foundation
public import PurifyImage
public import PurifyPipeline
internal import PurifySystem

/// Makes one inbox's pipeline results durable through its ``InboxSpool``: a purified image and
/// its report with ``InboxSpool/commit(_:output:outputExtension:report:)`` (temporary files,
/// fsync, rename, the report last), a failure with ``InboxSpool/fail(_:code:message:details:)``
/// (the input to `failed/`, the pipeline's report inside its error report).
///
/// Files are registered with ``register(_:from:)`` when they are handed to the pipeline, under
/// their claimed path (the request's `inputPath`). The pipeline calls
/// ``commitImage(_:format:for:)`` and then ``commitReport(_:report:for:)`` on one of its I/O
/// threads, which may block on fsync.
public final class SpoolCommitter: ResultCommitter {
    private struct Entry {
        let file: ClaimedFile
        let spool: InboxSpool
        var image: (bytes: [UInt8], format: ImageFormat)?
    }

    /// Registered files by claimed path.
    private let entries = Locked<[String: Entry]>([:])
    /// Claimed paths whose commit failed on a write: their spool holds them for a retry.
    private let stalled = Locked<Set<String>>([])

    public init() {}

    /// Registers `file` of `spool` and returns the request to submit for it.
    public func register(_ file: ClaimedFile, from spool: InboxSpool) -> PurificationRequest {
        entries.withLock { $0[file.path] = Entry(file: file, spool: spool) }
        return PurificationRequest(inputPath: file.path, name: file.originalName)
    }

    /// Forgets the file of `request` without finishing it and returns it, or nil when no such
    /// file is registered (it was committed or failed already).
    public func unregister(_ request: PurificationRequest) -> (file: ClaimedFile, spool: InboxSpool)? {
        entries.withLock { $0.removeValue(forKey: request.inputPath) }.map { ($0.file, $0.spool) }
    }

    /// Holds the encoded image until its report arrives: the spool writes both in one commit.
    /// Returns the path the image gets unless that name is taken (then the spool picks
    /// `<stem>-<n>.<ext>`, and the committed report gives the final path).
    public func commitImage(_ encoded: [UInt8], format: ImageFormat, for request: PurificationRequest) throws -> String {
        let spool = try entries.withLock { entries throws(SpoolCommitterError) -> InboxSpool in
            guard var entry = entries.removeValue(forKey: request.inputPath) else { throw SpoolCommitterError(request: request) }
            entry.image = (encoded, format)
            entries[request.inputPath] = entry
            return entry.spool
        }
        return FilePaths.join(spool.configuration.outbox, Self.outputName(for: request.name, format: format))
    }

    /// Commits the held image with this report, or fails the input with it (a failure report,
    /// or a report that arrives without an image).
    public func commitReport(_ json: [UInt8], report: PurificationReport, for request: PurificationRequest) throws -> String {
        guard let entry = entries.withLock({ $0.removeValue(forKey: request.inputPath) }) else {
            throw SpoolCommitterError(request: request)
        }
        // A large image's buffers, freed by now, stay in the malloc heap of whichever thread
        // held them: over a burst of photos every I/O thread's heap grows to an image or more.
        defer {
            if let width = report.input.width, let height = report.input.height, width * height >= Self.trimmingPixels {
                CPurify_trimMallocHeaps()
            }
        }
        do {
            return try finish(entry, json: json, report: report)
        } catch {
            if InboxSpool.isWriteFailure(error) { _ = stalled.withLock { $0.insert(request.inputPath) } }
            throw error
        }
    }

    /// Inputs this large (4 MP) return freed memory to the system once committed.
    static let trimmingPixels = 1 << 22

    /// Whether the request's commit failed on a write, so that its spool holds the file for a
    /// retry (and has logged the episode); forgets it.
    public func wasStalled(_ request: PurificationRequest) -> Bool {
        stalled.withLock { $0.remove(request.inputPath) != nil }
    }

    private func finish(_ entry: Entry, json: [UInt8], report: PurificationReport) throws -> String {
        if report.status == .purified, let image = entry.image {
            let committed = try entry.spool.commit(entry.file, output: image.bytes, outputExtension: image.format.fileExtension) { outputName in
                var final = report
                final.output?.path = FilePaths.join(entry.spool.configuration.outbox, outputName)
                return try final.encoded()
            }
            return committed.reportPath
        }
        let code = report.error?.code ?? "incomplete"
        let stage = report.error?.stage.rawValue ?? PurificationReport.Stage.commit.rawValue
        let message = report.error?.message ?? "the pipeline reported success without an image"
        let failed = try entry.spool.fail(entry.file, code: code, message: "\(stage): \(message)",
                                          details: FailureDetails(stage: stage, report: report))
        return failed.reportPath
    }

    /// `<stem>.<format's extension>`, as ``InboxSpool/commit(_:output:outputExtension:report:)`` names outputs.
    static func outputName(for name: String, format: ImageFormat) -> String {
        "\(FilePaths.splitExtension(name).stem).\(format.fileExtension)"
    }
}

/// The pipeline committed a request the ``SpoolCommitter`` does not hold: a bug, reported in
/// the result rather than crashing the daemon.
struct SpoolCommitterError: Error, CustomStringConvertible {
    let request: PurificationRequest

    var description: String { "\(request.inputPath) (\(request.name)) was never registered with the spool committer" }
}
