import Foundation
import IPC
import Logging
import NIOHTTP1

/// The admin endpoints. Each action that changes something is logged with the client's address.
extension MonitorRouter {
    /// Where `clean-queue` deletes from: messages not yet claimed. `active/` is left alone: a forwarder
    /// holds those and is talking to an upstream about them right now.
    static let cleanableStates: [Spool.State] = [.new, .deferred, .hold]

    // MARK: - POST /admin/retry-failed

    /// Moves every message in failed/ back to new/ (failed recipients become pending again, the retry
    /// clock starts over) and wakes the forwarders.
    func retryFailed(client: String) -> MonitorResponse {
        self.adminLock.lock()
        var requeued = 0
        var errors: [String] = []
        for id in self.spool.names(in: .failed) where QueueID.isValid(id) {
            do {
                try self.spool.move(id, from: .failed, to: .new)
                requeued += 1
            } catch {
                errors.append("\(id): \(error)")
            }
        }
        self.adminLock.unlock()
        if requeued > 0 { self.actions.wakeForwarders() }
        self.logger.notice("admin: retry-failed", metadata: [
            "client": "\(client)", "requeued": "\(requeued)", "errors": "\(errors.count)",
        ])
        for error in errors.prefix(10) { self.logger.warning("admin: retry-failed could not re-queue \(error)") }
        return .ok("\(requeued) messages re-queued", [
            ("requeued", .int(requeued)),
            ("errors", .array(errors.map { .string($0) })),
        ])
    }

    // MARK: - POST /admin/clean-queue

    /// Deletes the messages waiting in new/, deferred/ and hold/ (or only the `state` given in the
    /// query or the JSON body). Messages being delivered and failed mail are kept.
    func cleanQueue(_ request: MonitorRequest, client: String, now: Date) -> MonitorResponse {
        let parameters: [String: JSONValue]
        switch self.parameters(request, now: now) {
        case .success(let found): parameters = found
        case .failure(let refusal): return refusal.response
        }
        var states = Self.cleanableStates
        if let value = parameters["state"] {
            guard case .string(let name) = value, let state = Spool.State(rawValue: name),
                  Self.cleanableStates.contains(state) else {
                return .error(.badRequest, "state must be one of new, deferred, hold", now: now)
            }
            states = [state]
        }
        self.adminLock.lock()
        var removed = 0
        for state in states {
            for id in self.spool.names(in: state) where QueueID.isValid(id) {
                // A forwarder may claim it meanwhile; then the unlink finds nothing and it is not counted.
                if (try? self.spool.remove(id, from: state)) != nil { removed += 1 }
            }
        }
        self.adminLock.unlock()
        let names = states.map(\.rawValue).joined(separator: ",")
        self.logger.notice("admin: clean-queue", metadata: ["client": "\(client)", "removed": "\(removed)",
                                                            "states": "\(names)"])
        return .ok("\(removed) messages removed from the queue", [
            ("removed", .int(removed)),
            ("states", .array(states.map { .string($0.rawValue) })),
        ])
    }

    // MARK: - POST /admin/clean-old-emails

    /// Deletes files older than `days` (query or JSON body, default 30) from failed/ and local/, by
    /// their modification time: when the message failed, or when it was stored locally.
    func cleanOldEmails(_ request: MonitorRequest, client: String, now: Date) -> MonitorResponse {
        let parameters: [String: JSONValue]
        switch self.parameters(request, now: now) {
        case .success(let found): parameters = found
        case .failure(let refusal): return refusal.response
        }
        var days = Self.defaultCleanDays
        if let value = parameters["days"] {
            guard let number = Self.integer(value), number >= 0, number <= 36_500 else {
                return .error(.badRequest, "days must be a whole number from 0 to 36500", now: now)
            }
            days = number
        }
        let cutoff = now.timeIntervalSince1970 - Double(days) * 86_400
        self.adminLock.lock()
        let failed = Self.removeFiles(in: self.spool.directory(.failed), olderThan: cutoff) { QueueID.isValid($0) }
        let local = Self.removeFiles(in: self.spool.localDirectory, olderThan: cutoff) { !$0.hasPrefix(".") }
        self.adminLock.unlock()
        self.logger.notice("admin: clean-old-emails", metadata: [
            "client": "\(client)", "days": "\(days)", "failed": "\(failed)", "local": "\(local)",
        ])
        return .ok("\(failed + local) files older than \(days) days removed", [
            ("days", .int(days)),
            ("removed_failed", .int(failed)),
            ("removed_local", .int(local)),
        ])
    }

