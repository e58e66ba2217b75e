import Foundation

/// Reads `config.json` (JSON with comments and trailing commas), applies the environment overrides
/// the original's guide names, and validates the result. Unknown keys are warnings; everything else
/// that is wrong is a `ConfigError` naming the key and its line.
public enum ConfigLoader {
    public struct Result: Sendable {
        public var config: MailerConfig
        public var warnings: [String]
    }

    /// Loads `path`; a missing path (nil) means the built-in defaults.
    public static func load(path: String?, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws -> Result
    {
        var text = "{}"
        if let path = path {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigError(key: "", message: "cannot read configuration file \(path)")
            }
            text = String(decoding: data, as: UTF8.self)
        }
        var result = try self.parse(text: text)
        try self.applyEnvironment(environment, to: &result.config)
        try self.finish(&result)
        return result
    }

    /// Parses configuration text without touching the environment (used by tests and `load`).
    public static func parse(text: String) throws -> Result {
        let tree: JSONValue
        do {
            tree = try JSONValue.parse(Data(text.utf8))
        } catch {
            if let problem = JSONSyntaxLocator.locate(text) {
                throw ConfigError(key: "", line: problem.line, message: "not valid JSON at column \(problem.column): \(problem.message)")
            }
            throw ConfigError(key: "", message: "not valid JSON: \(describe(error))")
        }
        guard case .object(let root) = tree else {
            throw ConfigError(key: "", message: "the configuration must be a JSON object, found \(tree.typeName)")
        }
        var reader = ConfigReader(object: root, path: "", locator: KeyLocator(text: text))
        var warnings: [String] = []
        let config = try decode(&reader, warnings: &warnings)
        return Result(config: config, warnings: warnings)
    }

    // MARK: - Decoding

