import ArgumentParser
import Foundation
import PurifyDaemon

/// `purifyd`: the daemon. Everything but argument parsing lives in ``DaemonLauncher``.
@main
struct Purifyd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purifyd",
        abstract: "Watch inbox folders and purify the images that land in them.",
        discussion: """
            Runs in the foreground (systemd's Type=notify: READY=1 once the models are loaded and \
            the control socket listens). SIGTERM and SIGINT drain, SIGHUP reloads the configuration \
            and models. Exit status (sysexits): 0 after a clean shutdown; 69 another daemon holds \
            the control socket; 70 internal error; 74 I/O error; 78 bad configuration or bundle.
            """,
        version: DaemonLauncher.version)

    @Option(name: .long, help: ArgumentHelp("The configuration file.", valueName: "path"))
    var config = DaemonLauncher.defaultConfigurationPath

    @Flag(name: .customLong("check-config"), help: "Check the configuration and load its bundles, print a summary, and exit.")
    var checkConfig = false

    func run() async throws {
        do throws(LaunchError) {
            if checkConfig {
                print(try await DaemonLauncher.checkConfiguration(at: config), terminator: "")
            } else {
                try await DaemonLauncher.run(configurationPath: config, environment: ProcessInfo.processInfo.environment)
            }
        } catch {
            FileHandle.standardError.write(Data("purifyd: \(error.message)\n".utf8))
            throw ExitCode(error.exitCode)
        }
    }
}
