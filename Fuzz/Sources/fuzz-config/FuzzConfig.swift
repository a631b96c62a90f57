import PurifyDaemon

/// One input: a configuration file's text through the TOML parser and every key's check. A
/// `ConfigurationError` is a correct answer; a crash, a sanitizer report or a hang is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    _ = try? DaemonConfiguration(toml: text, baseDirectory: "/etc/purifyd")
    return 0
}
