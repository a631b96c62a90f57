internal import PurifyEngine

/// What a reload cannot apply: the settings the running spools, watchers and control socket
/// fixed at start.
enum ConfigurationChanges {
    /// The keys of `new` whose values differ from `running` and take effect only after a restart,
    /// in file order (`control_socket`, `inbox[mnist].outbox`, `inbox[faces]` for an inbox added
    /// or removed). The log level, queue capacities, bundles, output format, JPEG quality, the
    /// classifier switch, batching and the pixel limits apply at once and are not listed.
    static func keysNeedingRestart(from running: DaemonConfiguration, to new: DaemonConfiguration) -> [String] {
        var keys: [String] = []
        if running.stateDirectory != new.stateDirectory { keys.append("state_directory") }
        if running.controlSocketPath != new.controlSocketPath { keys.append("control_socket") }
        if running.allowedUIDs != new.allowedUIDs { keys.append("allowed_uids") }
        if running.allowedGIDs != new.allowedGIDs { keys.append("allowed_gids") }
        if running.drainDeadline != new.drainDeadline { keys.append("drain_deadline_s") }
        if running.engine.threads != new.engine.threads { keys.append("engine.threads") }
        if running.engine.planCache.plans != new.engine.planCache.plans { keys.append("engine.plan_cache_plans") }
        if running.engine.planCache.arenaBytes != new.engine.planCache.arenaBytes { keys.append("engine.plan_cache_mib") }
        if running.http != new.http { keys.append("http") }
        let newInboxes = Dictionary(new.inboxes.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for inbox in running.inboxes {
            guard let changed = newInboxes[inbox.name] else {
                keys.append("inbox[\(inbox.name)]")
                continue
            }
            let prefix = "inbox[\(inbox.name)]."
            if inbox.path != changed.path { keys.append(prefix + "path") }
            if inbox.outbox != changed.outbox { keys.append(prefix + "outbox") }
            if inbox.afterSuccess != changed.afterSuccess { keys.append(prefix + "after_success") }
            if inbox.spoolDirectory != changed.spoolDirectory { keys.append(prefix + "spool_dir") }
            if inbox.failedDirectory != changed.failedDirectory { keys.append(prefix + "failed_dir") }
            if inbox.limits.maxBytes != changed.limits.maxBytes { keys.append(prefix + "limits.max_bytes") }
        }
        let runningNames = Set(running.inboxes.map(\.name))
        for inbox in new.inboxes where !runningNames.contains(inbox.name) { keys.append("inbox[\(inbox.name)]") }
        return keys
    }
}
