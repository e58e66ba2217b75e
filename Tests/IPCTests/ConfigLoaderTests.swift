import Foundation
import Testing

@testable import IPC

/// `config.json` decoding: every key, the original's defaults, JSON5 leniency, the environment,
/// and errors that name the key and its line.
@Suite struct ConfigLoaderTests {
    static func error(_ text: String) -> ConfigError? {
        do {
            _ = try ConfigLoader.parse(text: text)
            return nil
        } catch let error as ConfigError {
            return error
        } catch {
            Issue.record("not a ConfigError: \(error)")
            return nil
        }
    }

    // MARK: - Defaults

    @Test func defaultsAreTheOriginals() throws {
        let c = try ConfigLoader.parse(text: "{}").config
        #expect(c.smtpHost == "127.0.0.1")
        #expect(c.smtpPort == 25)
        #expect(c.defaultUsername == "" && c.defaultPassword == "")
        #expect(c.forwardSMTP == false)
        #expect(c.forwardHost == "")
        #expect(c.forwardPort == 587)
        #expect(c.forwardSSL == false)
        #expect(c.forwardProviders.isEmpty)
        #expect(c.directDelivery.enabled == false)
        #expect(c.dkim.enabled == false)
        #expect(c.dkim.selector == "mail")
        #expect(c.dkim.signatureExpiry == 604_800)
        #expect(c.batchSize == 20)
        #expect(c.batchDelay == 1000)
        #expect(c.enableHealthCheck == true)
        #expect(c.healthCheckPort == 8025)
        #expect(c.rateLimits.enabled == false)
        #expect(c.rateLimits.maxPerHour == 500)
        #expect(c.rateLimits.maxPerDay == 2000)
        #expect(c.security.allowLocalOnly == true)
        #expect(c.security.logAllEmails == true)
        #expect(c.security.requireAuth == true)
        #expect(c.workerCount == 5)
        #expect(c.processingTimeout == 300)
        #expect(c.continueOnError == true)
        #expect(c.queue.retryInitialDelay == 60)
        #expect(c.queue.retryMaxDelay == 3600)
        #expect(c.queue.maxQueueLifetime == 432_000)
        #expect(c.dataDir == "emails")
        #expect(c.limits.maxMessageSize == 10 * 1024 * 1024)
        #expect(c.limits.idleTimeout == 300)
        #expect(c == MailerConfig())
    }

    @Test func emptySectionsKeepTheirDefaults() throws {
        let text = #"{"security": {}, "rateLimits": {}, "dkim": {}, "queue": {}, "limits": {}, "smtpPort": null}"#
        #expect(try ConfigLoader.parse(text: text).config == MailerConfig())
    }

    // MARK: - Every key

    static let everyKey = """
        {
          "smtpHost": "0.0.0.0",
          "smtpPort": 2525,
          "defaultUsername": "relay",
          "defaultPassword": "relay-secret",
          "forwardSMTP": true,
          "forwardHost": "smtp.legacy.example",
          "forwardPort": 2587,
          "forwardUsername": "legacy-user",
          "forwardPassword": "legacy-pass",
          "forwardSSL": true,
          "forwardProviders": [
            {"name": "primary", "host": "smtp.one.example", "port": 465, "username": "u1", "password": "p1",
             "ssl": true, "priority": 2, "insecureSkipVerify": true, "caFile": "/etc/mailer/ca.pem"}
          ],
          "directDelivery": {"enabled": true, "ehloDomain": "relay.example", "insecureSkipVerify": true,
                             "retryCount": 7, "port": 2526, "nameserver": "127.0.0.1:5353"},
          "dkim": {"enabled": true, "domain": "example.com", "selector": "s2024", "privateKeyPath": "/k/dkim.pem",
                   "headersToSign": ["From", "To"], "signatureExpiry": 3600},
          "batchSize": 7,
          "batchDelay": 250,
          "enableHealthCheck": false,
          "healthCheckPort": 9025,
          "rateLimits": {"enabled": true, "maxPerHour": 11, "maxPerDay": 22, "globalMaxPerHour": 33,
                         "globalMaxPerDay": 44},
          "security": {"allowLocalOnly": false, "logAllEmails": false, "requireAuth": false},
          "workerCount": 9,
          "queueSize": 123,
          "processingTimeout": 45,
          "continueOnError": false,
          "dataDir": "/var/spool/mailer",
          "user": "nobody",
          "hostname": "mx.example.com",
          "limits": {"maxMessageSize": 2048, "maxRecipients": 50, "maxConnections": 12, "idleTimeout": 60,
                     "maxErrors": 4, "maxLineLength": 1000},
          "queue": {"retryInitialDelay": 30, "retryMaxDelay": 600, "maxQueueLifetime": 86400, "scanInterval": 5},
          "tls": {"certFile": "/tls/cert.pem", "keyFile": "/tls/key.pem"},
          "circuitBreaker": {"failureThreshold": 3, "cooldown": 90},
          "adminToken": "token",
          "logFile": "/var/log/mailer.log",
          "drainTimeout": 12,
          "users": [{"username": "extra", "password": "extra-pass"}]
        }
        """

