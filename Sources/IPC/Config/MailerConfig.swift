import Foundation

/// The whole configuration of `mailer`: every key of the original Go service with its default, plus
/// the keys this implementation adds. See `config.example.json` for the documented file.
public struct MailerConfig: Sendable, Equatable {
    // MARK: - The original's keys

    public var smtpHost = "127.0.0.1"
    public var smtpPort = 25
    public var defaultUsername = ""
    public var defaultPassword = ""

    public var forwardSMTP = false
    public var forwardHost = ""
    public var forwardPort = 587
    public var forwardUsername = ""
    public var forwardPassword = ""
    public var forwardSSL = false
    public var forwardProviders: [Provider] = []

    public var directDelivery = DirectDelivery()
    public var dkim = DKIM()

    public var batchSize = 20
    /// Milliseconds between two batches of one message.
    public var batchDelay = 1000
    public var enableHealthCheck = true
    public var healthCheckPort = 8025

    public var rateLimits = RateLimits()
    public var security = Security()

    public var workerCount = 5
    public var queueSize = 1000
    /// Seconds one delivery attempt may take, all commands included.
    public var processingTimeout = 300
    public var continueOnError = true

    // MARK: - Keys added by mailer

    /// Spool, failed mail and local copies live under it (the original's `emails/`).
    public var dataDir = "emails"
    /// The unprivileged user the workers run as when started by root.
    public var user = "mailer"
    /// The name this relay gives itself in its greeting, `Received:` and EHLO.
    public var hostname = MailerConfig.systemHostname()
    public var limits = Limits()
    public var queue = Queue()
    public var tls = TLS()
    public var circuitBreaker = CircuitBreaker()
    /// Bearer token the admin API requires when non-empty.
    public var adminToken = ""
    /// Also append log lines to this file (for logrotate) when non-empty.
    public var logFile = ""
    /// Seconds old workers get to finish their sessions on reload and stop.
    public var drainTimeout = 30
    /// Seconds a worker may leave the supervisor's pings unanswered before it is killed and restarted.
    public var heartbeatTimeout = 30
    /// Additional SMTP AUTH accounts besides defaultUsername.
    public var users: [User] = []

    public init() {}

    // MARK: - Nested sections

    public struct Provider: Sendable, Equatable {
        public var name = ""
        public var host = ""
        public var port = 587
        public var username = ""
        public var password = ""
        public var ssl = false
        public var priority = 0
        /// Accept a certificate that does not verify. Off by default; for test rigs only.
        public var insecureSkipVerify = false
        /// PEM file of the certificate authorities to trust for this provider instead of the system
        /// trust store ("" = the system's).
        public var caFile = ""
        public init() {}
    }

    public struct DirectDelivery: Sendable, Equatable {
        public var enabled = false
        public var ehloDomain = ""
        public var insecureSkipVerify = false
        public var retryCount = 3
        /// Port of the MX hosts (25); other values only for test rigs.
        public var port = 25
        /// Resolver to ask for MX records ("" = the system's, or "host:port").
        public var nameserver = ""
        public init() {}
    }

    public struct DKIM: Sendable, Equatable {
        public var enabled = false
        public var domain = ""
        public var selector = "mail"
        public var privateKeyPath = ""
        public var headersToSign = ["From", "To", "Subject", "Date", "Message-ID", "Cc", "Reply-To", "MIME-Version",
                                    "Content-Type", "Content-Transfer-Encoding"]
        /// Seconds a signature stays valid (`x=`).
        public var signatureExpiry = 604_800
        public init() {}
    }

    public struct RateLimits: Sendable, Equatable {
        public var enabled = false
        public var maxPerHour = 500
        public var maxPerDay = 2000
        /// 0 = no global limit.
        public var globalMaxPerHour = 0
        public var globalMaxPerDay = 0
        public init() {}
    }

    public struct Security: Sendable, Equatable {
        public var allowLocalOnly = true
        public var logAllEmails = true
        public var requireAuth = true
        public init() {}
    }

    public struct Limits: Sendable, Equatable {
        public var maxMessageSize = 10 * 1024 * 1024
        public var maxRecipients = 1000
        public var maxConnections = 100
        /// Seconds a session may stay silent.
        public var idleTimeout = 300
        /// Bad commands in one session before a 421 and disconnect.
        public var maxErrors = 10
        /// Longest command or message line, CRLF included.
        public var maxLineLength = 2000
        public init() {}
    }

