import Foundation
import IPC
import Logging
import SMTPCore

/// One delivery attempt of one claimed message, and what becomes of it: the pending recipients go
/// in batches of `batchSize` (with `batchDelay` between them) along the route, each batch failing
/// over from hop to hop on connection, TLS, AUTH errors and 4xx; then the message leaves the queue,
/// is deferred with backoff, or is kept in `failed/` with every reply and the attempt history.
final class ForwarderDelivery: @unchecked Sendable {
    enum Mode {
        /// Stored as `local/<ID>.eml` (forwarding off, no direct delivery): `Spool.storeLocalCopy`.
        case local
        /// Sent along a route with a transport.
        case route(any ForwarderRoute, any ForwarderTransport)
    }

    /// What an attempt did to the recipients, for counters and the finish.
    struct Report: Equatable {
        var delivered = 0
        var failed = 0
        /// The hop that accepted the last recipients ("local" in local mode).
        var deliveredVia: String?
        /// Something was tried. A pass in which every provider was skipped (circuit open) is not an
        /// attempt: it does not lengthen the backoff.
        var tried = false
    }

    let spool: Spool
    let mode: Mode
    let transforms: [any ForwarderMessageTransform]
    let breaker: ForwarderCircuitBreaker
    let policy: ForwarderRetryPolicy
    let batchSize: Int
    /// Milliseconds between two batches of one message.
    let batchDelay: Int
    let reporter: StatusReporter
    let logger: Logger
    let clock: @Sendable () -> Date
    let sleep: @Sendable (Int) -> Void
    /// Entries of `Envelope.history` kept (the newest).
    static let historyLimit = 100

    init(spool: Spool, mode: Mode, transforms: [any ForwarderMessageTransform] = [], breaker: ForwarderCircuitBreaker,
         policy: ForwarderRetryPolicy, batchSize: Int, batchDelay: Int, reporter: StatusReporter, logger: Logger,
         clock: @escaping @Sendable () -> Date = { Date() },
         sleep: @escaping @Sendable (Int) -> Void = { usleep(useconds_t(max(0, $0)) * 1000) }) {
        self.spool = spool
        self.mode = mode
        self.transforms = transforms
        self.breaker = breaker
        self.policy = policy
        self.batchSize = max(1, batchSize)
        self.batchDelay = batchDelay
        self.reporter = reporter
        self.logger = logger
        self.clock = clock
        self.sleep = sleep
    }

    // MARK: - One message

    /// Delivers what is pending of `claim` and records the outcome in the spool. Never throws: a
    /// spool error is logged and the file stays in `active/`, unlocked, to be claimed again.
    func deliver(_ claim: ClaimedMessage) {
        var envelope = claim.envelope
        let message: [UInt8]
        do {
            message = try claim.readMessage()
        } catch {
            self.logger.error("cannot read the message: \(error)", metadata: ["id": "\(envelope.id)"])
            return
        }
        let report = self.attempt(&envelope, message: message)
        self.finish(claim, envelope: envelope, report: report)
    }

    /// Tries every pending recipient once; updates their states, replies and the history.
    func attempt(_ envelope: inout Envelope, message: [UInt8]) -> Report {
        var report = Report()
        defer { if report.tried { envelope.attempts += 1 } }
        switch self.mode {
        case .local:
            report.tried = true
            let started = self.clock()
            let pending = envelope.recipients.indices.filter { envelope.recipients[$0].state == .pending }
            let reply: String
            do {
                try self.spool.storeLocalCopy(id: envelope.id, message: message)
                reply = "250 2.0.0 stored as local/\(envelope.id).eml"
                for index in pending {
                    envelope.recipients[index].state = .delivered
                    envelope.recipients[index].reply = reply
                }
                report.delivered = pending.count
                report.deliveredVia = "local"
                self.record(&envelope, hop: "local", positions: pending, reply: reply, outcome: "success", started: started)
            } catch {
                reply = "451 4.3.0 cannot store the message locally: \(error)"
                for index in pending { envelope.recipients[index].reply = reply }
                envelope.lastError = reply
                self.record(&envelope, hop: "local", positions: pending, reply: reply, outcome: "temporary", started: started)
            }
        case .route(let route, let transport):
            let body: [UInt8]
            do {
                body = try self.transforms.apply(to: message, envelope: envelope)
            } catch {
                envelope.lastError = "message transform failed: \(error)"
                self.logger.error("message transform failed: \(error)", metadata: ["id": "\(envelope.id)"])
                report.tried = true
                return report
            }
            let pending = envelope.recipients.indices.filter { envelope.recipients[$0].state == .pending }
            for (number, batch) in ForwarderRetryPolicy.batches(pending, size: self.batchSize).enumerated() {
                if number > 0 && self.batchDelay > 0 { self.sleep(self.batchDelay) }
                let addresses = batch.map { envelope.recipients[$0].address }
                for leg in route.legs(for: addresses) {
                    self.deliver(leg: leg, positions: batch, envelope: &envelope, body: body, transport: transport,
                                 report: &report)
                }
            }
        }
        return report
    }

