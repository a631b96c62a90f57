import PurifyImage
import PurifySystem

/// The purified image of a tiled (or per-channel) input, put together from its tiles' outputs
/// as they arrive: each output sample, weighted by the grid's blend weights, is added into a
/// fixed-point sum per sample, two bytes each (the weights of the tiles over a pixel sum to
/// one, so the sum stays below 255 × 256 plus rounding).
struct TileAssembly: Sendable {
    let grid: TileGrid
    let layout: ChannelLayout
    /// Tiles not yet added, over every plane.
    private(set) var remaining: Int
    private var sums: [UInt16]

    /// An empty image of `grid`'s size in `layout`, expecting `tileCount` tiles.
    init(grid: TileGrid, layout: ChannelLayout, tileCount: Int) {
        self.grid = grid
        self.layout = layout
        remaining = tileCount
        sums = Array(repeating: 0, count: grid.x.length * grid.y.length * layout.channelCount)
    }

    /// Adds tile `index`'s purifier output (planar, `planes` channels of the grid's model size)
    /// into the image's channels from `firstChannel` on.
    mutating func add(_ output: UnsafeBufferPointer<Float>, planes: Int, tile index: Int, firstChannel: Int) {
        let (modelWidth, modelHeight) = grid.modelSize
        precondition(output.count == planes * modelWidth * modelHeight, "tile output has the wrong size")
        let origin = grid.origin(of: index)
        let column = index % grid.x.starts.count
        let row = index / grid.x.starts.count
        let cropWidth = grid.x.cropLength
        let cropHeight = grid.y.cropLength
        let width = grid.x.length
        let channels = layout.channelCount
        let scale = Float(255 * 256)
        grid.x.weights.withUnsafeBufferPointer { xWeights in
            grid.y.weights.withUnsafeBufferPointer { yWeights in
                sums.withUnsafeMutableBufferPointer { sums in
                    for plane in 0..<planes {
                        let planeBase = plane * modelWidth * modelHeight
                        for cy in 0..<cropHeight {
                            let yWeight = yWeights[row * cropHeight + cy] * scale
                            let source = planeBase + (cy + grid.y.padBefore) * modelWidth + grid.x.padBefore
                            var target = ((origin.y + cy) * width + origin.x) * channels + firstChannel + plane
                            for cx in 0..<cropWidth {
                                let value = output[source + cx]
                                let clamped = value > 0 ? min(value, 1) : 0  // NaN → 0
                                let weighted = clamped * yWeight * xWeights[column * cropWidth + cx]
                                sums[target] &+= UInt16(weighted + 0.5)
                                target &+= channels
                            }
                        }
                    }
                }
            }
        }
        remaining -= 1
    }

    /// The finished image: each sum back to 8 bits, rounded.
    func image() -> PixelImage {
        let bytes = sums.map { UInt8(min(255, (UInt32($0) + 128) >> 8)) }
        return PixelImage(width: grid.x.length, height: grid.y.length, layout: layout, pixels: bytes)
    }
}

extension TileAssembly {
    /// Sets channel `channel` from a gray image of the grid's size (a plane purified whole).
    mutating func set(_ plane: PixelImage, channel: Int) {
        precondition(plane.width == grid.x.length && plane.height == grid.y.length && plane.layout == .gray,
                     "plane does not fit the image")
        let channels = layout.channelCount
        plane.pixels.withUnsafeBufferPointer { samples in
            sums.withUnsafeMutableBufferPointer { sums in
                for index in samples.indices {
                    sums[index * channels + channel] = UInt16(samples[index]) << 8
                }
            }
        }
        remaining -= 1
    }
}

/// The images being put together from their tiles, by image; used by the one stage that
/// splits the purifier's batches, one batch at a time.
final class TileAssemblies: Sendable {
    private struct Entry {
        var assembly: TileAssembly?
        /// Tiles not yet seen, for an image whose batch failed.
        var remaining: Int
        var failed: Bool
        var firstDequeued: ContinuousClock.Instant
    }

    private let entries = Locked<[UInt64: Entry]>([:])

    /// Images partly assembled.
    var count: Int { entries.withLock { $0.count } }

    /// Adds a tile's purifier output (planar, `planes` channels); returns the image and when
    /// its first tile left for the engine once the tile was its last. `resize`, for a purifier
    /// of one fixed size, brings a whole plane back to the image's size.
    func add(_ output: UnsafeBufferPointer<Float>, planes: Int, of tile: PurifierTile, dequeued: ContinuousClock.Instant,
             resize: ((PixelImage) -> PixelImage)?) -> (image: PixelImage, firstDequeued: ContinuousClock.Instant)? {
        let image = tile.image
        return entries.withLock { entries in
            var entry = entries.removeValue(forKey: image.id)
                ?? Entry(assembly: nil, remaining: image.tileCount, failed: false, firstDequeued: dequeued)
            entry.remaining -= 1
            if !entry.failed {
                var assembly = entry.assembly
                    ?? TileAssembly(grid: image.grid, layout: image.work.layout, tileCount: image.tileCount)
                let channel = image.plan.perChannel ? tile.plane : 0
                if let resize {
                    let model = PixelImage(planar: output, width: tile.pixels.width, height: tile.pixels.height,
                                           layout: planes == 1 ? .gray : .rgb)
                    let restored = resize(model)
                    for plane in 0..<planes { assembly.set(restored.channel(plane), channel: channel + plane) }
                } else {
                    assembly.add(output, planes: planes, tile: tile.index, firstChannel: channel)
                }
                entry.assembly = assembly
            }
            guard entry.remaining == 0 else {
                entries[image.id] = entry
                return nil
            }
            guard !entry.failed, let assembly = entry.assembly else { return nil }
            return (assembly.image(), entry.firstDequeued)
        }
    }

    /// Records that a tile's batch failed; true the first time for its image (which then
    /// fails once), false for its later tiles, which are dropped.
    func abandon(_ tile: PurifierTile) -> Bool {
        let image = tile.image
        guard image.tileCount > 1 else { return true }
        return entries.withLock { entries in
            var entry = entries.removeValue(forKey: image.id)
                ?? Entry(assembly: nil, remaining: image.tileCount, failed: false, firstDequeued: .now)
            let first = !entry.failed
            entry.failed = true
            entry.assembly = nil
            entry.remaining -= 1
            if entry.remaining > 0 { entries[image.id] = entry }
            return first
        }
    }
}
