internal import CoreMetrics
internal import Prometheus
internal import PurifyPipeline
internal import PurifySystem

/// What the daemon's pipelines have done, from the reports of their results: counts per inbox,
/// latency percentiles per stage over the most recent results, and throughput; and, through
/// swift-metrics into a Prometheus registry, latency histograms per stage and bundle, results
/// per bundle and source, suspected-adversarial inputs per bundle and failures per code.
final class PurificationStatistics: Sendable {
    /// The stages a report times, in pipeline order, by their report names.
    static let stages = ["read", "decode", "batch_wait", "purify", "classify", "encode", "write", "total"]
    /// The quantiles the Prometheus summary reports (`stats` reports the same three).
    static let quantiles: [Double] = [0.5, 0.9, 0.99]
    /// Results the percentiles are computed over (the most recent ones).
    static let window = 2048
    /// Seconds the recent throughput is averaged over.
    static let throughputSeconds = 60

    typealias InboxCounts = PipelineStatistics.InboxCounts

    /// The last `window` samples of one stage (milliseconds), and the sum and count of all.
    private struct Samples {
        var recent: [Double] = []
        var next = 0
        var sum = 0.0
        var count = 0

        mutating func add(_ value: Double) {
            if recent.count < PurificationStatistics.window {
                recent.append(value)
            } else {
                recent[next] = value
            }
            next = (next + 1) % PurificationStatistics.window
            sum += value
            count += 1
        }
    }

    private struct State {
        var inboxes: [String: InboxCounts] = [:]
        var stages: [String: Samples] = [:]
        /// Results per second: `perSecond[s % throughputSeconds]` counts second `second[…]`.
        var perSecond = [Int](repeating: 0, count: PurificationStatistics.throughputSeconds)
        var second = [Int64](repeating: -1, count: PurificationStatistics.throughputSeconds)
    }

    private let state = Locked(State())
    private let startedAt: ContinuousClock.Instant
    /// The histograms and counters ``metrics()`` appends, as Prometheus renders them.
    let registry = PrometheusCollectorRegistry()
    /// swift-metrics' factory over ``registry``.
    let factory: PrometheusMetricsFactory

    /// Bounds of the latency histograms' buckets: 1 ms to 60 s.
    static let durationBuckets: [Duration] = [
        .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
        .seconds(10), .seconds(30), .seconds(60),
    ]

    init(startedAt: ContinuousClock.Instant = .now) {
        self.startedAt = startedAt
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = Self.durationBuckets
        self.factory = factory
    }

    /// Counts a result of `inbox` (its `report`, and whether that report was `committed`; `inbox`
    /// nil for an HTTP API request) and adds its stage timings.
    func record(_ report: PurificationReport, committed: Bool, inbox: String?, at now: ContinuousClock.Instant = .now) {
        let timings = report.timingsMs
        let measured: [(String, Double?)] = [
            ("read", timings.read), ("decode", timings.decode), ("batch_wait", timings.batchWait),
            ("purify", timings.purify), ("classify", timings.classify), ("encode", timings.encode),
            ("write", timings.write), ("total", timings.total),
        ]
        recordMetrics(report, measured: measured, source: inbox == nil ? "http" : "inbox")
        let second = Int64((now - startedAt).components.seconds)
        state.withLock { state in
            if let inbox {
                if !committed {
                    state.inboxes[inbox, default: InboxCounts()].uncommitted += 1
                } else if report.status == .purified {
                    state.inboxes[inbox, default: InboxCounts()].purified += 1
                } else {
                    state.inboxes[inbox, default: InboxCounts()].failed += 1
                }
            }
            for case let (stage, value?) in measured { state.stages[stage, default: Samples()].add(value) }
            let slot = Int(second % Int64(Self.throughputSeconds))
            if state.second[slot] != second {
                state.second[slot] = second
                state.perSecond[slot] = 0
            }
            state.perSecond[slot] += 1
        }
    }

