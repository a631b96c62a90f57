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
        .executable(name: "purify", targets: ["purify"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .systemLibrary(name: "CDNNL"),
        .target(
            name: "PurifyEngine",
            dependencies: [
                "CDNNL",
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
            dependencies: ["CImageCodecs"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "PurifyPipeline",
            dependencies: [
                "PurifyEngine",
                "PurifyImage",
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            resources: [.copy("Resources/report.schema.json")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "purify",
            dependencies: [
                "PurifyPipeline",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PurifyEngineTests",
            dependencies: ["PurifyEngine"],
            exclude: ["Fixtures/make_fixtures.py"],
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
            dependencies: ["PurifyPipeline", "PurifyImage", "PurifyEngine"],
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
    ]
)
