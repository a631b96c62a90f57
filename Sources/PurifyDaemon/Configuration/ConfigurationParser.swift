internal import Foundation
internal import Logging
internal import PurifyEngine
internal import PurifyHTTP
internal import PurifyPipeline
internal import TOMLKit
internal import PurifySystem

/// A configuration file that cannot be used: the key it concerns (a dotted path such as
/// `inbox[0].batch.max_delay_ms`, empty for the file as a whole) and what is wrong with it.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The dotted key path, e.g. `inbox[1].limits.max_side`; empty when the error is not about one key.
    public var keyPath: String
    public var message: String

    public init(keyPath: String, message: String) {
        self.keyPath = keyPath
        self.message = message
    }

    public var description: String {
        keyPath.isEmpty ? message : "\(keyPath): \(message)"
    }
}

extension DaemonConfiguration {
    /// Reads and parses the configuration file at `path`; relative paths inside it are resolved
    /// against the file's directory.
    public static func load(from path: String) throws(ConfigurationError) -> DaemonConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(keyPath: "", message: "cannot read \(path): \(error.localizedDescription)")
        }
        let absolute = FilePaths.absolute(path, relativeTo: FileManager.default.currentDirectoryPath)
        return try DaemonConfiguration(toml: text, baseDirectory: FilePaths.directory(of: absolute))
    }

    /// Parses a configuration from TOML text.
    ///
    /// Every key is checked: an unknown key, a value of the wrong type or out of range, or a
    /// missing required key throws a ``ConfigurationError`` that names the key path.
    /// - Parameters:
    ///   - toml: The file's contents.
    ///   - baseDirectory: The directory relative paths in the file are resolved against.
    public init(toml: String, baseDirectory: String) throws(ConfigurationError) {
        if let problem = TOMLText.forbiddenCharacter(in: toml) {
            throw ConfigurationError(keyPath: "", message: "TOML syntax error at \(problem)")
        }
        let root: TOMLTable
        do {
            root = try TOMLTable(string: toml)
        } catch let error as TOMLParseError {
            throw ConfigurationError(
                keyPath: "",
                message: "TOML syntax error at line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)"
            )
        } catch {
            throw ConfigurationError(keyPath: "", message: "TOML syntax error: \(error)")
        }
        self = try ConfigurationParser(baseDirectory: baseDirectory).parse(root)
    }
}

/// Turns a parsed TOML document into a ``DaemonConfiguration``.
private struct ConfigurationParser {
    let baseDirectory: String

    func parse(_ root: TOMLTable) throws(ConfigurationError) -> DaemonConfiguration {
        let table = TableReader(root, keyPath: "")
        let stateDirectory = try table.path("state_directory", base: baseDirectory) ?? DaemonConfiguration.Defaults.stateDirectory
        let controlSocket = try table.path("control_socket", base: baseDirectory) ?? DaemonConfiguration.Defaults.controlSocketPath
        let allowedUIDs = try table.idList("allowed_uids") ?? []
        let allowedGIDs = try table.idList("allowed_gids") ?? []
        let drainSeconds = try table.int("drain_deadline_s", in: 1...3600)
        let logLevel = try table.logLevel("log_level") ?? .info
        let engine = try parseEngine(table.subtable("engine"))
        var http: APIConfiguration?
        if let httpTable = try table.subtable("http") { http = try parseHTTP(httpTable) }
        guard let inboxTables = try table.arrayOfTables("inbox"), !inboxTables.isEmpty else {
            throw ConfigurationError(keyPath: "inbox", message: "at least one [[inbox]] table is required")
        }
        try table.rejectUnknownKeys()

        var inboxes: [InboxConfiguration] = []
        for (index, inboxTable) in inboxTables.enumerated() {
            let reader = TableReader(inboxTable, keyPath: "inbox[\(index)]")
            inboxes.append(try parseInbox(reader, stateDirectory: stateDirectory))
        }
        try checkDistinct(inboxes)

        return DaemonConfiguration(
            stateDirectory: stateDirectory,
            controlSocketPath: controlSocket,
            allowedUIDs: allowedUIDs,
            allowedGIDs: allowedGIDs,
            drainDeadline: drainSeconds.map { .seconds($0) } ?? DaemonConfiguration.Defaults.drainDeadline,
            logLevel: logLevel,
            engine: engine,
            inboxes: inboxes,
            http: http
        )
    }