    @Test func everyKeyIsDecoded() throws {
        let result = try ConfigLoader.parse(text: Self.everyKey)
        #expect(result.warnings.isEmpty, "every key is known: \(result.warnings)")
        var e = MailerConfig()
        e.smtpHost = "0.0.0.0"
        e.smtpPort = 2525
        e.defaultUsername = "relay"
        e.defaultPassword = "relay-secret"
        e.forwardSMTP = true
        e.forwardHost = "smtp.legacy.example"
        e.forwardPort = 2587
        e.forwardUsername = "legacy-user"
        e.forwardPassword = "legacy-pass"
        e.forwardSSL = true
        var p = MailerConfig.Provider()
        p.name = "primary"
        p.host = "smtp.one.example"
        p.port = 465
        p.username = "u1"
        p.password = "p1"
        p.ssl = true
        p.priority = 2
        p.insecureSkipVerify = true
        p.caFile = "/etc/mailer/ca.pem"
        e.forwardProviders = [p]
        e.directDelivery.enabled = true
        e.directDelivery.ehloDomain = "relay.example"
        e.directDelivery.insecureSkipVerify = true
        e.directDelivery.retryCount = 7
        e.directDelivery.port = 2526
        e.directDelivery.nameserver = "127.0.0.1:5353"
        e.dkim.enabled = true
        e.dkim.domain = "example.com"
        e.dkim.selector = "s2024"
        e.dkim.privateKeyPath = "/k/dkim.pem"
        e.dkim.headersToSign = ["From", "To"]
        e.dkim.signatureExpiry = 3600
        e.batchSize = 7
        e.batchDelay = 250
        e.enableHealthCheck = false
        e.healthCheckPort = 9025
        e.rateLimits = .init()
        e.rateLimits.enabled = true
        e.rateLimits.maxPerHour = 11
        e.rateLimits.maxPerDay = 22
        e.rateLimits.globalMaxPerHour = 33
        e.rateLimits.globalMaxPerDay = 44
        e.security.allowLocalOnly = false
        e.security.logAllEmails = false
        e.security.requireAuth = false
        e.workerCount = 9
        e.queueSize = 123
        e.processingTimeout = 45
        e.continueOnError = false
        e.dataDir = "/var/spool/mailer"
        e.user = "nobody"
        e.hostname = "mx.example.com"
        e.limits.maxMessageSize = 2048
        e.limits.maxRecipients = 50
        e.limits.maxConnections = 12
        e.limits.idleTimeout = 60
        e.limits.maxErrors = 4
        e.limits.maxLineLength = 1000
        e.queue.retryInitialDelay = 30
        e.queue.retryMaxDelay = 600
        e.queue.maxQueueLifetime = 86400
        e.queue.scanInterval = 5
        e.tls.certFile = "/tls/cert.pem"
        e.tls.keyFile = "/tls/key.pem"
        e.circuitBreaker.failureThreshold = 3
        e.circuitBreaker.cooldown = 90
        e.adminToken = "token"
        e.logFile = "/var/log/mailer.log"
        e.drainTimeout = 12
        e.users = [.init(username: "extra", password: "extra-pass")]
        #expect(result.config == e)
    }

