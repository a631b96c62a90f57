// swift-tools-version:6.1
// libFuzzer harnesses for purifyd's parsers of untrusted input: the image decoders with their
// limits (the C shim over libjpeg and libpng included), the ONNX loader, the configuration
// parser and the control-request parser. A package of its own so that the main package's
// `swift build` never links them: they have no `main` (libFuzzer brings it). Built and run by
// `make fuzz` with `--sanitize fuzzer --sanitize address --sanitize undefined`.
import PackageDescription

let harness: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]

let package = Package(
    name: "purifyd-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "purifyd", path: "..")],
    targets: [
        .executableTarget(name: "fuzz-codecs", dependencies: [.product(name: "PurifyImage", package: "purifyd")],
                          swiftSettings: harness),
        .executableTarget(name: "fuzz-onnx", dependencies: [.product(name: "PurifyEngine", package: "purifyd")],
                          swiftSettings: harness),
        .executableTarget(name: "fuzz-config", dependencies: [.product(name: "PurifyDaemon", package: "purifyd")],
                          swiftSettings: harness),
        .executableTarget(name: "fuzz-control", dependencies: [.product(name: "PurifyControl", package: "purifyd")],
                          swiftSettings: harness),
    ]
)
