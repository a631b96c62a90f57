import Foundation
import PurifyImage
import PurifyPipeline
import Testing

/// Runs the real `purify` executable, built beside the test bundle by `swift test`.
@Suite("purify command")
struct PurifyCommandTests {
    /// The `purify` binary next to this test bundle.
    static let executable: String? = {
        let candidates = [
            Bundle.main.bundleURL,
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
        ] + Bundle.allBundles.map { $0.bundleURL.deletingLastPathComponent() }
        return candidates.map { $0.appendingPathComponent("purify").path }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    private func purify(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        guard let executable = Self.executable else {
            Issue.record("no purify binary beside the tests (build the package: swift build)")
            return (-1, "")
        }
        return try await TestSupport.run(executable, arguments)
    }

    /// A folder of five good images (PNG and JPEG, in a subfolder too; two in color, which the
    /// gray fixture bundle serves under the tile policy only), a truncated one and a dot-file
    /// that must be skipped.
    private func makeInputs() throws -> String {
        let input = try TestSupport.temporaryFolder()
        try FileManager.default.createDirectory(atPath: input + "/sub", withIntermediateDirectories: true)
        for index in 0..<3 {
            try TestSupport.write(TestSupport.noiseImage(width: 28, height: 28, layout: .gray, seed: UInt64(index)),
                                  as: .png, to: input, name: "digit\(index).png")
        }
        try TestSupport.write(TestSupport.noiseImage(width: 40, height: 36, layout: .rgb, seed: 11), as: .jpeg,
                              to: input + "/sub", name: "photo.jpg")
        try TestSupport.write(TestSupport.noiseImage(width: 20, height: 24, layout: .rgba, seed: 12), as: .png,
                              to: input + "/sub", name: "icon.png")
        let good = try ImageEncoder().encode(TestSupport.noiseImage(width: 28, height: 28, layout: .gray, seed: 5), as: .png)
        try Data(good.prefix(60)).write(to: URL(fileURLWithPath: input + "/cut.png"))
        try Data(good).write(to: URL(fileURLWithPath: input + "/.partial.png"))
        return input
    }

    @Test("A folder with a bad file: every input gets a report, the summary counts them, exit 65")
    func folderWithBadFile() async throws {
        let input = try makeInputs()
        let output = try TestSupport.temporaryFolder("cli-out")
        let (status, text) = try await purify(["--bundle", TestSupport.fixtureBundle, input, "--out", output, "--json",
                                         "--batch", "4", "--jpeg-quality", "85", "--input-policy", "tile"])
        #expect(status == 65, "\(text)")
        let summaryLine = try #require(text.split(separator: "\n").last { $0.hasPrefix("{") })
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(summaryLine.utf8)) as? [String: Any])
        #expect(summary["inputs"] as? Int == 6)
        #expect(summary["purified"] as? Int == 5)
        #expect(summary["failed"] as? Int == 1)
        #expect((summary["failures"] as? [String: Int]) == ["truncated": 1])
        #expect(summary["classified"] as? Int == 5)
        #expect(summary["agreement_rate"] is Double)
        let reports = TestSupport.reports(under: output)
        #expect(reports.map { String($0.dropFirst(output.count + 1)) } == [
            "cut.png.json", "digit0.png.json", "digit1.png.json", "digit2.png.json", "sub/icon.png.json", "sub/photo.jpg.json",
        ])
        #expect(FileManager.default.fileExists(atPath: output + "/sub/photo.jpg"))
        #expect(!FileManager.default.fileExists(atPath: output + "/cut.png"))
        let photo = try PurificationReport(json: Array(try Data(contentsOf: URL(fileURLWithPath: output + "/sub/photo.jpg.json"))))
        #expect(photo.output?.jpegQuality == 85)
        #expect(try await TestSupport.schemaViolations(in: reports) == [])
    }

    @Test("All good: exit 0; --format png and --no-classifier are honoured")
    func allGood() async throws {
        let input = try makeInputs()
        try FileManager.default.removeItem(atPath: input + "/cut.png")
        let output = try TestSupport.temporaryFolder("cli-good")
        let (status, text) = try await purify(["--bundle", TestSupport.fixtureBundle, input, "--out", output,
                                         "--format", "png", "--no-classifier", "--threads", "1", "--max-delay-ms", "1",
                                         "--input-policy", "tile"])
        #expect(status == 0, "\(text)")
        #expect(text.contains("5 of 5 purified"))
        #expect(FileManager.default.fileExists(atPath: output + "/sub/photo.png"))
        let report = try PurificationReport(json: Array(try Data(contentsOf: URL(fileURLWithPath: output + "/sub/photo.jpg.json"))))
        #expect(report.output?.format == "png")
        #expect(report.classification == nil)
        #expect(report.bundle.classifierSha256 == nil)
    }

    @Test("By default a color image is refused by a gray bundle: out_of_domain, exit 65, nothing written but the report")
    func outOfDomainByDefault() async throws {
        let input = try makeInputs()
        try FileManager.default.removeItem(atPath: input + "/cut.png")
        let output = try TestSupport.temporaryFolder("cli-domain")
        let (status, text) = try await purify(["--bundle", TestSupport.fixtureBundle, input, "--out", output, "--json"])
        #expect(status == 65, "\(text)")
        let summaryLine = try #require(text.split(separator: "\n").last { $0.hasPrefix("{") })
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(summaryLine.utf8)) as? [String: Any])
        #expect((summary["failures"] as? [String: Int]) == ["out_of_domain": 2])
        #expect(!FileManager.default.fileExists(atPath: output + "/sub/photo.jpg"))
        let photo = try PurificationReport(json: Array(try Data(contentsOf: URL(fileURLWithPath: output + "/sub/photo.jpg.json"))))
        #expect(photo.error?.code == "out_of_domain" && photo.domain?.policy == "reject")
        #expect(photo.error?.message.contains("gray images") == true)
    }

    @Test("Exit codes: 66 for a missing input, 78 for a bad bundle, 64 for a bad option or an output over an input")
    func exitCodes() async throws {
        let output = try TestSupport.temporaryFolder("cli-codes")
        let input = try makeInputs()
        #expect(try await purify(["--bundle", TestSupport.fixtureBundle, input + "/nope.png", "--out", output]).status == 66)
        let badBundle = try TestSupport.temporaryFolder("cli-bundle") + "/bundle"
        try FileManager.default.copyItem(atPath: TestSupport.fixtureBundle, toPath: badBundle)
        let manifest = try String(contentsOfFile: badBundle + "/bundle.toml", encoding: .utf8)
        try manifest.replacingOccurrences(of: "sha256 = \"f", with: "sha256 = \"0")
            .write(toFile: badBundle + "/bundle.toml", atomically: true, encoding: .utf8)
        let (status, text) = try await purify(["--bundle", badBundle, input, "--out", output])
        #expect(status == 78)
        #expect(text.contains("purifier.onnx"), "\(text)")
        #expect(try await purify(["--bundle", TestSupport.fixtureBundle, input, "--out", output, "--jpeg-quality", "0"]).status == 64)
        #expect(try await purify(["--bundle", TestSupport.fixtureBundle, "--out", output]).status == 64)
        let overwrite = try await purify(["--bundle", TestSupport.fixtureBundle, input, "--out", input])
        #expect(overwrite.status == 64)
        #expect(overwrite.output.contains("is an input"), "\(overwrite.output)")
    }

    /// The MNIST bundle to run end to end: `PURIFYD_E2E_BUNDLE` if set, else the shipped
    /// `models/mnist`; `nil` when neither exists.
    static let mnistBundle: String? = {
        let shipped = TestSupport.packageRoot.appendingPathComponent("models/mnist").path
        let path = ProcessInfo.processInfo.environment["PURIFYD_E2E_BUNDLE"] ?? shipped
        return FileManager.default.fileExists(atPath: path + "/bundle.toml") ? path : nil
    }()

    /// The MNIST bundle on 200 real MNIST test digits: every report valid, and the classifier
    /// right on the inputs and on the purified images nearly always.
    @Test("End to end on the shipped MNIST bundle", .enabled(if: mnistBundle != nil))
    func shippedMNISTBundle() async throws {
        let bundle = try #require(Self.mnistBundle)
        let data = TestSupport.packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data/mnist/test.npz").path
        try #require(FileManager.default.fileExists(atPath: data), "MNIST test set missing at \(data)")
        let input = try TestSupport.temporaryFolder()
        let script = """
            import sys, numpy as np
            from PIL import Image
            archive = np.load(sys.argv[1])
            for index in range(200):
                Image.fromarray(archive["images"][index, :, :, 0]).save(f"{sys.argv[2]}/{index:04d}_{archive['labels'][index]}.png")
            """
        let (written, message) = try await TestSupport.run(TestSupport.python, ["-c", script, data, input])
        try #require(written == 0, "\(message)")
        let output = try TestSupport.temporaryFolder("mnist-out")
        let (status, text) = try await purify(["--bundle", bundle, input, "--out", output, "--json"])
        #expect(status == 0, "\(text)")
        let reports = TestSupport.reports(under: output)
        #expect(reports.count == 200)
        #expect(try await TestSupport.schemaViolations(in: reports) == [])
        var correctOnInput = 0
        var correctOnPurified = 0
        for path in reports {
            let report = try PurificationReport(json: Array(try Data(contentsOf: URL(fileURLWithPath: path))))
            let label = report.input.name.split(separator: "_").last?.split(separator: ".").first.map(String.init)
            if report.classification?.input.first?.label == label { correctOnInput += 1 }
            if report.classification?.purified.first?.label == label { correctOnPurified += 1 }
        }
        #expect(correctOnInput >= 194, "clean accuracy \(correctOnInput)/200")
        #expect(correctOnPurified >= 190, "purified accuracy \(correctOnPurified)/200")
    }
}
