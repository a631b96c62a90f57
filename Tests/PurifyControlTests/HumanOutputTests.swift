import PurifyControl
@testable import purifyctl
import Testing

@Suite("purifyctl's output for people")
struct HumanOutputTests {
    @Test("durations read as days, hours, minutes and seconds", arguments: [
        (0.9, "0s"), (59.0, "59s"), (61.0, "1m 01s"), (11_236.52, "3h 07m 16s"), (200_000.0, "2d 7h 33m 20s"),
    ])
    func durations(seconds: Double, text: String) {
        #expect(HumanOutput.duration(seconds) == text)
    }

    @Test("nested replies flatten into aligned, sorted key/value lines")
    func keyValueLines() {
        let fields: [String: JSONValue] = [
            "throughput_per_s": 312.4,
            "latency_ms": ["decode": ["p50": 0.4123, "p99": 2.0]],
            "drained": ["mnist", "scans"],
            "paused": [],
            "exiting": false,
            "last_error": .null,
        ]
        #expect(HumanOutput.keyValueLines(fields) == """
            drained                mnist, scans
            exiting                no
            last_error             -
            latency_ms.decode.p50  0.412
            latency_ms.decode.p99  2
            paused                 -
            throughput_per_s       312.4

            """)
    }

    @Test("tables pad columns, right-align numbers and leave the last column unpadded")
    func table() {
        let text = HumanOutput.table(header: ["NAME", "COUNT", "NOTE"], rows: [["a", "1", "-"], ["longer", "1234", "x y"]], rightAligned: 1...1)
        #expect(text == """
            NAME    COUNT  NOTE
            a           1  -
            longer   1234  x y

            """)
    }
}