    /// One leg of one batch: hop after hop until no recipient is left waiting.
    private func deliver(leg: ForwarderRouteLeg, positions batch: [Int], envelope: inout Envelope, body: [UInt8],
                         transport: any ForwarderTransport, report: inout Report) {
        // Back from addresses to positions; a recipient given twice keeps both of its positions.
        var used = Set<Int>()
        var remaining: [Int] = []
        for address in leg.recipients {
            if let position = batch.first(where: { !used.contains($0) && envelope.recipients[$0].address == address }) {
                used.insert(position)
                remaining.append(position)
            }
        }
        var tried = 0
        var skipped = 0
        /// The refusal of each provider that cannot take this message at all (no SMTPUTF8, over its SIZE).
        var refusedLocally: [SMTPReply] = []
        for hop in leg.hops where !remaining.isEmpty {
            guard self.breaker.admit(hop.name, now: self.clock()) else {
                self.logger.debug("provider skipped: circuit open", metadata: ["id": "\(envelope.id)", "provider": "\(hop.name)"])
                skipped += 1
                continue
            }
            tried += 1
            report.tried = true
            let started = self.clock()
            let transaction = SMTPClientTransaction(
                sender: envelope.sender, recipients: remaining.map { envelope.recipients[$0].address },
                size: body.count, eightBit: envelope.eightBit, smtputf8: envelope.smtputf8)
            do {
                let result = try transport.send(transaction, message: body, via: hop)
                if result.refusedLocally {
                    // Nothing was sent: this provider cannot take the message, the next one may.
                    refusedLocally.append(result.summary)
                    let reply = "\(hop.name): \(result.summary)"
                    for position in remaining { envelope.recipients[position].reply = reply }
                    envelope.lastError = reply
                    self.record(&envelope, hop: hop.name, positions: remaining, reply: result.summary.description,
                                outcome: "permanent", started: started)
                    continue
                }
                var stillPending: [Int] = []
                var accepted = 0
                var refused = 0
                for (position, reply) in zip(remaining, result.replies) {
                    envelope.recipients[position].reply = reply.description
                    if reply.isPositive {
                        envelope.recipients[position].state = .delivered
                        accepted += 1
                    } else if reply.isPermanent {
                        envelope.recipients[position].state = .failed
                        refused += 1
                    } else {
                        stillPending.append(position)
                    }
                }
                let outcome = stillPending.isEmpty ? (refused == 0 ? "success" : "permanent")
                    : (refused == 0 ? "temporary" : "permanent")
                if accepted > 0 || refused > 0 {
                    self.breaker.recordSuccess(hop.name)
                } else {
                    self.breaker.recordFailure(hop.name, now: self.clock())
                }
                if accepted > 0 {
                    report.delivered += accepted
                    report.deliveredVia = hop.name
                    self.reporter.count("mailer_delivered_recipients_total", "provider=\(hop.name)", by: accepted)
                }
                report.failed += refused
                if !stillPending.isEmpty || refused > 0 { envelope.lastError = "\(hop.name): \(result.summary)" }
                self.record(&envelope, hop: hop.name, positions: remaining,
                            reply: Self.describe(result, count: remaining.count), outcome: outcome, started: started)
                remaining = stillPending
            } catch {
                let failure = error as? ForwarderAttemptError ?? ForwarderAttemptError(.temporary, "\(error)")
                self.breaker.recordFailure(hop.name, now: self.clock())
                let reply = "\(hop.name): \(failure.description)"
                for position in remaining { envelope.recipients[position].reply = reply }
                envelope.lastError = reply
                self.record(&envelope, hop: hop.name, positions: remaining, reply: failure.description,
                            outcome: failure.outcome.rawValue, started: started)
            }
        }
        if !remaining.isEmpty, let refusal = refusedLocally.last, refusedLocally.count == tried, skipped == 0 {
            // Every provider refused the message itself: no retry can change that.
            let reply = "\(refusal) (every provider refused the message: \(leg.hops.map(\.name).joined(separator: ", ")))"
            for position in remaining {
                envelope.recipients[position].state = .failed
                envelope.recipients[position].reply = reply
            }
            report.failed += remaining.count
            envelope.lastError = reply
        }
        if !remaining.isEmpty && tried == 0 {
            let reply = leg.hops.isEmpty ? "no route: no upstream provider is configured"
                : "every provider skipped: circuit open (\(leg.hops.map(\.name).joined(separator: ", ")))"
            for position in remaining { envelope.recipients[position].reply = reply }
            envelope.lastError = reply
            self.logger.warning("delivery postponed: \(reply)", metadata: ["id": "\(envelope.id)"])
        }
    }

    // MARK: - Finishing

