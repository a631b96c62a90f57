/// The version of purifyd's programs (`--version` on purify, purifyctl and purifyd; the daemon's
/// `status`, its build-info metric and the Debian package). Change it here only.
public enum PurifyVersion {
    /// The release, e.g. "0.1.0".
    public static let string = "0.1.0"
}
