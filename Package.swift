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
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
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
        .testTarget(
            name: "PurifyEngineTests",
            dependencies: ["PurifyEngine"],
            exclude: ["Fixtures/make_fixtures.py", "Fixtures/model_family.py"],
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings
        ),
    ]
)
