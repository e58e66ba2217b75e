import Foundation

/// What the supervisor knows and the monitor shows: aggregated metrics from every worker and the
/// worker table. Sent as JSON in `supervisorSnapshot` about once a second.
public struct MonitorSnapshot: Codable, Sendable, Equatable {
    public struct Series: Codable, Sendable, Equatable {
        public var name: String
        /// `k=v` pairs joined by `,` (sorted by key).
        public var labels: String
        public var value: Double
        public init(name: String, labels: String, value: Double) {
            self.name = name
            self.labels = labels
            self.value = value
        }
    }

    public struct Histogram: Codable, Sendable, Equatable {
        public var name: String
        public var labels: String
        /// Upper bounds of the buckets (seconds), ascending; +Inf is implied.
        public var bounds: [Double]
        /// Cumulative counts per bound.
        public var buckets: [Int]
        public var count: Int
        public var sum: Double
    }

    public struct Worker: Codable, Sendable, Equatable {
        public var role: String
        public var pid: Int32
        public var generation: Int
        /// `starting`, `running`, `draining`, `restarting`, `crash-loop`.
        public var state: String
        public var restarts: Int
        public var startedAt: Double
        public var lastExit: String?

        public init(role: String, pid: Int32, generation: Int, state: String, restarts: Int, startedAt: Double,
                    lastExit: String?) {
            self.role = role
            self.pid = pid
            self.generation = generation
            self.state = state
            self.restarts = restarts
            self.startedAt = startedAt
            self.lastExit = lastExit
        }
    }

    public var generation: Int = 0
    public var startedAt: Double = 0
    public var paused = false
    public var counters: [Series] = []
    public var gauges: [Series] = []
    public var histograms: [Histogram] = []
    public var workers: [Worker] = []

    public init() {}

    /// Sum of a counter over every label set matching `filter`.
    public func counter(_ name: String, where filter: (String) -> Bool = { _ in true }) -> Double {
        self.counters.filter { $0.name == name && filter($0.labels) }.reduce(0) { $0 + $1.value }
    }
}

/// Aggregates the counters, gauges and histograms that workers report.
public struct MetricsStore: Sendable {
    private struct Key: Hashable { var name: String; var labels: String }
    private var counters: [Key: Double] = [:]
    private var gauges: [Key: Double] = [:]
    private var histograms: [Key: MonitorSnapshot.Histogram] = [:]
    public static let defaultBounds: [Double] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    public init() {}

    /// Most distinct series kept: a compromised worker cannot grow the supervisor's memory or
    /// flood /metrics beyond this.
    public static let maximumSeries = 10_000

    private func admits(_ name: String, _ labels: String, known: Bool) -> Bool {
        if known { return true }
        guard name.hasPrefix("mailer_"), name.utf8.count <= 100, labels.utf8.count <= 300,
              name.utf8.allSatisfy({ ($0 >= 97 && $0 <= 122) || $0 == 95 || ($0 >= 48 && $0 <= 57) })
        else { return false }
        return self.counters.count + self.gauges.count + self.histograms.count < Self.maximumSeries
    }

    public mutating func apply(_ message: PipeMessage) {
        switch message {
        case .workerCounter(let name, let labels, _) where !self.admits(name, labels, known: self.counters[Key(name: name, labels: labels)] != nil),
             .workerGauge(let name, let labels, _) where !self.admits(name, labels, known: self.gauges[Key(name: name, labels: labels)] != nil),
             .workerObservation(let name, let labels, _) where !self.admits(name, labels, known: self.histograms[Key(name: name, labels: labels)] != nil):
            return
        case .workerCounter(let name, let labels, let delta):
            self.counters[Key(name: name, labels: labels), default: 0] += Double(delta)
        case .workerGauge(let name, let labels, let value):
            self.gauges[Key(name: name, labels: labels)] = value
        case .workerObservation(let name, let labels, let value):
            let key = Key(name: name, labels: labels)
            var h = self.histograms[key] ?? MonitorSnapshot.Histogram(
                name: name, labels: labels, bounds: Self.defaultBounds,
                buckets: Array(repeating: 0, count: Self.defaultBounds.count), count: 0, sum: 0)
            for (i, bound) in h.bounds.enumerated() where value <= bound { h.buckets[i] += 1 }
            h.count += 1
            h.sum += value
            self.histograms[key] = h
        default:
            break
        }
    }

    public mutating func add(counter name: String, labels: String = "", _ delta: Double = 1) {
        self.counters[Key(name: name, labels: labels), default: 0] += delta
    }

    public func fill(_ snapshot: inout MonitorSnapshot) {
        snapshot.counters = self.counters.map { .init(name: $0.key.name, labels: $0.key.labels, value: $0.value) }
            .sorted { ($0.name, $0.labels) < ($1.name, $1.labels) }
        snapshot.gauges = self.gauges.map { .init(name: $0.key.name, labels: $0.key.labels, value: $0.value) }
            .sorted { ($0.name, $0.labels) < ($1.name, $1.labels) }
        snapshot.histograms = self.histograms.values.sorted { ($0.name, $0.labels) < ($1.name, $1.labels) }
    }
}