    @Test func providerPortDefaultsFollowSSL() throws {
        let text = #"{"forwardProviders": [{"host": "a.example"}, {"host": "b.example", "ssl": true}]}"#
        let providers = try ConfigLoader.parse(text: text).config.forwardProviders
        #expect(providers.map(\.port) == [587, 465])
        #expect(providers.map(\.priority) == [0, 0])
    }

    @Test func booleansMayBeQuotedAndIntegersMayBeWholeNumbers() throws {
        let text = #"{"forwardSSL": "true", "enableHealthCheck": "False", "smtpPort": 2525.0}"#
        let c = try ConfigLoader.parse(text: text).config
        #expect(c.forwardSSL == true)
        #expect(c.enableHealthCheck == false)
        #expect(c.smtpPort == 2525)
    }

    // MARK: - JSON with comments

    @Test func commentsAndTrailingCommasAreAccepted() throws {
        let text = """
            // The relay's configuration.
            {
              /* where it listens */
              "smtpPort": 2525, // a comment after a value
              "security": {
                "requireAuth": false,
              },
              "forwardProviders": [
                {"host": "a.example",},
              ],
            }
            """
        let result = try ConfigLoader.parse(text: text)
        #expect(result.config.smtpPort == 2525)
        #expect(result.config.security.requireAuth == false)
        #expect(result.config.forwardProviders.map(\.host) == ["a.example"])
        #expect(result.warnings.isEmpty)
    }

    @Test func invalidJSONIsAnError() {
        let error = Self.error("{\n  \"smtpPort\": 25\n  \"smtpHost\": \"x\"\n}")
        #expect(error != nil)
        #expect(error?.key == "")
        #expect(error?.description.contains("not valid JSON") == true)
    }

    @Test func theRootMustBeAnObject() {
        #expect(Self.error("[1, 2]")?.message.contains("JSON object") == true)
    }

    // MARK: - Errors name the key and its line

    @Test func wrongTypeNamesKeyAndLine() {
        let error = Self.error("{\n  \"smtpHost\": \"127.0.0.1\",\n  \"smtpPort\": \"abc\"\n}")
        #expect(error?.key == "smtpPort")
        #expect(error?.line == 3)
        #expect(error?.description.contains("'smtpPort'") == true)
        #expect(error?.description.contains("line 3") == true)
    }

    @Test func outOfRangeNamesKeyAndLine() {
        let error = Self.error("{\n\n  \"healthCheckPort\": 70000\n}")
        #expect(error?.key == "healthCheckPort")
        #expect(error?.line == 3)
    }

    @Test func nestedWrongTypeNamesTheDottedKey() {
        let text = """
            {
              "smtpPort": 2525,
              "rateLimits": {"enabled": true},
              "security": {
                "allowLocalOnly": true,
                "requireAuth": 5
              }
            }
            """
        let error = Self.error(text)
        #expect(error?.key == "security.requireAuth")
        #expect(error?.line == 6)
    }

    @Test func sectionOfTheWrongType() {
        let error = Self.error("{\n  \"security\": true\n}")
        #expect(error?.key == "security")
        #expect(error?.line == 2)
    }

    @Test func missingProviderHostNamesTheProvider() {
        let text = """
            {
              "forwardProviders": [
                {"host": "a.example", "port": 587},
                {
                  "name": "second",
                  "port": 465
                }
              ]
            }
            """
        let error = Self.error(text)
        #expect(error?.key == "forwardProviders[1].host")
        // The key is missing, so the line is that of the provider lacking it, not provider 0's "host".
        #expect(error?.line == 4)
    }

