import Foundation
import IPC
import Logging
import NIOHTTP1

/// Maps a request to an answer, with no socket in sight: access checks, routing, and every endpoint.
///
/// Checks, in order: the client must be on loopback (403, for every path); the path must exist
/// (404); `/admin/*` must come from a local page or tool, not a browser tab of another site (403), and
/// carry the bearer token when `adminToken` is set (401); the method must fit (405 with `Allow`).
final class MonitorRouter: Sendable {
    enum Route: Equatable {
        case health, metrics
        case retryFailed, cleanQueue, cleanOldEmails, service, config, queueList
        case queueShow(id: String)

        var isAdmin: Bool {
            switch self {
            case .health, .metrics: return false
            default: return true
            }
        }

        var methods: [HTTPMethod] {
            switch self {
            case .health, .metrics, .config, .queueList, .queueShow: return [.GET, .HEAD]
            case .retryFailed, .cleanQueue, .cleanOldEmails, .service: return [.POST]
            }
        }

        static func match(_ path: String) -> Route? {
            switch path {
            case "/health": return .health
            case "/metrics": return .metrics
            case "/admin/retry-failed": return .retryFailed
            case "/admin/clean-queue": return .cleanQueue
            case "/admin/clean-old-emails": return .cleanOldEmails
            case "/admin/service": return .service
            case "/admin/config": return .config
            case "/admin/queue": return .queueList
            default:
                let prefix = "/admin/queue/"
                guard path.hasPrefix(prefix), path.count > prefix.count else { return nil }
                let id = String(path.dropFirst(prefix.count))
                return id.contains("/") ? nil : .queueShow(id: id)
            }
        }
    }

    /// Largest request body read (admin requests carry a few bytes of JSON).
    static let maximumBodySize = 64 * 1024
    /// Default age for `clean-old-emails`, in days (as planned in the original).
    static let defaultCleanDays = 30

    let config: MailerConfig
    let spool: Spool
    let snapshots: MonitorSnapshotStore
    let probes: MonitorProbes
    let actions: MonitorActions
    let logger: Logger
    /// Admin actions that change the spool run one at a time.
    let adminLock = NSLock()

    init(config: MailerConfig, spool: Spool, snapshots: MonitorSnapshotStore, probes: MonitorProbes = .system,
         actions: MonitorActions, logger: Logger) {
        self.config = config
        self.spool = spool
        self.snapshots = snapshots
        self.probes = probes
        self.actions = actions
        self.logger = logger
    }

    // MARK: - Dispatch

    func respond(to request: MonitorRequest) -> MonitorResponse {
        let now = self.probes.now()
        let client = request.clientAddress ?? "unknown"
        guard let address = request.clientAddress, Loopback.contains(address: address) else {
            self.logger.warning("refused a client outside loopback", metadata: ["client": "\(client)"])
            return .error(.forbidden, "only loopback clients may use this API", now: now)
        }
        guard let path = request.path else { return .error(.badRequest, "malformed request target", now: now) }
        guard let route = Route.match(path) else { return .error(.notFound, "no such endpoint: \(path)", now: now) }
        if route.isAdmin {
            if let refusal = self.refuseCrossSite(request) {
                self.logger.warning("refused an admin request from a web page",
                                    metadata: ["client": "\(client)", "path": "\(path)", "reason": "\(refusal)"])
                return .error(.forbidden, refusal, now: now)
            }
            if !self.config.adminToken.isEmpty && !self.hasToken(request) {
                self.logger.warning("admin request without a valid token", metadata: ["client": "\(client)", "path": "\(path)"])
                return .error(.unauthorized, "a valid bearer token is required", now: now,
                              headers: [("WWW-Authenticate", "Bearer realm=\"mailer\"")])
            }
        }
        guard route.methods.contains(request.method) else {
            let allow = route.methods.map(\.rawValue).joined(separator: ", ")
            return .error(.methodNotAllowed, "method \(request.method.rawValue) is not allowed here (use \(allow))",
                          now: now, headers: [("Allow", allow)])
        }
        switch route {
        case .health: return self.health(now: now)
        case .metrics: return self.metrics(request, now: now)
        case .retryFailed: return self.retryFailed(client: client)
        case .cleanQueue: return self.cleanQueue(request, client: client, now: now)
        case .cleanOldEmails: return self.cleanOldEmails(request, client: client, now: now)
        case .service: return self.service(request, client: client, now: now)
        case .config: return self.showConfig(client: client)
        case .queueList: return self.listQueue(request, client: client, now: now)
        case .queueShow(let id): return self.showMessage(id, client: client, now: now)
        }
    }

