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
        .library(name: "PurifyImage", targets: ["PurifyImage"]),
    ],
    dependencies: [],
    targets: [
        // libjpeg(-turbo) and libpng behind prefixed `pcodec_` shims; setjmp/longjmp stay in C.
        // Debian: libjpeg-dev, libpng-dev (pkg-config: libpng16 -> -lpng16, libjpeg -> -ljpeg).
        .target(
            name: "CImageCodecs",
            linkerSettings: [
                .linkedLibrary("jpeg"),
                .linkedLibrary("png16"),
            ]
        ),
        .target(
            name: "PurifyImage",
            dependencies: ["CImageCodecs"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PurifyImageTests",
            dependencies: ["PurifyImage"],
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
    ]
)