    @Test func wrongTypeInTheSecondProviderPointsAtIt() {
        let text = """
            {
              "forwardProviders": [
                {"host": "a.example", "port": 587},
                {"host": "b.example",
                 "port": "submission"}
              ]
            }
            """
        let error = Self.error(text)
        #expect(error?.key == "forwardProviders[1].port")
        #expect(error?.line == 5)
    }

    @Test func aProviderThatIsNotAnObject() {
        let text = "{\n  \"forwardProviders\": [\n    {\"host\": \"a.example\"},\n    \"b.example\"\n  ]\n}"
        let error = Self.error(text)
        #expect(error?.key == "forwardProviders[1]")
        #expect(error?.line == 4)
    }

    @Test func keysInCommentsAndStringsDoNotMisplaceTheLine() {
        let text = """
            {
              // "smtpPort" is where the relay listens; see "smtpHost".
              "hostname": "smtpPort",
              "smtpPort": false
            }
            """
        let error = Self.error(text)
        #expect(error?.key == "smtpPort")
        #expect(error?.line == 4)
    }

    @Test func crossKeyRulesNameTheirKey() {
        let dkim = Self.error("{\n  \"dkim\": {\n    \"enabled\": true,\n    \"privateKeyPath\": \"/k.pem\"\n  }\n}")
        #expect(dkim?.key == "dkim.domain")
        let queue = Self.error("{\"queue\": {\"retryInitialDelay\": 600, \"retryMaxDelay\": 60}}")
        #expect(queue?.key == "queue.retryMaxDelay")
        let tls = Self.error("{\"tls\": {\"certFile\": \"/c.pem\"}}")
        #expect(tls?.key == "tls.keyFile")
        let users = Self.error("{\"users\": [{\"password\": \"x\"}]}")
        #expect(users?.key == "users[0].username")
        let dataDir = Self.error("{\"dataDir\": \"\"}")
        #expect(dataDir?.key == "dataDir")
    }

