import Foundation
import PurifyPipeline

/// Counts over a run, printed at the end as text or JSON.
struct Summary: Encodable {
    struct BundleName: Encodable {
        let name: String
        let version: String
    }

    let bundle: BundleName
    let output: String
    let inputs: Int
    private(set) var purified = 0
    private(set) var failed = 0
    /// Failures per error code.
    private(set) var failures: [String: Int] = [:]
    /// Purified inputs the classifier saw.
    private(set) var classified = 0
    /// Of those, the ones whose top-1 class purification left unchanged.
    private(set) var agreed = 0
    /// Fraction `agreed / classified`; `nil` when nothing was classified.
    private(set) var agreementRate: Double?
    private(set) var suspectedAdversarial = 0
    private(set) var seconds = 0.0
    private(set) var filesPerSecond = 0.0

    init(bundle: BundleManifest, output: String, inputs: Int) {
        self.bundle = BundleName(name: bundle.name, version: bundle.version)
        self.output = output
        self.inputs = inputs
    }

    mutating func add(_ result: PurificationResult) {
        if result.succeeded {
            purified += 1
        } else {
            failed += 1
            failures[result.report.error?.code ?? "io", default: 0] += 1
        }
        if let classification = result.report.classification {
            classified += 1
            if classification.agree { agreed += 1 }
            if classification.suspectedAdversarial { suspectedAdversarial += 1 }
        }
    }

    mutating func finish(elapsed: Duration) {
        let (whole, fraction) = elapsed.components
        seconds = Double(whole) + Double(fraction) * 1e-18
        filesPerSecond = seconds > 0 ? Double(purified + failed) / seconds : 0
        agreementRate = classified > 0 ? Double(agreed) / Double(classified) : nil
    }

    /// The sysexits status for the failures seen, most serious first: the engine (70), I/O (74),
    /// bad data (65); `nil` when every input was purified.
    var exitCode: Int32? {
        if failed == 0 { return nil }
        if failures["inference"] != nil { return 70 }
        if failures["io"] != nil { return 74 }
        return 65
    }

    func text() -> String {
        var lines = [
            "\(purified) of \(inputs) purified, \(failed) failed in \(String(format: "%.2f", seconds)) s (\(String(format: "%.1f", filesPerSecond)) files/s) with \(bundle.name) \(bundle.version)",
        ]
        if !failures.isEmpty {
            lines.append("failures: " + failures.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        if let agreementRate {
            lines.append("classifier agreement input/purified: \(String(format: "%.1f", agreementRate * 100))% of \(classified); suspected adversarial: \(suspectedAdversarial)")
        }
        lines.append("reports and images in \(output)")
        return lines.joined(separator: "\n")
    }

    func json() -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Every field is a plain number, string or dictionary of them: encoding cannot fail.
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    enum CodingKeys: String, CodingKey {
        case bundle, output, inputs, purified, failed, failures, classified, agreed, agreementRate
        case suspectedAdversarial, seconds, filesPerSecond
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(bundle, forKey: .bundle)
        try container.encode(output, forKey: .output)
        try container.encode(inputs, forKey: .inputs)
        try container.encode(purified, forKey: .purified)
        try container.encode(failed, forKey: .failed)
        try container.encode(failures, forKey: .failures)
        try container.encode(classified, forKey: .classified)
        try container.encode(agreed, forKey: .agreed)
        try container.encode(agreementRate, forKey: .agreementRate)  // null when nothing was classified
        try container.encode(suspectedAdversarial, forKey: .suspectedAdversarial)
        try container.encode(seconds, forKey: .seconds)
        try container.encode(filesPerSecond, forKey: .filesPerSecond)
    }
}

/// A one-line progress bar on standard error, redrawn at most ten times a second; silent when
/// standard error is not a terminal.
struct ProgressBar {
    let total: Int
    let enabled: Bool
    private var lastDraw: Duration?
    private var drawn = false

    init(total: Int, enabled: Bool) {
        self.total = total
        self.enabled = enabled
    }

    mutating func update(done: Int, failed: Int, elapsed: Duration) {
        guard enabled else { return }
        if let lastDraw, done < total, elapsed - lastDraw < .milliseconds(100) { return }
        lastDraw = elapsed
        let width = 30
        let filled = total > 0 ? width * done / total : width
        let (whole, fraction) = elapsed.components
        let seconds = Double(whole) + Double(fraction) * 1e-18
        let rate = seconds > 0 ? Double(done) / seconds : 0
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let line = "\r[\(bar)] \(done)/\(total) \(String(format: "%.1f", rate)) files/s" + (failed > 0 ? ", \(failed) failed" : "")
        FileHandle.standardError.write(Data(line.utf8))
        drawn = true
    }

    func finish() {
        if drawn { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
