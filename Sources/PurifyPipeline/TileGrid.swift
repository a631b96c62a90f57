import PurifyImage

/// Overlapping tiles that cover an image, and the weights that blend their outputs.
///
/// Along each axis an image no longer than the tile is one tile, reflect-padded (centered) to
/// `paddedLength`; a longer one is covered by tiles of exactly the tile's length whose
/// neighbours overlap by at least `overlap` pixels, first and last flush with the edges. In an
/// overlap each tile's weight ramps linearly towards its own edge, and the weights of the
/// tiles covering a pixel sum to one, so blending changes nothing where the tiles agree and
/// hides the seams where they do not. The 2-D weight is the product of the two axes'.
struct TileGrid: Sendable, Hashable {
    /// One axis of the grid.
    struct Axis: Sendable, Hashable {
        /// The image's length along the axis.
        var length: Int
        /// Where each tile's crop starts, ascending.
        var starts: [Int]
        /// The crop's length: the tile's, or the image's when it is one short tile.
        var cropLength: Int
        /// Reflection padding before and after the crop: nonzero only for one short tile.
        var padBefore: Int
        var padAfter: Int
        /// The weight of tile `i` at offset `o` of its crop is `weights[i * cropLength + o]`.
        var weights: [Float]

        /// The purifier's input length: the crop and its padding.
        var modelLength: Int { padBefore + cropLength + padAfter }

        /// The axis of an image `length` pixels long, cut into tiles `tile` pixels long that
        /// overlap by `overlap`; a single short tile is padded to `paddedLength(length)`.
        init(length: Int, tile: Int, overlap: Int, paddedLength: (Int) -> Int) {
            precondition(length > 0 && tile > overlap && overlap >= 0, "invalid tiling")
            self.length = length
            if length <= tile {
                starts = [0]
                cropLength = length
                let extra = paddedLength(length) - length
                padBefore = extra / 2
                padAfter = extra - extra / 2
                weights = Array(repeating: 1, count: length)
                return
            }
            let count = (length - overlap + (tile - overlap) - 1) / (tile - overlap)
            let span = length - tile
            starts = (0..<count).map { index in (index * span + (count - 2)) / (count - 1) }
            cropLength = tile
            padBefore = 0
            padAfter = 0
            let ramp = max(overlap, 1)
            var raw = [Float](repeating: 0, count: count * tile)
            var totals = [Float](repeating: 0, count: length)
            for (index, start) in starts.enumerated() {
                for offset in 0..<tile {
                    let weight = Float(min(offset + 1, tile - offset, ramp))
                    raw[index * tile + offset] = weight
                    totals[start + offset] += weight
                }
            }
            for (index, start) in starts.enumerated() {
                for offset in 0..<tile {
                    raw[index * tile + offset] /= totals[start + offset]
                }
            }
            weights = raw
        }
    }

    var x: Axis
    var y: Axis

    /// Tiles in all.
    var count: Int { x.starts.count * y.starts.count }

    /// The purifier input's `(width, height)`, the same for every tile.
    var modelSize: (width: Int, height: Int) { (x.modelLength, y.modelLength) }

    /// The tiles of a `width × height` image for a fully convolutional purifier: tiles of
    /// `side` (a multiple of `multiple`) overlapping by `overlap`, a short axis padded to the
    /// next multiple.
    static func fullyConvolutional(width: Int, height: Int, side: Int, overlap: Int, multiple: Int) -> TileGrid {
        let padded = { (length: Int) in (length + multiple - 1) / multiple * multiple }
        return TileGrid(x: Axis(length: width, tile: side, overlap: overlap, paddedLength: padded),
                        y: Axis(length: height, tile: side, overlap: overlap, paddedLength: padded))
    }

    /// The tiles of a `width × height` image for a purifier of one fixed size: tiles of that
    /// size, a short axis padded up to it.
    static func fixedSize(width: Int, height: Int, tile: (width: Int, height: Int), overlap: Int) -> TileGrid {
        TileGrid(x: Axis(length: width, tile: tile.width, overlap: min(overlap, tile.width / 2), paddedLength: { _ in tile.width }),
                 y: Axis(length: height, tile: tile.height, overlap: min(overlap, tile.height / 2), paddedLength: { _ in tile.height }))
    }

    /// Tile `index`'s crop origin `(x, y)` in the image (row-major order of tiles).
    func origin(of index: Int) -> (x: Int, y: Int) {
        (x.starts[index % x.starts.count], y.starts[index / x.starts.count])
    }

    /// The reflection padding around every tile's crop.
    var padding: Padding {
        Padding(top: y.padBefore, bottom: y.padAfter, left: x.padBefore, right: x.padAfter)
    }
}
