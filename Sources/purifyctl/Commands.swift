internal import ArgumentParser
#if canImport(Glibc)
internal import Glibc
#endif
internal import PurifyControl

/// A subcommand that sends one control command and prints the reply.
protocol ControlSubcommand: ParsableCommand {
    var connection: ConnectionOptions { get }
    /// What is sent.
    static var command: ControlCommand { get }
    /// How long to wait when `--timeout` is not given.
    static var defaultTimeout: Duration { get }
    /// The request's `args`.
    var arguments: [String: JSONValue] { get }
    /// The success reply's fields for people.
    func render(_ fields: [String: JSONValue]) throws(ExitCode) -> String
}

extension ControlSubcommand {
    static var defaultTimeout: Duration { .seconds(10) }
    var arguments: [String: JSONValue] { [:] }
    func render(_ fields: [String: JSONValue]) throws(ExitCode) -> String { HumanOutput.keyValueLines(fields) }

    /// Sends the command; prints the reply (`--json`: as the daemon sent it, errors included)
    /// and exits with the status the outcome maps to.
    func run() throws {
        let client = connection.client(defaultTimeout: Self.defaultTimeout)
        let reply: ControlReply
        do {
            reply = try client.exchange(ControlRequest(id: 1, command: Self.command, arguments: arguments))
        } catch {
            printError(error.message)
            throw ExitStatus.forClientError(error)
        }
        if connection.json { print(reply.json.serialized(leadingKeys: ["id", "ok"])) }
        switch reply.result {
        case .success(let fields):
            if !connection.json { print(try render(fields), terminator: "") }
        case .failure(let error):
            if !connection.json { printError("\(Self.command.rawValue): \(error.message) (\(error.code))") }
            throw ExitStatus.forDaemonError(error)
        }
    }
}

/// Writes `purifyctl: message` to standard error.
func printError(_ message: String) {
    let bytes = Array("purifyctl: \(message)\n".utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress! + offset, $0.count - offset) }
        if written < 0, errno == EINTR { continue }
        if written <= 0 { return }
        offset += written
    }
}

/// The inbox a command acts on, by its name in the configuration; every inbox when absent.
struct InboxSelection: ParsableArguments {
    @Argument(help: ArgumentHelp("The inbox to act on (default: every inbox).", valueName: "inbox"))
    var inbox: String?

    var arguments: [String: JSONValue] { inbox.map { ["inbox": .string($0)] } ?? [:] }
}

/// A subcommand whose request names one inbox, or none for every inbox.
protocol InboxSubcommand: ControlSubcommand {
    var selection: InboxSelection { get }
}

extension InboxSubcommand {
    var arguments: [String: JSONValue] { selection.arguments }
}

struct Status: ControlSubcommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the daemon's state, uptime, models and each inbox's queue and counters."
    )
    static let command = ControlCommand.status
    @OptionGroup var connection: ConnectionOptions

    func render(_ fields: [String: JSONValue]) -> String { HumanOutput.status(fields) }
}

struct Stats: ControlSubcommand {
    static let configuration = CommandConfiguration(abstract: "Show latency percentiles per pipeline stage and throughput.")
    static let command = ControlCommand.stats
    @OptionGroup var connection: ConnectionOptions
}

struct Metrics: ControlSubcommand {
    static let configuration = CommandConfiguration(abstract: "Print the daemon's counters in the Prometheus text format.")
    static let command = ControlCommand.metrics
    @OptionGroup var connection: ConnectionOptions

    func render(_ fields: [String: JSONValue]) throws(ExitCode) -> String {
        guard case .string(let text)? = fields["text"] else {
            printError("the metrics reply has no \"text\"")
            throw ExitStatus.software
        }
        return text
    }
}

struct Pause: InboxSubcommand {
    static let configuration = CommandConfiguration(abstract: "Stop claiming new files; they wait in the inbox.")
    static let command = ControlCommand.pause
    @OptionGroup var selection: InboxSelection
    @OptionGroup var connection: ConnectionOptions
}

struct Resume: InboxSubcommand {
    static let configuration = CommandConfiguration(abstract: "Claim files again after pause.")
    static let command = ControlCommand.resume
    @OptionGroup var selection: InboxSelection
    @OptionGroup var connection: ConnectionOptions
}

struct Drain: ControlSubcommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop claiming and wait until the files in flight are finished.",
        discussion: "Replies once drained, so it waits up to 600 seconds unless --timeout says otherwise."
    )
    static let command = ControlCommand.drain
    static let defaultTimeout = Duration.seconds(600)
    @OptionGroup var selection: InboxSelection
    @Flag(name: .customLong("exit"), help: "Then shut the daemon down.")
    var exitWhenDrained = false
    @OptionGroup var connection: ConnectionOptions

    var arguments: [String: JSONValue] {
        var arguments = selection.arguments
        if exitWhenDrained { arguments["exit"] = true }
        return arguments
    }
}

struct Reload: ControlSubcommand {
    static let configuration = CommandConfiguration(
        abstract: "Reload the configuration and models; the running ones stay if the new ones fail."
    )
    static let command = ControlCommand.reload
    @OptionGroup var connection: ConnectionOptions
}

struct Rescan: InboxSubcommand {
    static let configuration = CommandConfiguration(abstract: "List the inbox folders again and queue what is waiting there.")
    static let command = ControlCommand.rescan
    @OptionGroup var selection: InboxSelection
    @OptionGroup var connection: ConnectionOptions
}

struct Version: ControlSubcommand {
    static let configuration = CommandConfiguration(abstract: "Show the running daemon's version.")
    static let command = ControlCommand.version
    @OptionGroup var connection: ConnectionOptions
}