    // MARK: - Access

    /// A browser on this host can be made to send requests to a loopback port by any web page: a
    /// cross-site form POST, or a page whose name was re-pointed to 127.0.0.1 (DNS rebinding). Such
    /// requests carry an `Origin` (or `Sec-Fetch-Site: cross-site`) or a foreign `Host`; curl, scripts
    /// and Prometheus do not. Returns why the request is refused, or nil.
    func refuseCrossSite(_ request: MonitorRequest) -> String? {
        if let host = request.headers.first(name: "host"), !Self.isLocalHostHeader(host) {
            return "Host \(host) is not a loopback name"
        }
        if let origin = request.headers.first(name: "origin") {
            // "null" (a sandboxed frame, a file:// page) has no host and is refused too.
            guard let host = URLComponents(string: origin)?.host, Self.isLocalHostName(host) else {
                return "requests from the web page \(origin) are not allowed"
            }
        }
        if request.headers.first(name: "sec-fetch-site")?.lowercased() == "cross-site" {
            return "cross-site requests are not allowed"
        }
        return nil
    }

    static func isLocalHostHeader(_ host: String) -> Bool {
        var name = host
        if name.hasPrefix("[") {
            guard let close = name.firstIndex(of: "]") else { return false }
            name = String(name[name.index(after: name.startIndex)..<close])
        } else if let colon = name.lastIndex(of: ":") {
            name = String(name[..<colon])
        }
        return Self.isLocalHostName(name)
    }

    static func isLocalHostName(_ name: String) -> Bool {
        let lower = name.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return lower == "localhost" || lower.hasSuffix(".localhost") || Loopback.contains(address: lower)
    }

