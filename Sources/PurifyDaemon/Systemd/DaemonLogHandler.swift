#if canImport(Glibc)
internal import Glibc
#endif
// With SwiftNIO in the module graph the compiler attributes Glibc's `struct stat` to Dispatch's
// C module, which member-import visibility then wants imported.
internal import CDispatch
internal import Foundation
public import Logging
internal import Synchronization

/// The minimum level of every logger that shares it: a change takes effect in all of them at
/// once (a reload applies `log_level` through it).
public final class LogThreshold: Sendable {
    private let index: Atomic<Int>

    public init(_ level: Logger.Level) {
        index = Atomic(Self.index(of: level))
    }

    /// The level messages must reach to be written.
    public var level: Logger.Level {
        get { Logger.Level.allCases[index.load(ordering: .relaxed)] }
        set { index.store(Self.index(of: newValue), ordering: .relaxed) }
    }

    private static func index(of level: Logger.Level) -> Int {
        Logger.Level.allCases.firstIndex(of: level)!
    }
}

/// A swift-log handler that writes one line per message to standard error, formatted for
/// where standard error goes.
///
/// - ``Format/journal`` (standard error is the journal's stream, see ``Format/detect(environment:)``):
///   `<N>message key=value …` with N the syslog priority, which journald turns into PRIORITY=,
///   and no timestamp (the journal keeps its own).
/// - ``Format/terminal``: `2026-11-25T11:40:00Z warning purifyd: message key=value …`.
public struct DaemonLogHandler: LogHandler {
    public enum Format: Sendable, Equatable {
        case journal
        case terminal

        /// `.journal` when `$JOURNAL_STREAM` names the device and inode of this process's
        /// standard error (as systemd sets it for `StandardError=journal`), `.terminal` otherwise.
        public static func detect(environment: [String: String]) -> Format {
            guard let stream = environment["JOURNAL_STREAM"] else { return .terminal }
            let parts = stream.split(separator: ":")
            var status = stat()
            guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]), fstat(2, &status) == 0 else {
                return .terminal
            }
            return UInt64(status.st_dev) == device && UInt64(status.st_ino) == inode ? .journal : .terminal
        }
    }

    /// The shared threshold's level: setting it changes every logger that shares the threshold.
    public var logLevel: Logger.Level {
        get { threshold.level }
        set { threshold.level = newValue }
    }
    public var metadata: Logger.Metadata = [:]
    public let label: String
    public let format: Format
    /// The minimum level, shared with the other loggers made by the same bootstrap.
    public let threshold: LogThreshold
    private let write: @Sendable (String) -> Void

    /// - Parameter write: Receives each formatted line, newline included (default: one
    ///   write(2) to standard error, so lines from different threads never interleave).
    public init(label: String, format: Format, threshold: LogThreshold = LogThreshold(.info),
                write: (@Sendable (String) -> Void)? = nil) {
        self.label = label
        self.format = format
        self.threshold = threshold
        self.write = write ?? { line in
            var bytes = Array(line.utf8)
            _ = Glibc.write(2, &bytes, bytes.count)
        }
    }

    /// Bootstraps swift-log with this handler, the format detected from `environment`; every
    /// logger shares the returned threshold.
    @discardableResult
    public static func bootstrap(logLevel: Logger.Level, environment: [String: String]) -> LogThreshold {
        let format = Format.detect(environment: environment)
        let threshold = LogThreshold(logLevel)
        LoggingSystem.bootstrap { label in DaemonLogHandler(label: label, format: format, threshold: threshold) }
        return threshold
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let fields = merged.keys.sorted().map { key in "\(key)=\(Self.quoted("\(merged[key]!)"))" }
        let text = ([Self.oneLine("\(event.message)")] + fields).joined(separator: " ")
        switch format {
        case .journal:
            write("<\(Self.syslogPriority(event.level))>\(text)\n")
        case .terminal:
            write("\(Date.now.ISO8601Format()) \(event.level) \(label): \(text)\n")
        }
    }

    /// The syslog priority journald reads from a `<N>` prefix.
    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    private static func oneLine(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }

    private static func quoted(_ value: String) -> String {
        let single = oneLine(value)
        guard single.isEmpty || single.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) else { return single }
        return "\"" + single.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