    public struct Queue: Sendable, Equatable {
        public var retryInitialDelay = 60
        public var retryMaxDelay = 3600
        public var maxQueueLifetime = 432_000
        /// Seconds between two full scans of the spool by the forwarder.
        public var scanInterval = 30
        public init() {}
    }

    public struct TLS: Sendable, Equatable {
        public var certFile = ""
        public var keyFile = ""
        public init() {}
    }

    public struct CircuitBreaker: Sendable, Equatable {
        public var failureThreshold = 5
        /// Seconds a tripped provider is skipped before it is probed again.
        public var cooldown = 60
        public init() {}
    }

    public struct User: Sendable, Equatable {
        public var username: String
        public var password: String
        public init(username: String, password: String) {
            self.username = username
            self.password = password
        }
    }

    static func systemHostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
        let name = String(cString: buffer)
        return name.isEmpty ? "localhost" : name
    }
}

// MARK: - Derived values

extension MailerConfig {
    /// Upstream providers in the order they are tried: ascending priority, then file order. The
    /// legacy `forwardHost` keys become one more provider after those of `forwardProviders`.
    public var orderedProviders: [Provider] {
        var all = self.forwardProviders
        if !self.forwardHost.isEmpty {
            var legacy = Provider()
            legacy.host = self.forwardHost
            legacy.port = self.forwardPort
            legacy.username = self.forwardUsername
            legacy.password = self.forwardPassword
            legacy.ssl = self.forwardSSL
            legacy.priority = (all.map(\.priority).max() ?? -1) + 1
            all.append(legacy)
        }
        for index in all.indices where all[index].name.isEmpty {
            all[index].name = "\(all[index].host):\(all[index].port)"
        }
        return all.enumerated().sorted { ($0.element.priority, $0.offset) < ($1.element.priority, $1.offset) }
            .map(\.element)
    }

    /// Username → password of every SMTP AUTH account.
    public var credentials: [String: String] {
        var all: [String: String] = [:]
        for user in self.users { all[user.username] = user.password }
        if !self.defaultUsername.isEmpty { all[self.defaultUsername] = self.defaultPassword }
        return all
    }

    /// AUTH is required before MAIL when accounts exist and `security.requireAuth` is set, or when
    /// `defaultUsername` is set (as in the original).
    public var authRequired: Bool {
        !self.defaultUsername.isEmpty || (self.security.requireAuth && !self.credentials.isEmpty)
    }

    /// Mail is stored as `.eml` files under the data directory instead of being sent.
    public var localMode: Bool { !self.forwardSMTP && !self.directDelivery.enabled }

    public var spoolDirectory: String { (self.dataDir as NSString).appendingPathComponent("queue") }
}

// MARK: - Masking

/// Masks a secret as the original does: the first two and last two characters, stars between.
public func maskSecret(_ secret: String) -> String {
    if secret.isEmpty { return "" }
    let characters = Array(secret)
    if characters.count <= 4 { return String(repeating: "*", count: characters.count) }
    return String(characters.prefix(2)) + String(repeating: "*", count: characters.count - 4)
        + String(characters.suffix(2))
}

// MARK: - Least knowledge

extension MailerConfig {
    /// The configuration with the secrets `role` has no use for withheld: the receiver keeps the AUTH
    /// accounts, the forwarder the providers' passwords, the monitor the admin token. A compromised
    /// worker then holds only its own secrets. A withheld secret stays non-empty when it was set, so
    /// what depends on "is one set" (and `/admin/config`'s `***`) reads the same.
    public func keepingSecrets(for role: WorkerRole) -> MailerConfig {
        func withhold(_ secret: String) -> String { secret.isEmpty ? "" : Self.withheldSecret }
        var c = self
        if role != .receiver {
            c.defaultPassword = withhold(c.defaultPassword)
            c.users = c.users.map { User(username: $0.username, password: withhold($0.password)) }
        }
        if role != .forwarder {
            c.forwardPassword = withhold(c.forwardPassword)
            for i in c.forwardProviders.indices {
                c.forwardProviders[i].password = withhold(c.forwardProviders[i].password)
            }
        }
        if role != .monitor { c.adminToken = withhold(c.adminToken) }
        return c
    }

    /// What a withheld secret reads as.
    public static let withheldSecret = "(withheld)"
}