    @Test func forwardingWithoutAnUpstreamIsAnError() throws {
        var result = try ConfigLoader.parse(text: #"{"forwardSMTP": true}"#)
        #expect(throws: ConfigError.self) { try ConfigLoader.finish(&result) }
        do {
            try ConfigLoader.finish(&result)
        } catch let error as ConfigError {
            #expect(error.key == "forwardSMTP")
        }
    }

    @Test func requireAuthWithoutAccountsOpenToOtherHostsIsAnError() throws {
        var open = try ConfigLoader.parse(text: #"{"security": {"allowLocalOnly": false}}"#)
        do {
            try ConfigLoader.finish(&open)
            Issue.record("an open relay was accepted")
        } catch let error as ConfigError {
            #expect(error.key == "security.requireAuth")
        }
        // Local only (the default), or with an account: accepted; the local-only case is warned about.
        var local = try ConfigLoader.parse(text: #"{}"#)
        try ConfigLoader.finish(&local)
        #expect(local.warnings.contains { $0.contains("requireAuth") })
        var withAccount = try ConfigLoader.parse(
            text: #"{"security": {"allowLocalOnly": false}, "defaultUsername": "app", "defaultPassword": "pw"}"#)
        try ConfigLoader.finish(&withAccount)
        #expect(withAccount.config.authRequired)
    }

    // MARK: - Unknown keys

    @Test func unknownKeysAreWarningsNotErrors() throws {
        let text = """
            {
              "smtpPortt": 25,
              "security": {"requireAuth": true, "requireAuht": false},
              "forwardProviders": [{"host": "a.example", "hots": "b.example"}]
            }
            """
        let result = try ConfigLoader.parse(text: text)
        #expect(result.warnings.count == 3)
        #expect(result.warnings.contains { $0.contains("'smtpPortt'") })
        #expect(result.warnings.contains { $0.contains("'security.requireAuht'") })
        #expect(result.warnings.contains { $0.contains("'forwardProviders[0].hots'") })
    }

    // MARK: - Environment

    @Test func environmentOverridesTheFile() throws {
        var c = try ConfigLoader.parse(text: #"{"smtpHost": "10.0.0.1", "smtpPort": 25, "forwardSSL": true}"#).config
        try ConfigLoader.applyEnvironment([
            "SMTP_HOST": "0.0.0.0", "SMTP_PORT": "2525", "DEFAULT_USERNAME": "user", "DEFAULT_PASSWORD": "pass",
            "FORWARD_SMTP": "true", "FORWARD_HOST": "smtp.example.com", "FORWARD_PORT": "465",
            "FORWARD_USERNAME": "fuser", "FORWARD_PASSWORD": "fpass", "FORWARD_SSL": "false",
        ], to: &c)
        #expect(c.smtpHost == "0.0.0.0")
        #expect(c.smtpPort == 2525)
        #expect(c.defaultUsername == "user")
        #expect(c.defaultPassword == "pass")
        #expect(c.forwardSMTP == true)
        #expect(c.forwardHost == "smtp.example.com")
        #expect(c.forwardPort == 465)
        #expect(c.forwardUsername == "fuser")
        #expect(c.forwardPassword == "fpass")
        #expect(c.forwardSSL == false)
    }

    @Test(arguments: [("1", true), ("yes", true), ("TRUE", true), ("on", true), ("0", false), ("no", false),
                      ("False", false), ("off", false)])
    func environmentBooleans(_ value: String, _ expected: Bool) throws {
        var c = MailerConfig()
        try ConfigLoader.applyEnvironment(["FORWARD_SSL": value, "FORWARD_SMTP": value], to: &c)
        #expect(c.forwardSSL == expected)
        #expect(c.forwardSMTP == expected)
    }

    @Test func emptyOrAbsentVariablesChangeNothing() throws {
        var c = MailerConfig()
        let environment = ["SMTP_HOST": "", "SMTP_PORT": "", "FORWARD_SSL": "", "HOME": "/root"]
        try ConfigLoader.applyEnvironment(environment, to: &c)
        #expect(c == MailerConfig())
    }

    @Test func badEnvironmentValuesNameTheVariable() {
        var c = MailerConfig()
        for (name, value) in [("SMTP_PORT", "abc"), ("FORWARD_PORT", "99999"), ("FORWARD_SSL", "maybe"),
                              ("FORWARD_SMTP", "2")] {
            do {
                try ConfigLoader.applyEnvironment([name: value], to: &c)
                Issue.record("\(name)=\(value) was accepted")
            } catch let error as ConfigError {
                #expect(error.key == name)
            } catch {
                Issue.record("\(error)")
            }
        }
    }

    // MARK: - Loading a file

    @Test func loadReadsTheFileAppliesTheEnvironmentAndResolvesPaths() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mailer-config-\(UUID()).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let text = """
            {
              // relative paths resolve against the working directory
              "dataDir": "spool-here",
              "smtpHost": "0.0.0.0",
              "smtpPort": 25,
            }
            """
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let result = try ConfigLoader.load(path: path, environment: ["SMTP_PORT": "2600"])
        #expect(result.config.smtpPort == 2600)
        let cwd = FileManager.default.currentDirectoryPath
        let expected = URL(fileURLWithPath: cwd).appendingPathComponent("spool-here").standardizedFileURL.path
        #expect(result.config.dataDir == expected)
        // allowLocalOnly (default true) forces a loopback address, with a warning.
        #expect(result.config.smtpHost == "127.0.0.1")
        #expect(result.warnings.contains { $0.contains("allowLocalOnly") })
    }

    @Test func loadWithoutAPathUsesTheDefaults() throws {
        let result = try ConfigLoader.load(path: nil, environment: [:])
        #expect(result.config.smtpPort == 25)
        #expect(result.config.dataDir.hasPrefix("/"))
        #expect(result.config.dataDir.hasSuffix("/emails"))
    }

    @Test func loadOfAMissingFileIsAnError() {
        #expect(throws: ConfigError.self) {
            _ = try ConfigLoader.load(path: "/nonexistent/mailer/config.json", environment: [:])
        }
    }

    // MARK: - Derived values

    @Test func providersAreOrderedByPriorityThenFileOrderWithTheLegacyHostLast() throws {
        let text = """
            {
              "forwardProviders": [
                {"name": "a", "host": "a.example", "priority": 2},
                {"name": "b", "host": "b.example", "priority": 1},
                {"name": "c", "host": "c.example", "priority": 2},
                {"host": "d.example", "priority": 1, "ssl": true}
              ],
              "forwardHost": "legacy.example",
              "forwardPort": 2525,
              "forwardUsername": "lu",
              "forwardPassword": "lp",
              "forwardSSL": true
            }
            """
        let ordered = try ConfigLoader.parse(text: text).config.orderedProviders
        #expect(ordered.map(\.host) == ["b.example", "d.example", "a.example", "c.example", "legacy.example"])
        #expect(ordered[1].name == "d.example:465")
        let legacy = ordered[4]
        #expect(legacy.port == 2525 && legacy.username == "lu" && legacy.password == "lp" && legacy.ssl)
        #expect(legacy.name == "legacy.example:2525")
    }

    @Test func legacyHostAloneIsOneProvider() throws {
        let c = try ConfigLoader.parse(text: #"{"forwardHost": "smtp.example.com"}"#).config
        #expect(c.orderedProviders.map(\.host) == ["smtp.example.com"])
        #expect(c.orderedProviders.first?.port == 587)
        #expect(MailerConfig().orderedProviders.isEmpty)
    }

    @Test func credentialsAndAuthRequirement() throws {
        var c = MailerConfig()
        #expect(c.credentials.isEmpty)
        #expect(!c.authRequired, "requireAuth without accounts cannot be enforced")
        c.users = [.init(username: "a", password: "1")]
        #expect(c.authRequired)
        c.security.requireAuth = false
        #expect(!c.authRequired)
        c.defaultUsername = "relay"
        c.defaultPassword = "2"
        #expect(c.authRequired, "a defaultUsername always requires AUTH, as in the original")
        #expect(c.credentials == ["a": "1", "relay": "2"])
    }

    @Test(arguments: [("", ""), ("a", "*"), ("abcd", "****"), ("abcde", "ab*de"), ("password123", "pa*******23"),
                      ("pässwörd", "pä****rd")])
    func maskSecret(_ secret: String, _ masked: String) {
        #expect(IPC.maskSecret(secret) == masked)
    }
}

@Suite struct KeepingSecretsTests {
    @Test func eachRoleKeepsOnlyItsOwnSecrets() throws {
        var c = MailerConfig()
        c.defaultUsername = "app"
        c.defaultPassword = "auth-secret"
        c.forwardHost = "smtp.example.com"
        c.forwardPassword = "legacy-secret"
        var p = MailerConfig.Provider()
        p.host = "p.example.com"
        p.password = "provider-secret"
        c.forwardProviders = [p]
        c.adminToken = "token-secret"
        let receiver = c.keepingSecrets(for: .receiver)
        #expect(receiver.defaultPassword == "auth-secret")
        #expect(receiver.forwardPassword == MailerConfig.withheldSecret)
        #expect(receiver.forwardProviders[0].password == MailerConfig.withheldSecret)
        #expect(receiver.adminToken == MailerConfig.withheldSecret)
        #expect(receiver.authRequired)
        let forwarder = c.keepingSecrets(for: .forwarder)
        #expect(forwarder.defaultPassword == MailerConfig.withheldSecret)
        #expect(forwarder.orderedProviders.map(\.password) == ["provider-secret", "legacy-secret"])
        let monitor = c.keepingSecrets(for: .monitor)
        #expect(monitor.adminToken == "token-secret")
        #expect(monitor.forwardProviders[0].password == MailerConfig.withheldSecret)
        var empty = MailerConfig()
        empty.defaultUsername = ""
        #expect(empty.keepingSecrets(for: .forwarder).defaultPassword == "")
    }
}
