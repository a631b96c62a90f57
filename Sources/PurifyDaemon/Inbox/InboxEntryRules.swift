public import PurifySystem

/// What the daemon does with an entry it finds in an inbox.
public enum InboxEntryDisposition: Sendable, Equatable {
    /// A regular file with an acceptable name: claim it and process it.
    case process
    /// Left alone and never reported: a file still being written by its producer (a dot-file such
    /// as rsync's `.name.XXXXXX`, `*.tmp`, `*.part`) or a subdirectory.
    case ignore
    /// Never opened, but not silently dropped either: moved, unopened, to `failed/` with a report
    /// that gives `reason` (symlinks, FIFOs, sockets, devices).
    case reject(reason: String)
}

/// The inbox's entry rules in one place.
public enum InboxEntryRules {
    /// Decides what happens to the inbox entry `name`.
    ///
    /// The watcher calls this with `kind: nil` when an event arrives (names only, no system
    /// call); the spool calls it again with the `lstat` kind of the entry it has just claimed by
    /// rename, which is what makes the decision race-free.
    public static func disposition(name: String, kind: FileKind?) -> InboxEntryDisposition {
        if isInProgressName(name) { return .ignore }
        switch kind {
        case nil, .regular: return .process
        case .directory: return .ignore
        case .symbolicLink: return .reject(reason: "a symbolic link (links are never followed)")
        case .fifo: return .reject(reason: "a FIFO, not a regular file")
        case .socket: return .reject(reason: "a socket, not a regular file")
        case .characterDevice, .blockDevice: return .reject(reason: "a device node, not a regular file")
        case .unknown: return .reject(reason: "not a regular file")
        }
    }

    /// Names producers use while a file is still being written.
    private static func isInProgressName(_ name: String) -> Bool {
        if name.isEmpty || name.hasPrefix(".") { return true }
        let lowercased = name.lowercased()
        return lowercased.hasSuffix(".tmp") || lowercased.hasSuffix(".part")
    }
}
