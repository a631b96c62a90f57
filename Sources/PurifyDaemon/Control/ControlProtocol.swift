internal import Foundation

/// The commands the control socket understands.
public enum ControlCommand: String, Sendable, CaseIterable {
    /// State, uptime, per-inbox queue depth and counters, pipeline status.
    case status
    /// Latency percentiles per stage and throughput (from the pipeline).
    case stats
    /// Counters in the Prometheus text exposition format.
    case metrics
    /// Stop claiming new files (all inboxes, or `args.inbox`).
    case pause
    /// Claim again after `pause`.
    case resume
    /// Stop claiming, finish what is in flight; with `args.exit = true`, then exit.
    case drain
    /// Reload the configuration and models; the old ones stay if the new ones fail.
    case reload
    /// List the inboxes again (all, or `args.inbox`).
    case rescan
    /// The daemon's version.
    case version
}

/// One request line: `{"id":1,"cmd":"status","args":{...}}` (`id` any JSON value, echoed back;
/// `args` optional).
public struct ControlRequest: Sendable, Equatable {
    /// Echoed in the reply so clients can match replies to requests.
    public var id: JSONValue
    public var command: ControlCommand
    /// The request's `args` object (empty when absent).
    public var arguments: [String: JSONValue]

    public init(id: JSONValue, command: ControlCommand, arguments: [String: JSONValue] = [:]) {
        self.id = id
        self.command = command
        self.arguments = arguments
    }

    /// A line that is not a valid request: the error to reply with, and the request's `id` when
    /// one could be read.
    struct Rejection: Error {
        var id: JSONValue
        var error: ControlError
    }

    /// Parses one line (without its newline).
    static func parse(_ line: some Collection<UInt8>) -> Result<ControlRequest, Rejection> {
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(line)), case .object(let members) = value else {
            return .failure(Rejection(id: .null, error: .malformed("the request is not a JSON object on one line")))
        }
        let id = members["id"] ?? .null
        guard case .string(let name)? = members["cmd"] else {
            return .failure(Rejection(id: id, error: .malformed("\"cmd\" must be a string")))
        }
        guard let command = ControlCommand(rawValue: name) else {
            let known = ControlCommand.allCases.map(\.rawValue).joined(separator: ", ")
            return .failure(Rejection(id: id, error: ControlError(code: ControlError.unknownCommand, message: "unknown command \"\(name)\"; known: \(known)")))
        }
        var arguments: [String: JSONValue] = [:]
        switch members["args"] {
        case nil, .null?: break
        case .object(let object)?: arguments = object
        default: return .failure(Rejection(id: id, error: .malformed("\"args\" must be an object")))
        }
        for key in members.keys where !["id", "cmd", "args"].contains(key) {
            return .failure(Rejection(id: id, error: .malformed("unknown request field \"\(key)\"")))
        }
        return .success(ControlRequest(id: id, command: command, arguments: arguments))
    }
}

/// An error reply: `{"id":…,"ok":false,"error":{"code":…,"message":…}}`.
public struct ControlError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A stable, machine-readable code (see the static constants).
    public var code: String
    /// A description for humans.
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    public static let malformedRequest = "malformed_request"
    public static let unknownCommand = "unknown_command"
    public static let lineTooLong = "line_too_long"
    public static let readTimeout = "read_timeout"
    public static let permissionDenied = "permission_denied"
    public static let busy = "busy"
    public static let invalidArgument = "invalid_argument"
    public static let unsupported = "unsupported"
    public static let failed = "failed"

    static func malformed(_ message: String) -> ControlError {
        ControlError(code: malformedRequest, message: message)
    }

    public var description: String { "\(code): \(message)" }
}

/// Answers control requests; the daemon plugs its state in through one of these.
public protocol ControlCommandHandler: Sendable {
    /// Returns the reply's fields (besides `id` and `ok`, which the server adds), or throws the
    /// error to reply with.
    func handle(_ request: ControlRequest) async throws(ControlError) -> [String: JSONValue]
}

enum ControlReply {
    static func success(id: JSONValue, fields: [String: JSONValue]) -> String {
        var members = fields
        members["id"] = id
        members["ok"] = .bool(true)
        return JSONValue.object(members).serialized(leadingKeys: ["id", "ok"]) + "\n"
    }

    static func failure(id: JSONValue, error: ControlError) -> String {
        let members: [String: JSONValue] = [
            "id": id,
            "ok": .bool(false),
            "error": .object(["code": .string(error.code), "message": .string(error.message)]),
        ]
        return JSONValue.object(members).serialized(leadingKeys: ["id", "ok"]) + "\n"
    }
}
