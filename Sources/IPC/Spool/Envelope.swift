import Foundation

/// Everything about a message except its content: who sent it, to whom, what happened to each
/// recipient so far. Stored in the same spool file as the message, so one rename commits both.
public struct Envelope: Codable, Sendable, Equatable {
    public var id: String
    /// Reverse path without angle brackets ("" for the null sender).
    public var sender: String
    public var recipients: [Recipient]
    /// Seconds since the epoch.
    public var receivedAt: Double
    /// The client's address as "ip:port".
    public var client: String
    public var helo: String
    /// The account that authenticated the session, if any.
    public var authIdentity: String?
    public var smtputf8: Bool
    public var eightBit: Bool
    /// Size of the stored message in bytes, added headers included.
    public var size: Int
    public var attempts: Int
    /// Seconds since the epoch of the next delivery attempt (deferred messages).
    public var nextAttemptAt: Double?
    public var history: [Attempt]
    public var lastError: String?

    public init(
        id: String, sender: String, recipients: [String], receivedAt: Double, client: String, helo: String,
        authIdentity: String? = nil, smtputf8: Bool = false, eightBit: Bool = false, size: Int = 0
    ) {
        self.id = id
        self.sender = sender
        self.recipients = recipients.map { Recipient(address: $0) }
        self.receivedAt = receivedAt
        self.client = client
        self.helo = helo
        self.authIdentity = authIdentity
        self.smtputf8 = smtputf8
        self.eightBit = eightBit
        self.size = size
        self.attempts = 0
        self.nextAttemptAt = nil
        self.history = []
        self.lastError = nil
    }

    public struct Recipient: Codable, Sendable, Equatable {
        public enum State: String, Codable, Sendable {
            /// Not yet delivered: tried on the next attempt.
            case pending
            /// Accepted by an upstream (or stored locally).
            case delivered
            /// Rejected for good (5xx) or given up after the queue lifetime.
            case failed
        }

        public var address: String
        public var state: State
        /// The last reply about this recipient, as the upstream gave it.
        public var reply: String?

        public init(address: String, state: State = .pending, reply: String? = nil) {
            self.address = address
            self.state = state
            self.reply = reply
        }
    }

    /// One delivery attempt, kept so that a person reading `failed/` sees what happened.
    public struct Attempt: Codable, Sendable, Equatable {
        public var at: Double
        public var route: String
        public var recipients: [String]
        public var reply: String
        public var durationMs: Int

        public init(at: Double, route: String, recipients: [String], reply: String, durationMs: Int) {
            self.at = at
            self.route = route
            self.recipients = recipients
            self.reply = reply
            self.durationMs = durationMs
        }
    }

    public var pendingRecipients: [String] { self.recipients.filter { $0.state == .pending }.map(\.address) }
    public var hasFailedRecipients: Bool { self.recipients.contains { $0.state == .failed } }
}
