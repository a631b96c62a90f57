import PurifyControl

/// One input: a control request line through the parser the daemon runs on every line a
/// client sends, and a reply line through the parser `purifyctl` runs. A rejection is a correct
/// answer; a crash, a sanitizer report or a hang is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControl(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let line = UnsafeBufferPointer(start: data, count: size)
    if case .success(let request) = ControlRequest.parse(line) {
        // What parses must survive a reply being built around its id.
        _ = ControlReply.success(id: request.id, fields: [:]).line
    }
    _ = ControlReply.parse(line)
    return 0
}