    private static func decode(_ r: inout ConfigReader, warnings: inout [String]) throws -> MailerConfig {
        var c = MailerConfig()
        let port = 0...65535
        c.smtpHost = try r.string("smtpHost", default: c.smtpHost)
        c.smtpPort = try r.int("smtpPort", default: c.smtpPort, range: port)
        c.defaultUsername = try r.string("defaultUsername", default: c.defaultUsername)
        c.defaultPassword = try r.string("defaultPassword", default: c.defaultPassword)
        c.forwardSMTP = try r.bool("forwardSMTP", default: c.forwardSMTP)
        c.forwardHost = try r.string("forwardHost", default: c.forwardHost)
        c.forwardPort = try r.int("forwardPort", default: c.forwardPort, range: 1...65535)
        c.forwardUsername = try r.string("forwardUsername", default: c.forwardUsername)
        c.forwardPassword = try r.string("forwardPassword", default: c.forwardPassword)
        c.forwardSSL = try r.bool("forwardSSL", default: c.forwardSSL)
        for var p in try r.objects("forwardProviders") {
            var provider = MailerConfig.Provider()
            provider.name = try p.string("name", default: "")
            provider.host = try p.string("host", default: "")
            if provider.host.isEmpty { throw p.error("host", "a provider needs a host") }
            provider.ssl = try p.bool("ssl", default: false)
            provider.port = try p.int("port", default: provider.ssl ? 465 : 587, range: 1...65535)
            provider.username = try p.string("username", default: "")
            provider.password = try p.string("password", default: "")
            provider.priority = try p.int("priority", default: 0)
            provider.insecureSkipVerify = try p.bool("insecureSkipVerify", default: false)
            provider.caFile = try p.string("caFile", default: "")
            warnings += p.unknownKeys().map(unknown)
            c.forwardProviders.append(provider)
        }
        if var d = try r.object("directDelivery") {
            c.directDelivery.enabled = try d.bool("enabled", default: false)
            c.directDelivery.ehloDomain = try d.string("ehloDomain", default: "")
            c.directDelivery.insecureSkipVerify = try d.bool("insecureSkipVerify", default: false)
            c.directDelivery.retryCount = try d.int("retryCount", default: 3, range: 0...100)
            c.directDelivery.port = try d.int("port", default: 25, range: 1...65535)
            c.directDelivery.nameserver = try d.string("nameserver", default: "")
            warnings += d.unknownKeys().map(unknown)
        }
        if var k = try r.object("dkim") {
            c.dkim.enabled = try k.bool("enabled", default: false)
            c.dkim.domain = try k.string("domain", default: "")
            c.dkim.selector = try k.string("selector", default: c.dkim.selector)
            c.dkim.privateKeyPath = try k.string("privateKeyPath", default: "")
            c.dkim.headersToSign = try k.strings("headersToSign", default: c.dkim.headersToSign)
            c.dkim.signatureExpiry = try k.int("signatureExpiry", default: c.dkim.signatureExpiry, range: 0...Int(Int32.max))
            if c.dkim.enabled && c.dkim.domain.isEmpty { throw k.error("domain", "DKIM is enabled but has no domain") }
            if c.dkim.enabled && c.dkim.privateKeyPath.isEmpty {
                throw k.error("privateKeyPath", "DKIM is enabled but has no private key")
            }
            warnings += k.unknownKeys().map(unknown)
        }
        c.batchSize = try r.int("batchSize", default: c.batchSize, range: 1...100_000)
        c.batchDelay = try r.int("batchDelay", default: c.batchDelay, range: 0...3_600_000)
        c.enableHealthCheck = try r.bool("enableHealthCheck", default: c.enableHealthCheck)
        c.healthCheckPort = try r.int("healthCheckPort", default: c.healthCheckPort, range: port)
        if var l = try r.object("rateLimits") {
            c.rateLimits.enabled = try l.bool("enabled", default: false)
            c.rateLimits.maxPerHour = try l.int("maxPerHour", default: c.rateLimits.maxPerHour, range: 0...Int(Int32.max))
            c.rateLimits.maxPerDay = try l.int("maxPerDay", default: c.rateLimits.maxPerDay, range: 0...Int(Int32.max))
            c.rateLimits.globalMaxPerHour = try l.int("globalMaxPerHour", default: 0, range: 0...Int(Int32.max))
            c.rateLimits.globalMaxPerDay = try l.int("globalMaxPerDay", default: 0, range: 0...Int(Int32.max))
            warnings += l.unknownKeys().map(unknown)
        }
        if var s = try r.object("security") {
            c.security.allowLocalOnly = try s.bool("allowLocalOnly", default: true)
            c.security.logAllEmails = try s.bool("logAllEmails", default: true)
            c.security.requireAuth = try s.bool("requireAuth", default: true)
            warnings += s.unknownKeys().map(unknown)
        }
        c.workerCount = try r.int("workerCount", default: c.workerCount, range: 1...1000)
        c.queueSize = try r.int("queueSize", default: c.queueSize, range: 1...10_000_000)
        c.processingTimeout = try r.int("processingTimeout", default: c.processingTimeout, range: 1...86_400)
        c.continueOnError = try r.bool("continueOnError", default: c.continueOnError)

        c.dataDir = try r.string("dataDir", default: c.dataDir)
        if c.dataDir.isEmpty { throw r.error("dataDir", "must not be empty") }
        c.user = try r.string("user", default: c.user)
        c.hostname = try r.string("hostname", default: c.hostname)
        if c.hostname.isEmpty { c.hostname = MailerConfig.systemHostname() }
        if var l = try r.object("limits") {
            c.limits.maxMessageSize = try l.int("maxMessageSize", default: c.limits.maxMessageSize, range: 1024...Int(Int32.max))
            c.limits.maxRecipients = try l.int("maxRecipients", default: c.limits.maxRecipients, range: 1...100_000)
            c.limits.maxConnections = try l.int("maxConnections", default: c.limits.maxConnections, range: 1...100_000)
            c.limits.idleTimeout = try l.int("idleTimeout", default: c.limits.idleTimeout, range: 1...86_400)
            c.limits.maxErrors = try l.int("maxErrors", default: c.limits.maxErrors, range: 1...1000)
            c.limits.maxLineLength = try l.int("maxLineLength", default: c.limits.maxLineLength, range: 512...1_000_000)
            warnings += l.unknownKeys().map(unknown)
        }
        if var q = try r.object("queue") {
            c.queue.retryInitialDelay = try q.int("retryInitialDelay", default: c.queue.retryInitialDelay, range: 1...86_400 * 30)
            c.queue.retryMaxDelay = try q.int("retryMaxDelay", default: c.queue.retryMaxDelay, range: 1...86_400 * 30)
            c.queue.maxQueueLifetime = try q.int("maxQueueLifetime", default: c.queue.maxQueueLifetime, range: 1...86_400 * 365)
            c.queue.scanInterval = try q.int("scanInterval", default: c.queue.scanInterval, range: 1...3600)
            if c.queue.retryMaxDelay < c.queue.retryInitialDelay {
                throw q.error("retryMaxDelay", "must not be smaller than queue.retryInitialDelay")
            }
            warnings += q.unknownKeys().map(unknown)
        }
        if var t = try r.object("tls") {
            c.tls.certFile = try t.string("certFile", default: "")
            c.tls.keyFile = try t.string("keyFile", default: "")
            if c.tls.certFile.isEmpty != c.tls.keyFile.isEmpty {
                throw t.error(c.tls.certFile.isEmpty ? "certFile" : "keyFile", "tls needs both certFile and keyFile")
            }
            warnings += t.unknownKeys().map(unknown)
        }
        if var b = try r.object("circuitBreaker") {
            c.circuitBreaker.failureThreshold = try b.int("failureThreshold", default: c.circuitBreaker.failureThreshold, range: 1...1000)
            c.circuitBreaker.cooldown = try b.int("cooldown", default: c.circuitBreaker.cooldown, range: 1...86_400)
            warnings += b.unknownKeys().map(unknown)
        }
        c.adminToken = try r.string("adminToken", default: "")
        c.logFile = try r.string("logFile", default: "")
        c.drainTimeout = try r.int("drainTimeout", default: c.drainTimeout, range: 1...3600)
        c.heartbeatTimeout = try r.int("heartbeatTimeout", default: c.heartbeatTimeout, range: 2...3600)
        for var u in try r.objects("users") {
            let name = try u.string("username", default: "")
            if name.isEmpty { throw u.error("username", "a user needs a username") }
            c.users.append(.init(username: name, password: try u.string("password", default: "")))
            warnings += u.unknownKeys().map(unknown)
        }
        warnings += r.unknownKeys().map(unknown)
        return c
    }

