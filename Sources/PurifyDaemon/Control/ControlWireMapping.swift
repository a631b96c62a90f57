internal import PurifyControl

// The one place the daemon's domain values become the control protocol's JSON fields and
// error codes; the services behind the socket never see the wire types.

extension LoadedBundle {
    var wireValue: JSONValue {
        [
            "inbox": .string(inbox),
            "name": .string(name),
            "version": .string(version),
            "directory": .string(directory),
            "purifier_sha256": .string(purifierSHA256),
            "classifier_sha256": classifierSHA256.map(JSONValue.string) ?? .null,
            "classifier": .bool(classifies),
        ]
    }
}

extension PipelineStatus {
    /// `bundles`, `reloads` (`succeeded`, `failed`) and `last_error`, merged into `status`.
    var wireFields: [String: JSONValue] {
        [
            "bundles": .array(bundles.map(\.wireValue)),
            "reloads": ["succeeded": .int(Int64(succeededReloads)), "failed": .int(Int64(failedReloads))],
            "last_error": lastError.map(JSONValue.string) ?? .null,
        ]
    }
}

extension PipelineStatistics {
    /// The `stats` reply: `latency_ms` (per stage: `count`, `p50`, `p90`, `p99`, `max`),
    /// `latency_window`, `throughput_per_s`, `total_throughput_per_s` and `inboxes` (per inbox:
    /// `purified`, `failed`, `uncommitted`).
    var wireFields: [String: JSONValue] {
        [
            "latency_ms": .object(latency.mapValues { stage in
                ["count": .int(Int64(stage.count)), "p50": .double(stage.p50), "p90": .double(stage.p90),
                 "p99": .double(stage.p99), "max": .double(stage.max)]
            }),
            "latency_window": .int(Int64(latencyWindow)),
            "throughput_per_s": .double(throughputPerSecond),
            "total_throughput_per_s": .double(totalThroughputPerSecond),
            "inboxes": .object(inboxes.mapValues { counts in
                ["purified": .int(Int64(counts.purified)), "failed": .int(Int64(counts.failed)),
                 "uncommitted": .int(Int64(counts.uncommitted))]
            }),
        ]
    }
}

extension ReloadOutcome {
    /// The `reload` reply: `reloaded`, `bundles` and `restart_required`.
    var wireFields: [String: JSONValue] {
        ["reloaded": true, "bundles": .array(bundles.map(\.wireValue)), "restart_required": .array(restartRequired.map(JSONValue.string))]
    }
}

extension ReloadRefusal {
    var controlError: ControlError {
        let code = switch reason {
        case .noConfigurationFile: ControlError.unsupported
        case .busy: ControlError.busy
        case .failed: ControlError.failed
        }
        return ControlError(code: code, message: message)
    }
}

extension InboxService.Status {
    /// One inbox's entry in `status`'s `inboxes`.
    var wireValue: JSONValue {
        [
            "name": .string(name),
            "paused": .bool(isPaused),
            "backpressured": .bool(spool.isWaitingForCapacity),
            "watching": .bool(watcher.isWatching),
            "waiting_in_inbox": .int(Int64(waitingInInbox)),
            "in_flight": .int(Int64(spool.inFlight)),
            "capacity": .int(Int64(spool.capacity)),
            "claimed": .int(Int64(spool.claimed)),
            "committed": .int(Int64(spool.committed)),
            "failed": .int(Int64(spool.failed)),
            "rejected": .int(Int64(spool.rejected)),
            "recovered": .int(Int64(spool.recovered)),
            "write_failure": spool.writeFailure.map(JSONValue.string) ?? .null,
            "stalled": .int(Int64(spool.stalled)),
            "vanished": .int(Int64(spool.vanished)),
            "folders_recreated": .int(Int64(spool.foldersRecreated)),
            "rescans": .int(Int64(watcher.rescans)),
            "overflows": .int(Int64(watcher.overflows)),
            "last_error": lastError.map(JSONValue.string) ?? .null,
        ]
    }
}
