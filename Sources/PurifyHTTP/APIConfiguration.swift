/// How the HTTP API listens and what it accepts: the daemon's `[http]` table.
public struct APIConfiguration: Sendable, Equatable {
    /// Where the API listens.
    public enum Listener: Sendable, Equatable, CustomStringConvertible {
        /// A TCP address; port 0 picks a free port (the `http listening` log line names it).
        case address(host: String, port: Int)
        /// The listening socket systemd passes in (`LISTEN_FDS`, a `.socket` unit), so that
        /// the service itself can keep `PrivateNetwork=yes`.
        case systemd

        public var description: String {
            switch self {
            case .address(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            case .systemd: "systemd"
            }
        }
    }

    public var listener: Listener
    /// The largest request body read; a larger one gets 413 before any of it is decoded.
    public var maxBodyBytes: Int
    /// How long a purification request may take, queueing included; past it the answer is 503.
    public var requestTimeout: Duration
    /// Purification requests in progress at once; past it the answer is 429.
    public var maxInFlight: Int
    /// The seconds a 429 or 503 tells the client to wait (`Retry-After`).
    public var retryAfterSeconds: Int
    /// Bearer tokens that `/v1/` requests must present; empty for none.
    public var tokens: [String]

    public static let defaultListener = Listener.address(host: "127.0.0.1", port: 8080)

    public init(listener: Listener = Self.defaultListener, maxBodyBytes: Int = 32 << 20,
                requestTimeout: Duration = .seconds(30), maxInFlight: Int = 256, retryAfterSeconds: Int = 1,
                tokens: [String] = []) {
        self.listener = listener
        self.maxBodyBytes = maxBodyBytes
        self.requestTimeout = requestTimeout
        self.maxInFlight = maxInFlight
        self.retryAfterSeconds = retryAfterSeconds
        self.tokens = tokens
    }
}
