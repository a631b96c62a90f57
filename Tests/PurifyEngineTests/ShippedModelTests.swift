import Foundation
import Testing

/// The shipped model bundles (models/<bundle>/) that carry reference outputs, written by
/// `make_fixtures.py --references models/<bundle>`.
enum ShippedModels {
    static let referenceSets: [FixtureSet] = {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let models = repository.appendingPathComponent("models")
        let bundles = (try? FileManager.default.contentsOfDirectory(at: models, includingPropertiesForKeys: nil)) ?? []
        return bundles.map { $0.appendingPathComponent("reference") }
            .filter { FileManager.default.fileExists(atPath: $0.appendingPathComponent("manifest.json").path) }
            .sorted { $0.path < $1.path }
            .map { FixtureSet(directory: $0) }
    }()
}

@Suite("Shipped models match ONNX Runtime")
struct ShippedModelTests {
    @Test("every output element within 1e-4", .enabled(if: !ShippedModels.referenceSets.isEmpty),
          arguments: ShippedModels.referenceSets.map(\.directory.path))
    func matchesOnnxRuntime(referenceDirectory: String) async throws {
        try await FixtureSet(directory: URL(fileURLWithPath: referenceDirectory)).expectOutputsMatch(threadCount: 2)
    }
}
