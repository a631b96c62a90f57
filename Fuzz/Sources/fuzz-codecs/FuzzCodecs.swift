import PurifyImage

/// One input: PNG or JPEG bytes (the format comes from the magic bytes) through the header
/// reader and the decoder under small limits, as the pipeline reads untrusted files. Any
/// `ImageError` is a correct answer; a crash, a sanitizer report or a hang is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCodecs(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let decoder = ImageDecoder(limits: DecodeLimits(maxBytes: 1 << 20, maxPixels: 1 << 20, maxSide: 4096))
    if let image = try? decoder.decode(bytes) {
        // A decoded image is whole: exactly width × height × channels bytes.
        precondition(image.pixels.count == image.width * image.height * image.layout.channelCount)
    }
    return 0
}
