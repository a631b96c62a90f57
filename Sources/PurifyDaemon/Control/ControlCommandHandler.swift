public import PurifyControl

/// Answers control requests; the daemon plugs its state in through one of these.
public protocol ControlCommandHandler: Sendable {
    /// Returns the reply's fields (besides `id` and `ok`, which the server adds), or throws the
    /// error to reply with.
    func handle(_ request: ControlRequest) async throws(ControlError) -> [String: JSONValue]
}
