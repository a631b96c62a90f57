internal import ArgumentParser
internal import PurifyVersion

/// `purifyctl`: asks a running purifyd how it is doing and tells it what to do, over the control
/// socket.
@main
struct Purifyctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purifyctl",
        abstract: "Query and control a running purifyd through its control socket.",
        discussion: """
            The socket is --socket, else $PURIFYD_SOCKET, else \(ConnectionOptions.defaultSocketPath).

            Exit statuses (sysexits):
              0   done
              1   the daemon answered with an error not listed here
              64  usage error
              65  the daemon rejected an argument (no such inbox)
              69  no daemon: no socket, connection refused or closed
              70  malformed reply, or client and daemon disagree on the protocol
              71  another system error
              75  no reply in time, or the daemon is busy: try again
              77  permission denied (the socket, or the daemon's peer check)
            """,
        version: PurifyVersion.string,
        subcommands: [
            Status.self, Stats.self, Metrics.self, Pause.self, Resume.self, Drain.self, Reload.self,
            Rescan.self, Version.self,
        ],
        defaultSubcommand: Status.self
    )
}
