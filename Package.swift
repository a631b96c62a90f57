// swift-tools-version:6.1
import PackageDescription

/// Settings every Swift target shares: Swift 6 language mode with the upcoming features the
/// style models (hummingbird) turn on.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "purifyd",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "PurifyEngine", targets: ["PurifyEngine"]),
        .library(name: "PurifyImage", targets: ["PurifyImage"]),
        .library(name: "PurifyPipeline", targets: ["PurifyPipeline"]),
        .library(name: "PurifyControl", targets: ["PurifyControl"]),
        .library(name: "PurifyHTTP", targets: ["PurifyHTTP"]),
        .library(name: "PurifyDaemon", targets: ["PurifyDaemon"]),
        .executable(name: "purify", targets: ["purify"]),
        .executable(name: "purifyctl", targets: ["purifyctl"]),
        .executable(name: "purifyd", targets: ["purifyd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
    ],
    targets: [
        .systemLibrary(name: "CDNNL"),
        // Prefixed C shims for what Swift's Glibc module does not import because it needs
        // _GNU_SOURCE: SO_PEERCRED's struct ucred, SO_PEERGROUPS, accept4, renameat2
        // (RENAME_NOREPLACE), eventfd, pthread_setname_np.
        .target(name: "CPurifySystem"),
        // The one layer over the system every other module uses: errno with named codes,
        // file operations (atomic replacement included), Unix socket addresses, threads.
        .target(name: "PurifySystem", dependencies: ["CPurifySystem"], swiftSettings: swiftSettings),
        // The engine's own compute kernels, where oneDNN has no fast primitive (AVX2 chosen at run time).
        .target(name: "CPurifyKernels"),
        // The programs' version, in one place.
        .target(name: "PurifyVersion", swiftSettings: swiftSettings),
        .target(
            name: "PurifyEngine",
            dependencies: [
                "CDNNL",
                "CPurifyKernels",
                "PurifySystem",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["ONNX/regenerate.sh"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "purify-engine-bench",
            dependencies: ["PurifyEngine"],
            swiftSettings: swiftSettings
        ),
        // libjpeg(-turbo) and libpng behind prefixed `pcodec_` shims; setjmp/longjmp stay in C.
        // Debian: libjpeg-dev, libpng-dev, zlib1g-dev (-ljpeg, -lpng16, -lz; zlib for PNG chunk CRCs).
        .target(
            name: "CImageCodecs",
            linkerSettings: [
                .linkedLibrary("jpeg"),
                .linkedLibrary("png16"),
                .linkedLibrary("z"),
            ]
        ),
        .target(
            name: "PurifyImage",
            dependencies: ["CImageCodecs", "PurifySystem"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "PurifyPipeline",
            dependencies: [
                "PurifyEngine",
                "PurifySystem",
                "PurifyImage",
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            resources: [.copy("Resources/report.schema.json")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "purify",
            dependencies: [
                "PurifyPipeline",
                "PurifyVersion",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // What both ends of the control socket share: the JSON-lines protocol and the client.
        .target(
            name: "PurifyControl",
            dependencies: ["PurifySystem"],
            swiftSettings: swiftSettings
        ),
        // The HTTP API (Hummingbird): purification requests, bundles, health and readiness,
        // Prometheus metrics; on an address of its own or on a socket systemd passes in.
        .target(
            name: "PurifyHTTP",
            dependencies: [
                "PurifyPipeline",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "PurifyDaemon",
            dependencies: [
                "CPurifySystem",
                "PurifySystem",
                "PurifyControl",
                "PurifyHTTP",
                "PurifyPipeline",
                "PurifyEngine",
                "PurifyImage",
                "PurifyVersion",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        // The daemon: argument parsing only; DaemonLauncher (PurifyDaemon) does the rest.
        .executableTarget(
            name: "purifyd",
            dependencies: [
                "PurifyDaemon",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "purifyctl",
            dependencies: [
                "PurifyControl",
                "PurifyVersion",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // What the test targets share: temporary folders, waiting, running programs.
        .target(
            name: "PurifyTestSupport",
            dependencies: ["PurifySystem"],
            path: "Tests/PurifyTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PurifySystemTests",
            dependencies: ["PurifySystem"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PurifyEngineTests",
            dependencies: ["PurifyEngine"],
            exclude: ["Fixtures/make_fixtures.py", "Fixtures/model_family.py"],
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PurifyImageTests",
            dependencies: ["PurifyImage"],
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
        // Runs the real `purify` binary too (built by `swift test` as a product of this package)
        // and validates reports with the project's Python venv (`jsonschema`, see `make venv`).
        .testTarget(
            name: "PurifyPipelineTests",
            dependencies: [
                "PurifyTestSupport",
                "PurifyPipeline",
                "PurifyImage",
                "PurifyEngine",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PurifyDaemonTests",
            dependencies: [
                "PurifyTestSupport",
                "PurifyDaemon",
                "PurifySystem",
                "PurifyHTTP",
                "PurifyControl",
                "PurifyPipeline",
                "PurifyImage",
                "PurifyEngine",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PurifyHTTPTests",
            dependencies: [
                "PurifyHTTP",
                "PurifyPipeline",
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
        // Runs the built purifyctl binary and tests its output formatting (@testable import);
        // depending on the executable also makes `swift test` build it.
        .testTarget(
            name: "PurifyControlTests",
            dependencies: [
                "PurifyTestSupport",
                "PurifyControl",
                "PurifySystem",
                "purifyctl",
                "PurifyDaemon",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Runs the built purifyd binary on real folders and a real socket (depending on it makes
        // `swift test` build it), with the pipeline tests' random-weight fixture bundle.
        .testTarget(
            name: "PurifydTests",
            dependencies: [
                "PurifyTestSupport",
                "purifyd",
                "PurifyControl",
                "PurifyImage",
                "PurifyPipeline",
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
