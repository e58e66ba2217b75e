import Foundation
import IPC

/// Renders the Prometheus text exposition format, version 0.0.4
/// (https://prometheus.io/docs/instrumenting/exposition_formats/): one `# HELP` and one `# TYPE` line
/// per family, then its samples; label values escape `\`, `"` and newline; histograms as cumulative
/// `_bucket{le=…}` with `+Inf`, then `_sum` and `_count`.
struct MonitorPrometheus {
    enum Kind: String { case counter, gauge, histogram }

    struct Sample {
        var suffix = ""
        var labels: [(String, String)]
        var value: Double
    }

    struct Family {
        var name: String
        var kind: Kind
        var help: String
        var samples: [Sample] = []
    }

    /// Help text of every metric the workers and the monitor produce.
    static let help: [String: String] = [
        "mailer_accepted_total": "Messages accepted and committed to the spool by the receiver.",
        "mailer_accepted_recipients_total": "Recipients of the accepted messages.",
        "mailer_rejected_total": "SMTP transactions or sessions refused by the receiver, by reason.",
        "mailer_rate_limited_total": "Messages refused by a rate limit, by scope.",
        "mailer_auth_failures_total": "Failed SMTP AUTH attempts.",
        "mailer_smtp_sessions": "Open SMTP sessions.",
        "mailer_commit_seconds": "Time to write a message to the spool and fsync it.",
        "mailer_delivered_total": "Messages delivered, by provider.",
        "mailer_delivered_recipients_total": "Recipients delivered, by provider.",
        "mailer_deferred_total": "Delivery attempts that left a message for a later retry.",
        "mailer_failed_total": "Messages moved to failed/ (a recipient failed for good or the message expired).",
        "mailer_failed_recipients_total": "Recipients that failed for good.",
        "mailer_delivery_attempts_total": "Delivery attempts by provider and outcome.",
        "mailer_delivery_seconds": "Duration of one delivery attempt.",
        "mailer_deliveries_in_flight": "Deliveries in progress.",
        "mailer_provider_circuit_open": "1 while a provider is skipped after repeated failures.",
        "mailer_worker_restarts_total": "Worker processes restarted by the supervisor, by worker.",
        "mailer_queue_messages": "Messages in the spool, by state.",
        "mailer_queue_oldest_age_seconds": "Age of the oldest message waiting for delivery (0 when none waits).",
        "mailer_disk_free_bytes": "Free bytes on the file system of the data directory.",
        "mailer_spool_writable": "1 when the monitor can create files in the spool.",
        "mailer_worker_up": "1 while a worker of this role runs.",
        "mailer_deliveries_paused": "1 while deliveries are paused by the admin API.",
        "mailer_start_time_seconds": "Start time of the supervisor, seconds since the epoch.",
        "mailer_snapshot_age_seconds": "Seconds since the monitor last heard from the supervisor.",
    ]

    /// Unlabelled counters shown as 0 before they first move, so that rate() works from the start.
    static let alwaysPresentCounters = [
        "mailer_accepted_total", "mailer_accepted_recipients_total", "mailer_auth_failures_total",
        "mailer_deferred_total", "mailer_failed_total", "mailer_failed_recipients_total",
    ]

    private var families: [String: Family] = [:]

