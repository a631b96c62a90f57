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
    /// What the daemon is asked to do.
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
    public struct Rejection: Error, Sendable, Equatable {
        /// The request's `id`, or null when none could be read.
        public var id: JSONValue
        /// What to reply.
        public var error: ControlError
    }

    /// The request as one line, newline included; `args` is left out when empty.
    public var line: String {
        var members: [String: JSONValue] = ["id": id, "cmd": .string(command.rawValue)]
        if !arguments.isEmpty { members["args"] = .object(arguments) }
        return JSONValue.object(members).serialized(leadingKeys: ["id", "cmd"]) + "\n"
    }

    /// Parses one line (without its newline).
    public static func parse(_ line: some Collection<UInt8>) -> Result<ControlRequest, Rejection> {
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
public struct ControlError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable, machine-readable code (see the static constants).
    public var code: String
    /// A description for humans.
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    /// The line is not a request: not a JSON object, no string `cmd`, `args` not an object, an
    /// unknown field.
    public static let malformedRequest = "malformed_request"
    /// `cmd` names no ``ControlCommand``.
    public static let unknownCommand = "unknown_command"
    /// The request line is over the server's length limit; the connection is closed.
    public static let lineTooLong = "line_too_long"
    /// No complete request line within the server's read timeout; the connection is closed.
    public static let readTimeout = "read_timeout"
    /// The peer's uid and groups are not among those the configuration allows.
    public static let permissionDenied = "permission_denied"
    /// The server serves its maximum number of connections; try again.
    public static let busy = "busy"
    /// An `args` value is wrong: an inbox the daemon does not have, a non-boolean `exit`.
    public static let invalidArgument = "invalid_argument"
    /// The command needs a part of the daemon that is not running (the image pipeline).
    public static let unsupported = "unsupported"
    /// The command was understood and failed (a reload whose new configuration is broken).
    public static let failed = "failed"

    static func malformed(_ message: String) -> ControlError {
        ControlError(code: malformedRequest, message: message)
    }

    public var description: String { "\(code): \(message)" }
}

/// One reply line: `{"id":…,"ok":true,…fields}` or `{"id":…,"ok":false,"error":{…}}`.
public struct ControlReply: Sendable, Equatable {
    /// The request's `id`, or null when the request could not be read (or was never read: a
    /// refused peer, a busy server).
    public var id: JSONValue
    /// The reply's fields besides `id` and `ok`, or the error it carries.
    public var result: Result<[String: JSONValue], ControlError>

    public init(id: JSONValue, result: Result<[String: JSONValue], ControlError>) {
        self.id = id
        self.result = result
    }

    /// A success reply carrying `fields` (an `id` or `ok` among them is overridden).
    public static func success(id: JSONValue, fields: [String: JSONValue]) -> ControlReply {
        ControlReply(id: id, result: .success(fields))
    }

    /// An error reply.
    public static func failure(id: JSONValue, error: ControlError) -> ControlReply {
        ControlReply(id: id, result: .failure(error))
    }

    /// The whole reply as a JSON object, `id` and `ok` included.
    public var json: JSONValue {
        var members: [String: JSONValue]
        switch result {
        case .success(let fields):
            members = fields
            members["ok"] = .bool(true)
        case .failure(let error):
            members = ["ok": .bool(false), "error": .object(["code": .string(error.code), "message": .string(error.message)])]
        }
        members["id"] = id
        return .object(members)
    }

    /// The reply as one line, leading with `id` and `ok`, newline included.
    public var line: String {
        json.serialized(leadingKeys: ["id", "ok"]) + "\n"
    }

    /// A line that is not a valid reply, and why.
    public struct Malformed: Error, Sendable, Equatable, CustomStringConvertible {
        public var reason: String
        public var description: String { reason }
    }

    /// Parses one line (without its newline).
    public static func parse(_ line: some Collection<UInt8>) -> Result<ControlReply, Malformed> {
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(line)), case .object(var members) = value else {
            return .failure(Malformed(reason: "the reply is not a JSON object on one line"))
        }
        let id = members.removeValue(forKey: "id") ?? .null
        switch members.removeValue(forKey: "ok") {
        case .bool(true)?:
            return .success(.success(id: id, fields: members))
        case .bool(false)?:
            guard case .object(let error)? = members["error"], case .string(let code)? = error["code"] else {
                return .failure(Malformed(reason: "an error reply without an \"error\" object holding a string \"code\""))
            }
            let message: String = if case .string(let message)? = error["message"] { message } else { "" }
            return .success(.failure(id: id, error: ControlError(code: code, message: message)))
        default:
            return .failure(Malformed(reason: "the reply has no boolean \"ok\""))
        }
    }
}
