import Foundation
import IPC

extension MailerConfig {
    /// What a non-empty secret is shown as. Not `maskSecret` (which keeps four characters, as the
    /// original's log lines do): an HTTP answer may be copied anywhere, so nothing of a secret leaves.
    static let redacted = "***"

    private static func secret(_ value: String) -> MonitorJSON { .string(value.isEmpty ? "" : Self.redacted) }

    /// The running configuration as `GET /admin/config` shows it, with the original's key names and
    /// every password and the admin token redacted.
    var redactedJSON: MonitorJSON {
        .object([
            ("smtpHost", .string(self.smtpHost)),
            ("smtpPort", .int(self.smtpPort)),
            ("defaultUsername", .string(self.defaultUsername)),
            ("defaultPassword", Self.secret(self.defaultPassword)),
            ("forwardSMTP", .bool(self.forwardSMTP)),
            ("forwardHost", .string(self.forwardHost)),
            ("forwardPort", .int(self.forwardPort)),
            ("forwardUsername", .string(self.forwardUsername)),
            ("forwardPassword", Self.secret(self.forwardPassword)),
            ("forwardSSL", .bool(self.forwardSSL)),
            ("forwardProviders", .array(self.forwardProviders.map { provider in
                .object([
                    ("name", .string(provider.name)),
                    ("host", .string(provider.host)),
                    ("port", .int(provider.port)),
                    ("username", .string(provider.username)),
                    ("password", Self.secret(provider.password)),
                    ("ssl", .bool(provider.ssl)),
                    ("priority", .int(provider.priority)),
                    ("insecureSkipVerify", .bool(provider.insecureSkipVerify)),
                ])
            })),
            ("directDelivery", .object([
                ("enabled", .bool(self.directDelivery.enabled)),
                ("ehloDomain", .string(self.directDelivery.ehloDomain)),
                ("insecureSkipVerify", .bool(self.directDelivery.insecureSkipVerify)),
                ("retryCount", .int(self.directDelivery.retryCount)),
                ("port", .int(self.directDelivery.port)),
                ("nameserver", .string(self.directDelivery.nameserver)),
            ])),
            ("dkim", .object([
                ("enabled", .bool(self.dkim.enabled)),
                ("domain", .string(self.dkim.domain)),
                ("selector", .string(self.dkim.selector)),
                ("privateKeyPath", .string(self.dkim.privateKeyPath)),
                ("headersToSign", .array(self.dkim.headersToSign.map { .string($0) })),
                ("signatureExpiry", .int(self.dkim.signatureExpiry)),
            ])),
            ("batchSize", .int(self.batchSize)),
            ("batchDelay", .int(self.batchDelay)),
            ("enableHealthCheck", .bool(self.enableHealthCheck)),
            ("healthCheckPort", .int(self.healthCheckPort)),
            ("rateLimits", .object([
                ("enabled", .bool(self.rateLimits.enabled)),
                ("maxPerHour", .int(self.rateLimits.maxPerHour)),
                ("maxPerDay", .int(self.rateLimits.maxPerDay)),
                ("globalMaxPerHour", .int(self.rateLimits.globalMaxPerHour)),
                ("globalMaxPerDay", .int(self.rateLimits.globalMaxPerDay)),
            ])),
            ("security", .object([
                ("allowLocalOnly", .bool(self.security.allowLocalOnly)),
                ("logAllEmails", .bool(self.security.logAllEmails)),
                ("requireAuth", .bool(self.security.requireAuth)),
            ])),
            ("workerCount", .int(self.workerCount)),
            ("queueSize", .int(self.queueSize)),
            ("processingTimeout", .int(self.processingTimeout)),
            ("continueOnError", .bool(self.continueOnError)),
            ("dataDir", .string(self.dataDir)),
            ("user", .string(self.user)),
            ("hostname", .string(self.hostname)),
            ("limits", .object([
                ("maxMessageSize", .int(self.limits.maxMessageSize)),
                ("maxRecipients", .int(self.limits.maxRecipients)),
                ("maxConnections", .int(self.limits.maxConnections)),
                ("idleTimeout", .int(self.limits.idleTimeout)),
                ("maxErrors", .int(self.limits.maxErrors)),
                ("maxLineLength", .int(self.limits.maxLineLength)),
            ])),
            ("queue", .object([
                ("retryInitialDelay", .int(self.queue.retryInitialDelay)),
                ("retryMaxDelay", .int(self.queue.retryMaxDelay)),
                ("maxQueueLifetime", .int(self.queue.maxQueueLifetime)),
                ("scanInterval", .int(self.queue.scanInterval)),
            ])),
            ("tls", .object([
                ("certFile", .string(self.tls.certFile)),
                ("keyFile", .string(self.tls.keyFile)),
            ])),
            ("circuitBreaker", .object([
                ("failureThreshold", .int(self.circuitBreaker.failureThreshold)),
                ("cooldown", .int(self.circuitBreaker.cooldown)),
            ])),
            ("adminToken", Self.secret(self.adminToken)),
            ("logFile", .string(self.logFile)),
            ("drainTimeout", .int(self.drainTimeout)),
            ("users", .array(self.users.map { user in
                .object([("username", .string(user.username)), ("password", Self.secret(user.password))])
            })),
        ])
    }
}