    /// Unlinks the regular files in `directory` whose mtime is before `cutoff`; returns how many.
    static func removeFiles(in directory: String, olderThan cutoff: Double, where accept: (String) -> Bool) -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return 0 }
        var removed = 0
        for name in names where accept(name) {
            let path = (directory as NSString).appendingPathComponent(name)
            var info = stat()
            guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
            if Double(info.st_mtim.tv_sec) < cutoff && unlink(path) == 0 { removed += 1 }
        }
        return removed
    }

    // MARK: - POST /admin/service

    /// `{"action":"pause"}` stops deliveries (the receiver keeps accepting and spooling);
    /// `{"action":"resume"}` starts them again. Relayed by the supervisor to every forwarder, and
    /// remembered there for forwarders started later.
    func service(_ request: MonitorRequest, client: String, now: Date) -> MonitorResponse {
        let parameters: [String: JSONValue]
        switch self.parameters(request, now: now) {
        case .success(let found): parameters = found
        case .failure(let refusal): return refusal.response
        }
        guard case .string(let action)? = parameters["action"], action == "pause" || action == "resume" else {
            return .error(.badRequest, "action must be \"pause\" or \"resume\"", now: now)
        }
        guard self.actions.relay(action) else {
            self.logger.error("admin: cannot reach the supervisor to \(action)", metadata: ["client": "\(client)"])
            return .error(.serviceUnavailable, "the supervisor cannot be reached", now: now)
        }
        self.logger.notice("admin: service \(action)", metadata: ["client": "\(client)"])
        return .ok(action == "pause" ? "deliveries paused" : "deliveries resumed", [("action", .string(action))])
    }

    // MARK: - GET /admin/config

    func showConfig(client: String) -> MonitorResponse {
        self.logger.info("admin: config read", metadata: ["client": "\(client)"])
        return .json(.ok, .object([("status", .string("ok")), ("config", self.config.redactedJSON)]))
    }

    // MARK: - GET /admin/queue

    /// Every message in the spool (new, active, deferred, hold, failed), oldest first, at most `limit`
    /// (query, default 1000); `state` in the query keeps one state.
    func listQueue(_ request: MonitorRequest, client: String, now: Date) -> MonitorResponse {
        // Senders and recipients are personal data: who read them is logged, as every admin action.
        self.logger.info("admin: queue listed", metadata: ["client": "\(client)"])
        let query = request.query
        var states: [Spool.State] = [.new, .active, .deferred, .hold, .failed]
        if let name = query["state"] {
            guard let state = Spool.State(rawValue: name), state != .tmp else {
                return .error(.badRequest, "state must be one of new, active, deferred, hold, failed", now: now)
            }
            states = [state]
        }
        var limit = 1000
        if let text = query["limit"] {
            guard let number = Int(text), number > 0 else {
                return .error(.badRequest, "limit must be a positive whole number", now: now)
            }
            limit = min(number, 100_000)
        }
        var entries: [(id: String, state: Spool.State)] = []
        for state in states {
            entries += self.spool.names(in: state).filter(QueueID.isValid).map { (id: $0, state: state) }
        }
        entries.sort { $0.id < $1.id }
        let total = entries.count
        var messages: [MonitorJSON] = []
        for entry in entries.prefix(limit) {
            // Gone between the listing and the read (delivered, claimed): left out.
            guard let envelope = try? self.spool.envelope(of: entry.id, in: entry.state) else { continue }
            messages.append(.object([
                ("id", .string(entry.id)),
                ("state", .string(entry.state.rawValue)),
                ("age_seconds", .int(max(0, Int(now.timeIntervalSince1970 - envelope.receivedAt)))),
                ("sender", .string(envelope.sender)),
                ("recipients", .int(envelope.recipients.count)),
                ("size", .int(envelope.size)),
                ("attempts", .int(envelope.attempts)),
                ("next_attempt", MonitorJSON.optional(envelope.nextAttemptAt) {
                    .string(MonitorClock.rfc3339(Date(timeIntervalSince1970: $0)))
                }),
                ("last_error", MonitorJSON.optional(envelope.lastError) { .string($0) }),
            ]))
        }
        return .json(.ok, .object([
            ("status", .string("ok")),
            ("total", .int(total)),
            ("count", .int(messages.count)),
            ("messages", .array(messages)),
        ]))
    }

    // MARK: - GET /admin/queue/{id}

    func showMessage(_ id: String, client: String, now: Date) -> MonitorResponse {
        guard QueueID.isValid(id) else { return .error(.badRequest, "not a queue id: \(id)", now: now) }
        self.logger.info("admin: queue entry read", metadata: ["client": "\(client)", "id": "\(id)"])
        // A message may change state between locate and read; a few tries find it where it went.
        for _ in 0..<3 {
            guard let state = self.spool.locate(id) else { break }
            guard let envelope = try? self.spool.envelope(of: id, in: state) else { continue }
            return .json(.ok, .object([
                ("status", .string("ok")),
                ("message", Self.describe(envelope, state: state, now: now)),
            ]))
        }
        return .error(.notFound, "no message \(id) in the queue", now: now)
    }

    static func describe(_ envelope: Envelope, state: Spool.State, now: Date) -> MonitorJSON {
        func time(_ seconds: Double) -> MonitorJSON { .string(MonitorClock.rfc3339(Date(timeIntervalSince1970: seconds))) }
        return .object([
            ("id", .string(envelope.id)),
            ("state", .string(state.rawValue)),
            ("sender", .string(envelope.sender)),
            ("recipients", .array(envelope.recipients.map { recipient in
                .object([
                    ("address", .string(recipient.address)),
                    ("state", .string(recipient.state.rawValue)),
                    ("reply", MonitorJSON.optional(recipient.reply) { .string($0) }),
                ])
            })),
            ("received_at", time(envelope.receivedAt)),
            ("age_seconds", .int(max(0, Int(now.timeIntervalSince1970 - envelope.receivedAt)))),
            ("client", .string(envelope.client)),
            ("helo", .string(envelope.helo)),
            ("auth_identity", MonitorJSON.optional(envelope.authIdentity) { .string($0) }),
            ("size", .int(envelope.size)),
            ("smtputf8", .bool(envelope.smtputf8)),
            ("eight_bit", .bool(envelope.eightBit)),
            ("attempts", .int(envelope.attempts)),
            ("next_attempt", MonitorJSON.optional(envelope.nextAttemptAt) { time($0) }),
            ("last_error", MonitorJSON.optional(envelope.lastError) { .string($0) }),
            ("history", .array(envelope.history.map { attempt in
                .object([
                    ("at", time(attempt.at)),
                    ("route", .string(attempt.route)),
                    ("recipients", .array(attempt.recipients.map { .string($0) })),
                    ("reply", .string(attempt.reply)),
                    ("duration_ms", .int(attempt.durationMs)),
                ])
            })),
        ])
    }

    // MARK: - Parameters

    struct Refusal: Error {
        let response: MonitorResponse
    }

    /// The query parameters, overlaid by the members of a JSON object body (an empty body is fine).
    func parameters(_ request: MonitorRequest, now: Date) -> Result<[String: JSONValue], Refusal> {
        var result: [String: JSONValue] = [:]
        for (name, value) in request.query { result[name] = .string(value) }
        let body = request.body.drop { $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }
        guard !body.isEmpty else { return .success(result) }
        guard let parsed = try? JSONValue.parse(Data(body)), case .object(let members) = parsed else {
            return .failure(Refusal(response: .error(.badRequest, "the request body is not a JSON object", now: now)))
        }
        result.merge(members) { _, body in body }
        return .success(result)
    }

    /// A whole number from JSON or a query string ("7", 7, 7.0).
    static func integer(_ value: JSONValue) -> Int? {
        switch value {
        case .int(let number): return number
        case .double(let number) where number == number.rounded() && abs(number) < 1e9: return Int(number)
        case .string(let text): return Int(text.trimmingCharacters(in: .whitespaces))
        default: return nil
        }
    }
}