    private func parseHTTP(_ table: TableReader) throws(ConfigurationError) -> APIConfiguration {
        var http = APIConfiguration()
        if let listen = try table.string("listen") {
            guard let listener = Self.listener(listen) else {
                throw table.error("listen", "must be \"host:port\" (\"127.0.0.1:8080\", \"[::1]:8080\") or \"systemd\" (got \"\(listen)\")")
            }
            http.listener = listener
        }
        http.maxBodyBytes = try table.int("max_body_bytes", in: 1...(1 << 30)) ?? http.maxBodyBytes
        http.requestTimeout = try table.int("request_timeout_s", in: 1...3600).map { .seconds($0) } ?? http.requestTimeout
        http.maxInFlight = try table.int("max_in_flight", in: 1...65536) ?? http.maxInFlight
        http.retryAfterSeconds = try table.int("retry_after_s", in: 1...3600) ?? http.retryAfterSeconds
        if let tokenFile = try table.path("token_file", base: baseDirectory) {
            http.tokens = try Self.tokens(in: tokenFile, table: table)
        }
        try table.rejectUnknownKeys()
        return http
    }

    /// `host:port`, `[v6 address]:port` or `systemd`.
    static func listener(_ text: String) -> APIConfiguration.Listener? {
        if text == "systemd" { return .systemd }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (0...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !host.contains(where: { $0 == "[" || $0 == "]" || $0 == " " }) else { return nil }
        return .address(host: host, port: port)
    }

    /// The bearer tokens in `path`: one a line, blank lines and `#` comments skipped, each 16
    /// to 256 printable ASCII characters; the file must not be readable by others.
    static func tokens(in path: String, table: TableReader) throws(ConfigurationError) -> [String] {
        // A Kubernetes Secret's file is a symbolic link: the mode that counts is its target's.
        let target = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: target),
              let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw table.error("token_file", "cannot read \(path)")
        }
        if let permissions = attributes[.posixPermissions] as? Int, permissions & 0o007 != 0 {
            throw table.error("token_file", "\(path) must not be accessible to others (mode \(String(permissions, radix: 8)); chmod 640)")
        }
        var tokens: [String] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let token = line.trimmingCharacters(in: .whitespaces)
            if token.isEmpty || token.hasPrefix("#") { continue }
            guard (16...256).contains(token.utf8.count), token.utf8.allSatisfy({ (0x21...0x7e).contains($0) }) else {
                throw table.error("token_file", "\(path) line \(index + 1): a token is 16 to 256 printable ASCII characters without spaces")
            }
            tokens.append(token)
        }
        guard !tokens.isEmpty else { throw table.error("token_file", "\(path) holds no token") }
        return tokens
    }

    private func parseEngine(_ table: TableReader?) throws(ConfigurationError) -> EngineConfiguration {
        var engine = EngineConfiguration()
        guard let table else { return engine }
        engine.threads = try table.int("threads", in: 1...1024)
        engine.planCache.plans = try table.int("plan_cache_plans", in: 1...4096) ?? engine.planCache.plans
        if let mebibytes = try table.int("plan_cache_mib", in: 0...(1 << 20)) {
            engine.planCache.arenaBytes = mebibytes << 20
        }
        try table.rejectUnknownKeys()
        return engine
    }

    private func parseInbox(_ table: TableReader, stateDirectory: String) throws(ConfigurationError) -> InboxConfiguration {
        guard let path = try table.path("path", base: baseDirectory) else {
            throw table.error("path", "is required")
        }
        guard let outbox = try table.path("outbox", base: baseDirectory) else {
            throw table.error("outbox", "is required")
        }
        guard let bundle = try table.path("bundle", base: baseDirectory) else {
            throw table.error("bundle", "is required")
        }
        let name = try table.string("name") ?? FilePaths.lastComponent(of: path)
        guard Self.isValidName(name) else {
            throw table.error("name", "must be 1–64 characters from A–Z a–z 0–9 . _ - and not start with a dot (got \"\(name)\")")
        }
        var outputFormat = DaemonConfiguration.Defaults.outputFormat
        if let format = try table.string("output_format") {
            guard let parsed = OutputFormat(rawValue: format) else {
                throw table.error("output_format", "must be one of same, png, jpeg (got \"\(format)\")")
            }
            outputFormat = parsed
        }
        let jpegQuality = try table.int("jpeg_quality", in: 1...100) ?? DaemonConfiguration.Defaults.jpegQuality
        let classifier = try table.bool("classifier") ?? DaemonConfiguration.Defaults.classifierEnabled
        let queueCapacity = try table.int("queue_capacity", in: 1...1_000_000) ?? DaemonConfiguration.Defaults.queueCapacity

        let archiveDirectory = try table.path("archive_dir", base: baseDirectory)
        let afterSuccess: AfterSuccessPolicy
        switch try table.string("after_success") ?? "delete" {
        case "delete":
            if archiveDirectory != nil {
                throw table.error("archive_dir", "is only used with after_success = \"archive\"")
            }
            afterSuccess = .delete
        case "archive":
            guard let archiveDirectory else {
                throw table.error("archive_dir", "is required when after_success = \"archive\"")
            }
            afterSuccess = .archive(directory: archiveDirectory)
        case let other:
            throw table.error("after_success", "must be \"delete\" or \"archive\" (got \"\(other)\")")
        }
        let rescanSeconds = try table.int("rescan_interval_s", in: 1...86_400)
        let spoolDirectory = try table.path("spool_dir", base: baseDirectory) ?? FilePaths.join(stateDirectory, name)
        let failedDirectory = try table.path("failed_dir", base: baseDirectory)

        var limits = DaemonConfiguration.Defaults.limits
        if let limitsTable = try table.subtable("limits") {
            limits.maxBytes = try limitsTable.int("max_bytes", in: 1...(1 << 40)) ?? limits.maxBytes
            limits.maxPixels = try limitsTable.int("max_pixels", in: 1...(1 << 40)) ?? limits.maxPixels
            limits.maxSide = try limitsTable.int("max_side", in: 1...(1 << 20)) ?? limits.maxSide
            try limitsTable.rejectUnknownKeys()
        }
        var inputPolicy = DaemonConfiguration.Defaults.inputPolicy
        if let policy = try table.string("input_policy") {
            guard let parsed = InputPolicy(rawValue: policy) else {
                throw table.error("input_policy", "must be one of reject, resize, tile (got \"\(policy)\")")
            }
            inputPolicy = parsed
        }
        var memory = DaemonConfiguration.Defaults.memory
        if let memoryTable = try table.subtable("memory") {
            memory.tileSide = try memoryTable.int("tile_side", in: 8...8192) ?? memory.tileSide
            memory.batchPixels = try memoryTable.int("batch_pixels", in: 1...(1 << 30)) ?? memory.batchPixels
            memory.pixelsInFlight = try memoryTable.int("pixels_in_flight", in: 1...(1 << 40)) ?? memory.pixelsInFlight
            try memoryTable.rejectUnknownKeys()
        }
        var batching = DaemonConfiguration.Defaults.batching
        if let batchTable = try table.subtable("batch") {
            batching.maxBatch = try batchTable.int("max_batch", in: 1...4096) ?? batching.maxBatch
            if let delay = try batchTable.int("max_delay_ms", in: 0...60_000) {
                batching.maxDelay = .milliseconds(delay)
            }
            try batchTable.rejectUnknownKeys()
        }
        try table.rejectUnknownKeys()

        if path == outbox {
            throw table.error("outbox", "must differ from path (\(path))")
        }
        return InboxConfiguration(
            name: name,
            path: path,
            outbox: outbox,
            bundlePath: bundle,
            outputFormat: outputFormat,
            jpegQuality: jpegQuality,
            classifierEnabled: classifier,
            limits: limits,
            batching: batching,
            inputPolicy: inputPolicy,
            memory: memory,
            queueCapacity: queueCapacity,
            afterSuccess: afterSuccess,
            rescanInterval: rescanSeconds.map { .seconds($0) },
            spoolDirectory: spoolDirectory,
            failedDirectory: failedDirectory
        )
    }

    private func checkDistinct(_ inboxes: [InboxConfiguration]) throws(ConfigurationError) {
        var names: [String: Int] = [:]
        var paths: [String: Int] = [:]
        for (index, inbox) in inboxes.enumerated() {
            if let first = names.updateValue(index, forKey: inbox.name) {
                throw ConfigurationError(keyPath: "inbox[\(index)].name", message: "\"\(inbox.name)\" is already the name of inbox[\(first)]")
            }
            if let first = paths.updateValue(index, forKey: inbox.path) {
                throw ConfigurationError(keyPath: "inbox[\(index)].path", message: "\(inbox.path) is already watched by inbox[\(first)]")
            }
        }
        for (index, inbox) in inboxes.enumerated() {
            if let other = paths[inbox.outbox] {
                throw ConfigurationError(keyPath: "inbox[\(index)].outbox", message: "\(inbox.outbox) is the path of inbox[\(other)]")
            }
        }
    }

    private static func isValidName(_ name: String) -> Bool {
        guard (1...64).contains(name.utf8.count), name.first != "." else { return false }
        return name.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                return true
            default:
                return false
            }
        }
    }
}

