internal import ArgumentParser
#if canImport(Glibc)
internal import Glibc
#endif
internal import PurifyControl

/// The options every subcommand takes: where the daemon is, how long to wait, how to print.
struct ConnectionOptions: ParsableArguments {
    /// The environment variable that overrides the default socket path.
    static let socketEnvironmentVariable = "PURIFYD_SOCKET"
    static let defaultSocketPath = ControlClient.defaultSocketPath

    @Option(name: .long, help: ArgumentHelp("The daemon's control socket (default: $\(socketEnvironmentVariable), else \(defaultSocketPath)).", valueName: "path"), completion: .file())
    var socket: String?

    @Option(help: ArgumentHelp("Seconds to wait for the reply, connecting included (default: 10; drain: 600).", valueName: "seconds"))
    var timeout: Double?

    @Flag(help: "Print the daemon's reply as one line of JSON.")
    var json = false

    func validate() throws {
        if let timeout, !(timeout > 0 && timeout <= 86_400) {
            throw ValidationError("--timeout must be a number of seconds above 0 and at most 86400")
        }
    }

    /// The socket to use: `--socket`, else `$PURIFYD_SOCKET`, else the default.
    var socketPath: String {
        if let socket { return socket }
        if let fromEnvironment = getenv(Self.socketEnvironmentVariable), fromEnvironment.pointee != 0 {
            return String(cString: fromEnvironment)
        }
        return Self.defaultSocketPath
    }

    /// A client for the chosen socket, waiting `--timeout` or else `defaultTimeout`.
    func client(defaultTimeout: Duration) -> ControlClient {
        ControlClient(socketPath: socketPath, timeout: timeout.map { .milliseconds(($0 * 1000).rounded(.up)) } ?? defaultTimeout)
    }
}