    /// `purifyd_stage_duration_seconds` (histogram by stage and bundle), `purifyd_results_total`
    /// (by bundle, source and status), `purifyd_suspected_adversarial_total` (by bundle) and
    /// `purifyd_failures_total` (by error code and stage).
    private func recordMetrics(_ report: PurificationReport, measured: [(String, Double?)], source: String) {
        let bundle = report.bundle.name
        for case let (stage, milliseconds?) in measured {
            Timer(label: "purifyd_stage_duration_seconds", dimensions: [("stage", stage), ("bundle", bundle)], factory: factory)
                .recordNanoseconds(Int64(milliseconds * 1_000_000))
        }
        Counter(label: "purifyd_results_total",
                dimensions: [("bundle", bundle), ("source", source), ("status", report.status.rawValue)], factory: factory)
            .increment()
        if report.classification?.suspectedAdversarial == true {
            Counter(label: "purifyd_suspected_adversarial_total", dimensions: [("bundle", bundle)], factory: factory).increment()
        }
        if let failure = report.error {
            Counter(label: "purifyd_failures_total", dimensions: [("code", failure.code), ("stage", failure.stage.rawValue)],
                    factory: factory).increment()
        }
    }

    /// Counts per inbox.
    var inboxCounts: [String: InboxCounts] {
        state.withLock { $0.inboxes }
    }

    /// Latency percentiles per stage over the last ``window`` results, throughput over the last
    /// minute (or since start when that is shorter) and since start, and the counts per inbox.
    func statistics(at now: ContinuousClock.Instant = .now) -> PipelineStatistics {
        let (inboxes, stages, recentCount) = state.withLock { state in
            let current = Int64((now - startedAt).components.seconds)
            var recent = 0
            for slot in 0..<Self.throughputSeconds where state.second[slot] > current - Int64(Self.throughputSeconds) {
                recent += state.perSecond[slot]
            }
            return (state.inboxes, state.stages, recent)
        }
        let elapsed = Self.seconds(now - startedAt)
        let total = inboxes.values.reduce(0) { $0 + $1.purified + $1.failed + $1.uncommitted }
        var latency: [String: PipelineStatistics.StageLatency] = [:]
        for stage in Self.stages {
            guard let samples = stages[stage], samples.count > 0 else { continue }
            let sorted = samples.recent.sorted()
            latency[stage] = PipelineStatistics.StageLatency(
                count: samples.count, p50: Self.quantile(0.5, of: sorted), p90: Self.quantile(0.9, of: sorted),
                p99: Self.quantile(0.99, of: sorted), max: sorted.last!)
        }
        return PipelineStatistics(
            latency: latency, latencyWindow: Self.window,
            throughputPerSecond: Double(recentCount) / max(1, min(elapsed, Double(Self.throughputSeconds))),
            totalThroughputPerSecond: Double(total) / max(1, elapsed), inboxes: inboxes)
    }

    /// The counts and per-stage latency summaries in the Prometheus text format.
    func metrics() -> String {
        let (inboxes, stages) = state.withLock { ($0.inboxes, $0.stages) }
        var text = "# HELP purifyd_images_total Images the pipeline finished, by inbox and result.\n"
        text += "# TYPE purifyd_images_total counter\n"
        for name in inboxes.keys.sorted() {
            let counts = inboxes[name]!
            for (result, value) in [("purified", counts.purified), ("failed", counts.failed), ("uncommitted", counts.uncommitted)] {
                text += "purifyd_images_total{inbox=\"\(name)\",result=\"\(result)\"} \(value)\n"
            }
        }
        text += "# HELP purifyd_stage_latency_seconds Time per pipeline stage, over the last \(Self.window) images.\n"
        text += "# TYPE purifyd_stage_latency_seconds summary\n"
        for stage in Self.stages {
            guard let samples = stages[stage], samples.count > 0 else { continue }
            let sorted = samples.recent.sorted()
            for quantile in Self.quantiles {
                text += "purifyd_stage_latency_seconds{stage=\"\(stage)\",quantile=\"\(quantile)\"} \(Self.quantile(quantile, of: sorted) / 1000)\n"
            }
            text += "purifyd_stage_latency_seconds_sum{stage=\"\(stage)\"} \(samples.sum / 1000)\n"
            text += "purifyd_stage_latency_seconds_count{stage=\"\(stage)\"} \(samples.count)\n"
        }
        return text + registry.emitToString()
    }

    /// The nearest-rank quantile of ascending `values` (not empty).
    static func quantile(_ quantile: Double, of values: [Double]) -> Double {
        let rank = Int((quantile * Double(values.count)).rounded(.up))
        return values[min(max(rank, 1), values.count) - 1]
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