/// Typed, key-path-aware access to one TOML table that remembers which keys were read, so that
/// the ones nobody asked for can be reported as unknown.
private final class TableReader {
    private let table: TOMLTable
    private let keyPath: String
    private var readKeys: Set<String> = []

    init(_ table: TOMLTable, keyPath: String) {
        self.table = table
        self.keyPath = keyPath
    }

    func error(_ key: String, _ message: String) -> ConfigurationError {
        ConfigurationError(keyPath: fullPath(key), message: message)
    }

    func string(_ key: String) throws(ConfigurationError) -> String? {
        guard let value = try value(key, expected: .string) else { return nil }
        return value.string
    }

    func bool(_ key: String) throws(ConfigurationError) -> Bool? {
        guard let value = try value(key, expected: .bool) else { return nil }
        return value.bool
    }

    func int(_ key: String, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int? {
        guard let value = try value(key, expected: .int), let int = value.int else { return nil }
        guard range.contains(int) else {
            throw error(key, "must be between \(range.lowerBound) and \(range.upperBound) (got \(int))")
        }
        return int
    }

    /// A non-empty path string; a relative one is resolved against `base`.
    func path(_ key: String, base: String) throws(ConfigurationError) -> String? {
        guard let string = try string(key) else { return nil }
        guard !string.isEmpty, !string.utf8.contains(0) else {
            throw error(key, "must be a non-empty path")
        }
        return FilePaths.absolute(string, relativeTo: base)
    }

    func logLevel(_ key: String) throws(ConfigurationError) -> Logger.Level? {
        guard let string = try string(key) else { return nil }
        guard let level = Logger.Level(rawValue: string) else {
            let names = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
            throw error(key, "must be one of \(names) (got \"\(string)\")")
        }
        return level
    }

    /// An array of user or group ids (non-negative integers below 2^32 - 1).
    func idList(_ key: String) throws(ConfigurationError) -> [UInt32]? {
        guard let value = try value(key, expected: .array), let array = value.array else { return nil }
        var ids: [UInt32] = []
        for (index, element) in array.enumerated() {
            guard element.type == .int, let id = element.int, (0..<Int(UInt32.max)).contains(id) else {
                throw error("\(key)[\(index)]", "must be a numeric id between 0 and \(UInt32.max - 1)")
            }
            ids.append(UInt32(id))
        }
        return ids
    }

    func subtable(_ key: String) throws(ConfigurationError) -> TableReader? {
        guard let value = try value(key, expected: .table), let table = value.table else { return nil }
        return TableReader(table, keyPath: fullPath(key))
    }

    /// An array of tables (`[[key]]`).
    func arrayOfTables(_ key: String) throws(ConfigurationError) -> [TOMLTable]? {
        guard let value = try value(key, expected: .array), let array = value.array else { return nil }
        var tables: [TOMLTable] = []
        for (index, element) in array.enumerated() {
            guard let table = element.table else {
                throw error("\(key)[\(index)]", "must be a table ([[\(key)]])")
            }
            tables.append(table)
        }
        return tables
    }

    /// Throws for the first key (in sorted order) that no accessor read.
    func rejectUnknownKeys() throws(ConfigurationError) {
        if let unknown = table.keys.filter({ !readKeys.contains($0) }).sorted().first {
            throw error(unknown, "unknown key")
        }
    }

    private func value(_ key: String, expected: TOMLType) throws(ConfigurationError) -> (any TOMLValueConvertible)? {
        readKeys.insert(key)
        guard let value = table[key] else { return nil }
        guard value.type == expected else {
            throw error(key, "expected \(Self.describe(expected)), found \(Self.describe(value.type))")
        }
        return value
    }

    private func fullPath(_ key: String) -> String {
        keyPath.isEmpty ? key : "\(keyPath).\(key)"
    }

    private static func describe(_ type: TOMLType) -> String {
        switch type {
        case .table: "a table"
        case .array: "an array"
        case .string: "a string"
        case .int: "an integer"
        case .double: "a floating-point number"
        case .bool: "a boolean"
        case .date: "a date"
        case .time: "a time"
        case .dateTime: "a date-time"
        }
    }
}
