internal import PurifyControl

/// Replies rendered for people: aligned `key  value` lines, and a table of inboxes for `status`.
enum HumanOutput {
    /// Aligned `key  value` lines, one per scalar; nested objects become dotted keys
    /// (`latency_ms.decode.p50`), arrays of scalars a comma-separated list, null a dash.
    static func keyValueLines(_ fields: [String: JSONValue]) -> String {
        var rows: [(String, String)] = []
        for key in fields.keys.sorted() { flatten(fields[key]!, key: key, into: &rows) }
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { key, value in pad(key, to: width) + "  " + value + "\n" }.joined()
    }

    /// `state`, `version` and `uptime` first, whatever else the daemon reports (the pipeline's
    /// bundles, its last error), then one table row per inbox.
    static func status(_ fields: [String: JSONValue]) -> String {
        var summary = fields
        let inboxes = summary.removeValue(forKey: "inboxes")
        var rows: [(String, String)] = []
        for key in ["state", "version"] {
            if let value = summary.removeValue(forKey: key) { flatten(value, key: key, into: &rows) }
        }
        switch summary.removeValue(forKey: "uptime_s") {
        case .double(let seconds)?: rows.append(("uptime", duration(seconds)))
        case .int(let seconds)?: rows.append(("uptime", duration(Double(seconds))))
        case let other?: rows.append(("uptime_s", scalar(other)))
        case nil: break
        }
        for key in summary.keys.sorted() { flatten(summary[key]!, key: key, into: &rows) }
        let width = rows.map(\.0.count).max() ?? 0
        var text = rows.map { key, value in pad(key, to: width) + "  " + value + "\n" }.joined()
        guard case .array(let list)? = inboxes else { return text }
        let header = ["INBOX", "STATE", "WAITING", "IN FLIGHT", "DONE", "FAILED", "REJECTED", "RECOVERED", "LAST ERROR"]
        let table = list.map { entry -> [String] in
            guard case .object(let inbox) = entry else { return [scalar(entry)] }
            let inFlight = "\(scalar(inbox["in_flight"] ?? .null))/\(scalar(inbox["capacity"] ?? .null))"
            return [
                scalar(inbox["name"] ?? .null), inboxState(inbox), scalar(inbox["waiting_in_inbox"] ?? .null), inFlight,
                scalar(inbox["committed"] ?? .null), scalar(inbox["failed"] ?? .null), scalar(inbox["rejected"] ?? .null),
                scalar(inbox["recovered"] ?? .null), scalar(inbox["last_error"] ?? .null),
            ]
        }
        text += "\n" + self.table(header: header, rows: table, rightAligned: 2...7)
        return text
    }

    /// Columns padded to their widest cell, two spaces apart; the columns in `rightAligned`
    /// (numbers) right-aligned, the last column never padded.
    static func table(header: [String], rows: [[String]], rightAligned: ClosedRange<Int>) -> String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { column, cell in
                if column == row.count - 1 && !rightAligned.contains(column) { return cell }
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                return rightAligned.contains(column) ? padding + cell : cell + padding
            }.joined(separator: "  ") + "\n"
        }.joined()
    }

    /// `running`, `paused` or `backpressured`, with `, not watching` while the inbox's folder
    /// is not watched (it vanished).
    private static func inboxState(_ inbox: [String: JSONValue]) -> String {
        let state = if inbox["paused"] == true { "paused" } else if inbox["backpressured"] == true { "backpressured" } else { "running" }
        return inbox["watching"] == false ? state + ", not watching" : state
    }

    /// `3d 4h 05m 06s`, `4h 05m 06s`, `5m 06s` or `6s`.
    static func duration(_ seconds: Double) -> String {
        let total = Int(seconds.rounded(.down))
        let (days, hours, minutes, secs) = (total / 86_400, total / 3600 % 24, total / 60 % 60, total % 60)
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        if days > 0 { return "\(days)d \(hours)h \(two(minutes))m \(two(secs))s" }
        if hours > 0 { return "\(hours)h \(two(minutes))m \(two(secs))s" }
        if minutes > 0 { return "\(minutes)m \(two(secs))s" }
        return "\(secs)s"
    }

    private static func flatten(_ value: JSONValue, key: String, into rows: inout [(String, String)]) {
        switch value {
        case .object(let members) where !members.isEmpty:
            for member in members.keys.sorted() { flatten(members[member]!, key: key + "." + member, into: &rows) }
        case .array(let elements) where elements.contains(where: \.isContainer):
            for (index, element) in elements.enumerated() { flatten(element, key: "\(key)[\(index)]", into: &rows) }
        default:
            rows.append((key, scalar(value)))
        }
    }

    /// A value on one line: strings bare, booleans `yes`/`no`, null `-`, numbers with at most
    /// three decimals, a list of scalars comma-separated (`-` when empty).
    static func scalar(_ value: JSONValue) -> String {
        switch value {
        case .null: "-"
        case .bool(let flag): flag ? "yes" : "no"
        case .int(let number): String(number)
        case .double(let number):
            if number.isFinite, number == number.rounded(), abs(number) < 1e15 { String(Int64(number)) } else { "\((number * 1000).rounded() / 1000)" }
        case .string(let text): text
        case .array(let elements): elements.isEmpty ? "-" : elements.map(scalar).joined(separator: ", ")
        case .object: value.serialized()
        }
    }

    private static func pad(_ text: String, to width: Int) -> String {
        text + String(repeating: " ", count: max(0, width - text.count))
    }
}

extension JSONValue {
    fileprivate var isContainer: Bool {
        switch self {
        case .array, .object: true
        default: false
        }
    }
}