    /// Moves the message on: all recipients ended and none failed → gone; some still pending →
    /// deferred (or failed once too old); otherwise → `failed/`.
    func finish(_ claim: ClaimedMessage, envelope original: Envelope, report: Report) {
        var envelope = original
        let now = self.clock()
        var newlyFailed = report.failed
        do {
            if !envelope.pendingRecipients.isEmpty {
                if self.policy.isExpired(receivedAt: envelope.receivedAt, now: now) {
                    let seconds = Int(now.timeIntervalSince1970 - envelope.receivedAt)
                    for index in envelope.recipients.indices where envelope.recipients[index].state == .pending {
                        let last = envelope.recipients[index].reply ?? envelope.lastError ?? "no attempt succeeded"
                        envelope.recipients[index].state = .failed
                        envelope.recipients[index].reply = "gave up after \(seconds) s in the queue (queue.maxQueueLifetime); last reply: \(last)"
                        newlyFailed += 1
                    }
                    envelope.nextAttemptAt = nil
                    try self.spool.finishFailed(claim, envelope: envelope)
                    self.countFailed(envelope, newlyFailed: newlyFailed, why: "expired")
                } else {
                    let delay = self.policy.delay(afterAttempts: envelope.attempts)
                    let until = now.addingTimeInterval(Double(delay))
                    envelope.nextAttemptAt = until.timeIntervalSince1970
                    try self.spool.finishDeferred(claim, envelope: envelope, until: until)
                    if newlyFailed > 0 { self.reporter.count("mailer_failed_recipients_total", by: newlyFailed) }
                    self.reporter.count("mailer_deferred_total")
                    self.logger.info("message deferred", metadata: [
                        "id": "\(envelope.id)", "pending": "\(envelope.pendingRecipients.count)",
                        "retry_in": "\(delay)s", "attempts": "\(envelope.attempts)",
                    ])
                }
            } else if envelope.hasFailedRecipients {
                try self.spool.finishFailed(claim, envelope: envelope)
                self.countFailed(envelope, newlyFailed: newlyFailed, why: "rejected")
            } else {
                self.spool.finishDelivered(claim)
                self.reporter.count("mailer_delivered_total", "provider=\(report.deliveredVia ?? "unknown")")
            }
        } catch {
            self.logger.error("cannot record the outcome: \(error); the message will be tried again",
                              metadata: ["id": "\(envelope.id)"])
        }
    }

    private func countFailed(_ envelope: Envelope, newlyFailed: Int, why: String) {
        if newlyFailed > 0 { self.reporter.count("mailer_failed_recipients_total", by: newlyFailed) }
        self.reporter.count("mailer_failed_total")
        let failed = envelope.recipients.filter { $0.state == .failed }
        self.logger.warning("message moved to failed/", metadata: [
            "id": "\(envelope.id)", "why": "\(why)", "to": "\(Self.summarize(failed.map(\.address)))",
            "reply": "\(failed.first?.reply ?? "")",
        ])
    }

    // MARK: - Records

    private func record(_ envelope: inout Envelope, hop: String, positions: [Int], reply: String, outcome: String,
                        started: Date) {
        let elapsed = max(0, self.clock().timeIntervalSince(started))
        let addresses = positions.map { envelope.recipients[$0].address }
        envelope.history.append(Envelope.Attempt(
            at: started.timeIntervalSince1970, route: hop, recipients: addresses, reply: reply,
            durationMs: Int(elapsed * 1000)))
        if envelope.history.count > Self.historyLimit {
            envelope.history.removeFirst(envelope.history.count - Self.historyLimit)
        }
        self.reporter.count("mailer_delivery_attempts_total", "outcome=\(outcome),provider=\(hop)")
        self.reporter.observe("mailer_delivery_seconds", "provider=\(hop)", elapsed)
        let metadata: Logger.Metadata = [
            "id": "\(envelope.id)", "provider": "\(hop)", "to": "\(Self.summarize(addresses))",
            "reply": "\(reply)", "ms": "\(Int(elapsed * 1000))", "outcome": "\(outcome)",
        ]
        if outcome == "success" {
            self.logger.info("delivery attempt", metadata: metadata)
        } else {
            self.logger.warning("delivery attempt", metadata: metadata)
        }
    }

    /// The replies of a transaction in one line: the summary, and the refusals by recipient.
    static func describe(_ result: SMTPClientTransactionResult, count: Int) -> String {
        var text = result.summary.description
        let distinct = Set(result.replies.map(\.description))
        if distinct.count > 1 {
            let refused = result.replies.filter { !$0.isPositive }.count
            text += " (\(count - refused) accepted, \(refused) refused)"
        }
        return text
    }

    static func summarize(_ recipients: [String]) -> String {
        let shown = recipients.prefix(3).map { "<\($0)>" }.joined(separator: ",")
        return recipients.count > 3 ? "\(shown),+\(recipients.count - 3) more" : shown
    }
}