    private static func unknown(_ key: String) -> String { "unknown configuration key '\(key)' is ignored" }

    // MARK: - Environment

    /// The variables the original's guide names; they win over the file, so secrets can stay out of it.
    public static let environmentKeys = [
        "SMTP_HOST", "SMTP_PORT", "DEFAULT_USERNAME", "DEFAULT_PASSWORD", "FORWARD_SMTP", "FORWARD_HOST",
        "FORWARD_PORT", "FORWARD_USERNAME", "FORWARD_PASSWORD", "FORWARD_SSL", "MAILER_DATA_DIR", "MAILER_USER",
        "MAILER_ADMIN_TOKEN",
    ]

    static func applyEnvironment(_ env: [String: String], to c: inout MailerConfig) throws {
        func int(_ name: String) throws -> Int? {
            guard let v = env[name], !v.isEmpty else { return nil }
            guard let i = Int(v), (0...65535).contains(i) else {
                throw ConfigError(key: name, message: "environment variable \(name)=\(v) is not a port number")
            }
            return i
        }
        func bool(_ name: String) throws -> Bool? {
            guard let v = env[name]?.lowercased(), !v.isEmpty else { return nil }
            switch v {
            case "1", "true", "yes", "on": return true
            case "0", "false", "no", "off": return false
            default: throw ConfigError(key: name, message: "environment variable \(name)=\(v) is not true or false")
            }
        }
        func string(_ name: String) -> String? { env[name].flatMap { $0.isEmpty ? nil : $0 } }
        if let v = string("SMTP_HOST") { c.smtpHost = v }
        if let v = try int("SMTP_PORT") { c.smtpPort = v }
        if let v = string("DEFAULT_USERNAME") { c.defaultUsername = v }
        if let v = string("DEFAULT_PASSWORD") { c.defaultPassword = v }
        if let v = try bool("FORWARD_SMTP") { c.forwardSMTP = v }
        if let v = string("FORWARD_HOST") { c.forwardHost = v }
        if let v = try int("FORWARD_PORT") { c.forwardPort = v }
        if let v = string("FORWARD_USERNAME") { c.forwardUsername = v }
        if let v = string("FORWARD_PASSWORD") { c.forwardPassword = v }
        if let v = try bool("FORWARD_SSL") { c.forwardSSL = v }
        if let v = string("MAILER_DATA_DIR") { c.dataDir = v }
        if let v = string("MAILER_USER") { c.user = v }
        if let v = string("MAILER_ADMIN_TOKEN") { c.adminToken = v }
    }

    // MARK: - Cross-key rules

    static func finish(_ result: inout Result) throws {
        var c = result.config
        if c.forwardSMTP && c.orderedProviders.isEmpty && !c.directDelivery.enabled {
            throw ConfigError(key: "forwardSMTP", message: "forwarding is on but neither forwardHost nor forwardProviders is set")
        }
        if c.security.allowLocalOnly && !Loopback.contains(host: c.smtpHost) {
            result.warnings.append("security.allowLocalOnly is true: smtpHost \(c.smtpHost) is replaced by 127.0.0.1")
            c.smtpHost = "127.0.0.1"
        }
        if c.security.requireAuth && c.credentials.isEmpty && !c.security.allowLocalOnly {
            throw ConfigError(
                key: "security.requireAuth",
                message: "is true and security.allowLocalOnly is false, but no account is configured "
                    + "(defaultUsername/defaultPassword or users): any host could relay through this server")
        }
        if c.security.requireAuth && c.credentials.isEmpty {
            result.warnings.append(
                "security.requireAuth is true but no account is configured (defaultUsername): mail is accepted without AUTH")
        }
        c.dataDir = URL(fileURLWithPath: c.dataDir).standardizedFileURL.path
        for path in [\MailerConfig.dkim.privateKeyPath, \MailerConfig.tls.certFile, \MailerConfig.tls.keyFile,
                     \MailerConfig.logFile] where !c[keyPath: path].isEmpty {
            c[keyPath: path] = URL(fileURLWithPath: c[keyPath: path]).standardizedFileURL.path
        }
        for index in c.forwardProviders.indices where !c.forwardProviders[index].caFile.isEmpty {
            c.forwardProviders[index].caFile = URL(fileURLWithPath: c.forwardProviders[index].caFile).standardizedFileURL.path
        }
        result.config = c
    }

    private static func describe(_ error: any Error) -> String {
        if case DecodingError.dataCorrupted(let context) = error {
            if let underlying = context.underlyingError { return "\(underlying)" }
            return context.debugDescription
        }
        return "\(error)"
    }
}
