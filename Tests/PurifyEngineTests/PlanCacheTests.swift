import Foundation
@testable import PurifyEngine
import Testing

@Suite("Plan cache limits")
struct PlanCacheTests {
    func input(batch: Int, side: Int = 8) -> Tensor {
        let count = batch * 3 * side * side
        return Tensor(shape: [batch, 3, side, side], values: (0..<count).map { Float($0 % 97) / 96 })
    }

    @Test("past the plan limit the least recently used plan goes, and a rebuilt plan gives the same result")
    func evictsLeastRecentlyUsed() async throws {
        let engine = try InferenceEngine(threadCount: 1, planCacheLimits: PlanCacheLimits(plans: 2))
        let model = try await engine.loadModel(at: bundledFixtures.path("purifier.onnx"))
        let first = try await model.run(input(batch: 1))
        _ = try await model.run(input(batch: 2))
        _ = try await model.run(input(batch: 1))
        _ = try await model.run(input(batch: 3))
        #expect(try await model.cachedPlans().shapes == [[[1, 3, 8, 8]], [[3, 3, 8, 8]]])
        _ = try await model.run(input(batch: 2))
        #expect(try await model.cachedPlans().shapes == [[[3, 3, 8, 8]], [[2, 3, 8, 8]]])
        #expect(try await model.run(input(batch: 1)) == first)
    }

    @Test("past the byte budget older plans go, but the plan in use stays")
    func keepsWithinArenaBudget() async throws {
        let engine = try InferenceEngine(threadCount: 1, planCacheLimits: PlanCacheLimits(plans: 8, arenaBytes: 0))
        let model = try await engine.loadModel(at: bundledFixtures.path("purifier.onnx"))
        _ = try await model.run(input(batch: 1, side: 16))
        _ = try await model.run(input(batch: 1, side: 8))
        let cached = try await model.cachedPlans()
        #expect(cached.shapes == [[[1, 3, 8, 8]]])
        #expect(cached.arenaBytes > 0)
    }

    @Test("limits that leave no room for a plan are refused")
    func refusesEmptyLimits() {
        #expect(throws: EngineError.self) { try InferenceEngine(threadCount: 1, planCacheLimits: PlanCacheLimits(plans: 0)) }
    }
}
