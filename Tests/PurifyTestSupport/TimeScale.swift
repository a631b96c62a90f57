import Foundation

/// How much longer than usual the tests' time bounds may take: `PURIFYD_TEST_TIME_SCALE` (the
/// Makefile's `test-asan` and `test-tsan` set it; a sanitizer slows every accept, read and
/// allocation several times over), 1 when unset. Only for bounds that tell "fast" from "stuck",
/// never for what a test measures as the daemon's own timing (a timeout it configures).
public let testTimeScale: Double = {
    guard let text = ProcessInfo.processInfo.environment["PURIFYD_TEST_TIME_SCALE"], let scale = Double(text), scale >= 1 else { return 1 }
    return scale
}()
