internal import Hummingbird
internal import HummingbirdCore
public import Logging
internal import NIOCore
internal import NIOExtras
internal import NIOPosix
public import ServiceLifecycle
internal import Synchronization

/// Serves ``APIRoutes`` over HTTP/1.1 (Hummingbird's HTTP1Channel on SwiftNIO), on the
/// configured address or on the listening socket systemd passes in (``SystemdListenSockets``).
///
/// A graceful shutdown stops accepting, answers `/readyz` with 503 meanwhile, lets requests in
/// progress finish and closes idle connections; put it after the pipelines in a
/// `ServiceGroup`, so that it shuts down before them.
public struct APIServer: Service {
    public let routes: APIRoutes
    private let logger: Logger
    private let onListening: @Sendable (String) -> Void

    /// - Parameter onListening: Called with the address (`host:port`, or `systemd socket
    ///   fd 3`) once connections are accepted.
    public init(routes: APIRoutes, logger: Logger, onListening: @escaping @Sendable (String) -> Void = { _ in }) {
        self.routes = routes
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let logger = logger
        let responder = routes.router().buildResponder()
        let channel = HTTP1Channel(responder: { request, writer, channel in
            let context = BasicRequestContext(source: .init(channel: channel, logger: logger))
            let response: Response
            do {
                response = try await responder.respond(to: request, context: context)
            } catch {
                logger.error("request failed", metadata: ["error": "\(error)"])
                response = Response(status: .internalServerError)
            }
            try await writer.write(response: response.head, body: response.body)
        }, configuration: .init(idleTimeout: .seconds(75)))

        let group = MultiThreadedEventLoopGroup.singleton
        let quiescing = ServerQuiescingHelper(group: group)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .serverChannelInitializer { server in
                server.eventLoop.makeCompletedFuture {
                    try server.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: server))
                }
            }
        let server: NIOAsyncChannel<HTTP1Channel.Value, Never>
        let described: String
        switch routes.configuration.listener {
        case .address(let host, let port):
            server = try await bootstrap.bind(host: host, port: port) { channel.setup(channel: $0, logger: logger) }
            let bound = server.channel.localAddress?.port ?? port
            described = host.contains(":") ? "[\(host)]:\(bound)" : "\(host):\(bound)"
        case .systemd:
            let descriptor = try SystemdListenSockets.takeStreamSocket()
            server = try await bootstrap.bind(descriptor) { channel.setup(channel: $0, logger: logger) }
            described = "systemd socket fd \(descriptor) (\(server.channel.localAddress.map { "\($0)" } ?? "unknown address"))"
        }
        logger.notice("http listening", metadata: ["address": "\(described)"])
        onListening(described)

        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { connections in
                do {
                    try await server.executeThenClose { inbound in
                        for try await connection in inbound {
                            connections.addTask { await channel.handle(value: connection, logger: logger) }
                        }
                    }
                } catch {
                    logger.error("http: accepting connections failed", metadata: ["error": "\(error)"])
                }
            }
        } onGracefulShutdown: { [routes] in
            logger.info("http: stopping (requests in progress finish)")
            routes.beginDraining()
            quiescing.initiateShutdown(promise: nil)
        }
    }
}