    /// `Authorization: Bearer <adminToken>`, compared in constant time.
    func hasToken(_ request: MonitorRequest) -> Bool {
        guard let value = request.headers.first(name: "authorization") else { return false }
        let parts = value.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return false }
        let given = Array(parts[1].trimmingCharacters(in: .whitespaces).utf8)
        let expected = Array(self.config.adminToken.utf8)
        var difference = UInt8(given.count == expected.count ? 0 : 1)
        for index in 0..<expected.count {
            difference |= expected[index] ^ (index < given.count ? given[index] : 0)
        }
        return difference == 0
    }

    // MARK: - Health and metrics

    func health(now: Date) -> MonitorResponse {
        let snapshot = self.snapshots.latest
        let facts = MonitorSpoolFacts.gather(spool: self.spool, probes: self.probes)
        let verdict = MonitorHealth.evaluate(snapshot: snapshot, spool: facts, now: now)
        let metrics = snapshot?.snapshot ?? MonitorSnapshot()
        let delivered = metrics.counter(MonitorMetricNames.delivered)
        let failed = metrics.counter(MonitorMetricNames.failed)
        let successRate = delivered + failed > 0 ? (delivered / (delivered + failed) * 10_000).rounded() / 100 : 100

        let workers: [MonitorJSON] = metrics.workers.map { worker in
            .object([
                ("role", .string(worker.role)),
                ("pid", .int(Int(worker.pid))),
                ("state", .string(worker.state)),
                ("restarts", .int(worker.restarts)),
                ("generation", .int(worker.generation)),
            ])
        }
        let providers: [MonitorJSON] = self.providerStates(metrics).map { name, open in
            .object([("name", .string(name)), ("circuit", .string(open ? "open" : "closed"))])
        }
        let document = MonitorJSON.object([
            ("status", .string(verdict.status.rawValue)),
            ("timestamp", .string(MonitorClock.rfc3339(now))),
            ("details", .object([
                ("disk_space_available_mb", MonitorJSON.optional(facts.diskFreeBytes) { .int(Int($0 / 1_048_576)) }),
                ("queued_emails", .int(facts.queued)),
                ("failed_emails", .int(facts.failed)),
                ("total_emails_processed", .int(Int(metrics.counter(MonitorMetricNames.accepted)))),
                ("success_rate", .double(successRate)),
                ("oldest_queued_seconds", MonitorJSON.optional(facts.oldestQueuedAge) { .int(Int($0)) }),
                ("spool_writable", .bool(facts.writable)),
                ("deliveries_paused", .bool(metrics.paused)),
                ("workers", .array(workers)),
                ("providers", .array(providers)),
                ("problems", .array(verdict.problems.map { .string($0) })),
            ])),
        ])
        return .json(verdict.status == .error ? .serviceUnavailable : .ok, document)
    }

    /// The configured providers in the order they are tried, and any other the forwarder reported on,
    /// each with its circuit state.
    func providerStates(_ metrics: MonitorSnapshot) -> [(String, Bool)] {
        var open: [String: Bool] = [:]
        var reported: [String] = []
        for series in metrics.gauges where series.name == MonitorMetricNames.circuitOpen {
            guard let name = MonitorLabels.parse(series.labels).first(where: { $0.0 == "provider" })?.1 else { continue }
            if open[name] == nil { reported.append(name) }
            open[name] = series.value > 0
        }
        var result: [(String, Bool)] = []
        let configured = self.config.forwardSMTP ? self.config.orderedProviders.map(\.name) : []
        for name in configured + reported where !result.contains(where: { $0.0 == name }) {
            result.append((name, open[name] ?? false))
        }
        return result
    }

    func metrics(_ request: MonitorRequest, now: Date) -> MonitorResponse {
        let snapshot = self.snapshots.latest
        if Self.wantsJSON(request) {
            let metrics = snapshot?.snapshot ?? MonitorSnapshot()
            let latency = metrics.histograms.filter { $0.name == MonitorMetricNames.deliverySeconds }
            let count = latency.reduce(0) { $0 + $1.count }
            let sum = latency.reduce(0) { $0 + $1.sum }
            let average = count > 0 ? (sum / Double(count) * 1000 * 100).rounded() / 100 : 0
            return .json(.ok, .object([
                ("total_emails", .int(Int(metrics.counter(MonitorMetricNames.accepted)))),
                ("successful_emails", .int(Int(metrics.counter(MonitorMetricNames.delivered)))),
                ("failed_emails", .int(Int(metrics.counter(MonitorMetricNames.failed)))),
                ("total_recipients", .int(Int(metrics.counter(MonitorMetricNames.acceptedRecipients)))),
                ("avg_processing_time_ms", .double(average)),
            ]))
        }
        let facts = MonitorSpoolFacts.gather(spool: self.spool, probes: self.probes)
        let text = MonitorPrometheus.render(snapshot: snapshot, spool: facts, now: now)
        return MonitorResponse(status: .ok, headers: [("Content-Type", MonitorResponse.prometheusType)], body: text)
    }

    /// `?format=json`, or an `Accept` that names application/json (Prometheus never does).
    static func wantsJSON(_ request: MonitorRequest) -> Bool {
        if let format = request.query["format"] { return format.lowercased() == "json" }
        return request.headers[canonicalForm: "accept"].contains { range in
            range.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() == "application/json"
        }
    }
}
