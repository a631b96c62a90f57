public import PurifyImage

/// What the pipeline does with an image outside its bundle's domain (``InputDomain``).
public enum InputPolicy: String, Sendable, Hashable, CaseIterable {
    /// The image fails with the error code `out_of_domain`, saying what was expected.
    case reject
    /// The image is resized to the size the classifier consumes (the trained size without a
    /// classifier) and purified there; the output has that size.
    case resize
    /// The image is purified at its own size, in overlapping tiles when it is larger than the
    /// tile side, with the seams blended.
    case tile
}

/// The images a bundle's purifier serves as they are: its channels and a range of sizes, from
/// `bundle.toml`'s `[input]` table.
public struct InputDomain: Sendable, Hashable, CustomStringConvertible {
    /// `.gray` or `.rgb`.
    public var layout: ChannelLayout
    /// The smallest size served, `(width, height)`.
    public var minSize: (width: Int, height: Int)
    /// The largest size served, `(width, height)`.
    public var maxSize: (width: Int, height: Int)

    public init(layout: ChannelLayout, minSize: (width: Int, height: Int), maxSize: (width: Int, height: Int)) {
        self.layout = layout
        self.minSize = minSize
        self.maxSize = maxSize
    }

    /// The domain a manifest declares.
    public init(_ manifest: BundleManifest) {
        let input = manifest.input
        self.init(layout: input.channels == 1 ? .gray : .rgb,
                  minSize: (input.minSize[1], input.minSize[0]), maxSize: (input.maxSize[1], input.maxSize[0]))
    }

    /// Whether a `width × height` image has a size the purifier serves.
    public func contains(width: Int, height: Int) -> Bool {
        (minSize.width...maxSize.width).contains(width) && (minSize.height...maxSize.height).contains(height)
    }

    /// "gray images of 28×28 pixels" or "rgb images from 32×32 to 64×64 pixels".
    public var description: String {
        let sizes = minSize == maxSize
            ? "of \(minSize.width)×\(minSize.height)"
            : "from \(minSize.width)×\(minSize.height) to \(maxSize.width)×\(maxSize.height)"
        return "\(layout.reportName) images \(sizes) pixels"
    }

    public static func == (lhs: InputDomain, rhs: InputDomain) -> Bool {
        lhs.layout == rhs.layout && lhs.minSize == rhs.minSize && lhs.maxSize == rhs.maxSize
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(layout)
        hasher.combine(minSize.width)
        hasher.combine(minSize.height)
        hasher.combine(maxSize.width)
        hasher.combine(maxSize.height)
    }
}

/// How one image is purified: decided from its size and colors, the bundle's domain and the
/// input policy by ``plan(width:height:layout:policy:resizeTarget:)``.
struct PurificationPlan: Sendable, Hashable {
    /// What is done to the image's size.
    enum Action: String, Sendable, Hashable {
        /// Purified at its own size (an image inside the domain).
        case asIs = "as_is"
        /// Resized to the classifier's input size first, and output at that size.
        case resized = "resize"
        /// Purified at its own size, tiled when larger than a tile.
        case tiled = "tile"
    }

    var action: Action
    /// The input policy it was planned under.
    var policy: InputPolicy
    /// Whether the image lies inside the domain.
    var inDomain: Bool
    /// A color image through a gray purifier: each color channel is purified as a gray image,
    /// so that the output keeps its colors.
    var perChannel: Bool
    /// The size purified and output, `(width, height)`.
    var size: (width: Int, height: Int)
    /// Why the image lies outside the domain; `nil` inside it.
    var outsideBecause: String?

    static func == (lhs: PurificationPlan, rhs: PurificationPlan) -> Bool {
        lhs.action == rhs.action && lhs.policy == rhs.policy && lhs.inDomain == rhs.inDomain && lhs.perChannel == rhs.perChannel
            && lhs.size == rhs.size && lhs.outsideBecause == rhs.outsideBecause
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(action)
        hasher.combine(size.width)
        hasher.combine(size.height)
    }
}

extension InputDomain {
    /// The plan for a `width × height` image of color layout `layout` (`.gray` or `.rgb`; an
    /// RGB image whose channels are all equal counts as gray), or the message of its
    /// `out_of_domain` failure under ``InputPolicy/reject``.
    ///
    /// A gray image suits an RGB purifier (its channels are copied); a color image never goes
    /// through a gray purifier as gray: under `resize` and `tile` each of its channels is
    /// purified on its own.
    func plan(width: Int, height: Int, layout: ChannelLayout, policy: InputPolicy,
              resizeTarget: (width: Int, height: Int)) -> Result<PurificationPlan, DomainViolation> {
        let colorThroughGray = self.layout == .gray && layout == .rgb
        let sized = contains(width: width, height: height)
        if sized && !colorThroughGray {
            return .success(PurificationPlan(action: .asIs, policy: policy, inDomain: true, perChannel: false,
                                             size: (width, height), outsideBecause: nil))
        }
        let because = "the bundle serves \(self); this image is \(layout.reportName), \(width)×\(height) pixels"
        switch policy {
        case .reject:
            let remedy = colorThroughGray
                ? "its colors would be lost to a gray purifier; the resize and tile policies purify each color channel on its own"
                : "the resize policy purifies it at \(resizeTarget.width)×\(resizeTarget.height), the tile policy at its own size"
            return .failure(DomainViolation(message: "\(because) (input policy reject: \(remedy))"))
        case .resize:
            return .success(PurificationPlan(action: .resized, policy: policy, inDomain: false, perChannel: colorThroughGray,
                                             size: resizeTarget, outsideBecause: because))
        case .tile:
            return .success(PurificationPlan(action: .tiled, policy: policy, inDomain: false, perChannel: colorThroughGray,
                                             size: (width, height), outsideBecause: because))
        }
    }
}

/// Why an image was refused under ``InputPolicy/reject``.
struct DomainViolation: Error, Hashable, Sendable {
    var message: String
}

extension PixelImage {
    /// Whether an RGB image's channels are equal at every pixel (a gray picture stored as
    /// color); `false` for other layouts.
    var isGrayStoredAsRGB: Bool {
        guard layout == .rgb else { return false }
        return pixels.withUnsafeBufferPointer { samples in
            var index = 0
            while index < samples.count {
                if samples[index] != samples[index + 1] || samples[index] != samples[index + 2] { return false }
                index += 3
            }
            return true
        }
    }
}