    /// Everything: the workers' metrics from the snapshot and the monitor's own gauges.
    static func render(snapshot: MonitorSnapshotStore.Received?, spool: MonitorSpoolFacts, now: Date) -> String {
        var exposition = MonitorPrometheus()
        let metrics = snapshot?.snapshot ?? MonitorSnapshot()
        for name in Self.alwaysPresentCounters where !metrics.counters.contains(where: { $0.name == name }) {
            exposition.add(name, .counter, labels: [], value: 0)
        }
        for series in metrics.counters {
            exposition.add(series.name, .counter, labels: MonitorLabels.parse(series.labels), value: series.value)
        }
        for series in metrics.gauges {
            exposition.add(series.name, .gauge, labels: MonitorLabels.parse(series.labels), value: series.value)
        }
        for histogram in metrics.histograms {
            exposition.add(histogram)
        }
        for state in [Spool.State.new, .active, .deferred, .hold, .failed] {
            exposition.add("mailer_queue_messages", .gauge, labels: [("state", state.rawValue)],
                           value: Double(spool.counts[state] ?? 0))
        }
        exposition.add("mailer_queue_oldest_age_seconds", .gauge, labels: [], value: spool.oldestQueuedAge ?? 0)
        if let free = spool.diskFreeBytes {
            exposition.add("mailer_disk_free_bytes", .gauge, labels: [], value: Double(free))
        }
        exposition.add("mailer_spool_writable", .gauge, labels: [], value: spool.writable ? 1 : 0)
        if let received = snapshot {
            for role in WorkerRole.allCases.map(\.rawValue) {
                let rows = received.snapshot.workers.filter { $0.role == role }
                guard !rows.isEmpty else { continue }  // not configured (the monitor is, or it would not answer)
                let up = rows.contains { $0.state == "running" }
                exposition.add("mailer_worker_up", .gauge, labels: [("worker", role)], value: up ? 1 : 0)
            }
            exposition.add("mailer_deliveries_paused", .gauge, labels: [], value: received.snapshot.paused ? 1 : 0)
            exposition.add("mailer_start_time_seconds", .gauge, labels: [], value: received.snapshot.startedAt)
            exposition.add("mailer_snapshot_age_seconds", .gauge, labels: [],
                           value: max(0, now.timeIntervalSince(received.receivedAt)))
        }
        return exposition.text()
    }

    mutating func add(_ name: String, _ kind: Kind, labels: [(String, String)], value: Double, suffix: String = "") {
        let name = Self.sanitize(name)
        if self.families[name] == nil {
            self.families[name] = Family(name: name, kind: kind, help: Self.help[name] ?? "mailer metric \(name).")
        }
        guard self.families[name]?.kind == kind else { return }  // one name, one type: first wins
        self.families[name]?.samples.append(Sample(suffix: suffix, labels: labels, value: value))
    }

    mutating func add(_ histogram: MonitorSnapshot.Histogram) {
        let labels = MonitorLabels.parse(histogram.labels)
        for (bound, count) in zip(histogram.bounds, histogram.buckets) {
            self.add(histogram.name, .histogram, labels: labels + [("le", Self.format(bound))], value: Double(count),
                     suffix: "_bucket")
        }
        self.add(histogram.name, .histogram, labels: labels + [("le", "+Inf")], value: Double(histogram.count),
                 suffix: "_bucket")
        self.add(histogram.name, .histogram, labels: labels, value: histogram.sum, suffix: "_sum")
        self.add(histogram.name, .histogram, labels: labels, value: Double(histogram.count), suffix: "_count")
    }

    /// The exposition, families sorted by name.
    func text() -> String {
        var out = ""
        for family in self.families.values.sorted(by: { $0.name < $1.name }) {
            out += "# HELP \(family.name) \(Self.escapeHelp(family.help))\n"
            out += "# TYPE \(family.name) \(family.kind.rawValue)\n"
            for sample in family.samples {
                out += family.name + sample.suffix
                if !sample.labels.isEmpty {
                    out += "{"
                    out += sample.labels.map { "\(Self.sanitize($0.0))=\"\(Self.escapeLabel($0.1))\"" }
                        .joined(separator: ",")
                    out += "}"
                }
                out += " \(Self.format(sample.value))\n"
            }
        }
        return out
    }

    // MARK: - Format details

    /// A sample value or `le` bound: whole numbers without a fraction, `+Inf`, `-Inf`, `NaN`.
    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    static func escapeLabel(_ value: String) -> String {
        var out = ""
        for character in value {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n", "\r\n": out += "\\n"
            default: out.append(character)
            }
        }
        return out
    }

    static func escapeHelp(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Metric and label names must match `[a-zA-Z_:][a-zA-Z0-9_:]*`; anything else becomes `_`.
    static func sanitize(_ name: String) -> String {
        var out = ""
        for (index, scalar) in name.unicodeScalars.enumerated() {
            let isLetter = (scalar >= "a" && scalar <= "z") || (scalar >= "A" && scalar <= "Z") || scalar == "_"
                || scalar == ":"
            let isDigit = scalar >= "0" && scalar <= "9"
            out += (isLetter || (isDigit && index > 0)) ? String(scalar) : "_"
        }
        return out.isEmpty ? "_" : out
    }
}
