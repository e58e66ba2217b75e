import Foundation
import IPC
import NIOHTTP1
import Testing

@testable import Monitor

@Suite struct MonitorRouterTests {
    // MARK: - Access and errors

    @Test func unknownPathIs404InTheErrorShape() throws {
        let fixture = try MonitorFixture()
        let response = fixture.respond(.GET, "/nope")
        #expect(response.status == .notFound)
        let body = response.object
        #expect(body["status"] as? String == "error")
        #expect((body["error"] as? String)?.contains("/nope") == true)
        #expect((body["timestamp"] as? String) == "2027-01-15T08:00:00Z")
    }

    @Test func wrongMethodIs405WithAllow() throws {
        let fixture = try MonitorFixture()
        let post = fixture.respond(.POST, "/health")
        #expect(post.status == .methodNotAllowed)
        #expect(post.header("Allow") == "GET, HEAD")
        #expect(post.object["status"] as? String == "error")
        let get = fixture.respond(.GET, "/admin/retry-failed")
        #expect(get.status == .methodNotAllowed)
        #expect(get.header("Allow") == "POST")
        #expect(fixture.respond(.DELETE, "/admin/queue").status == .methodNotAllowed)
    }

    @Test func clientsOutsideLoopbackGet403OnEveryPath() throws {
        let fixture = try MonitorFixture()
        fixture.healthySnapshot()
        for client in ["10.0.0.7", "192.168.1.2", "2001:db8::1", "::ffff:10.0.0.1", "not-an-ip", nil] as [String?] {
            for path in ["/health", "/metrics", "/admin/config", "/nope"] {
                let response = fixture.respond(.GET, path, client: client)
                #expect(response.status == .forbidden, "\(client ?? "nil") \(path)")
                #expect(response.object["status"] as? String == "error")
            }
        }
        for client in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            #expect(fixture.respond(.GET, "/health", client: client).status == .ok, "\(client)")
        }
    }

    @Test func adminTokenIsRequiredWhenConfigured() throws {
        let fixture = try MonitorFixture()
        fixture.config.adminToken = "s3cret-token"
        let missing = fixture.respond(.GET, "/admin/config")
        #expect(missing.status == .unauthorized)
        #expect(missing.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
        #expect(fixture.respond(.GET, "/admin/config", headers: [("Authorization", "Bearer wrong")]).status
            == .unauthorized)
        #expect(fixture.respond(.GET, "/admin/config", headers: [("Authorization", "Bearer s3cret-token-x")]).status
            == .unauthorized)
        #expect(fixture.respond(.POST, "/admin/retry-failed", headers: [("Authorization", "Basic s3cret-token")])
            .status == .unauthorized)
        #expect(fixture.respond(.GET, "/admin/config", headers: [("Authorization", "Bearer s3cret-token")]).status
            == .ok)
        // /health and /metrics stay open: health checks and Prometheus carry no token.
        #expect(fixture.respond(.GET, "/metrics").status == .ok)
    }

    @Test func adminRequestsFromWebPagesAreRefused() throws {
        let fixture = try MonitorFixture()
        let cases: [[(String, String)]] = [
            [("Origin", "http://evil.example")],
            [("Origin", "null")],
            [("Host", "evil.example:8025")],
            [("Sec-Fetch-Site", "cross-site")],
        ]
        for headers in cases {
            let response = fixture.respond(.POST, "/admin/clean-queue", headers: headers)
            #expect(response.status == .forbidden, "\(headers)")
        }
        for host in ["localhost:8025", "127.0.0.1:8025", "[::1]:8025", "localhost"] {
            #expect(fixture.respond(.GET, "/admin/config", headers: [("Host", host)]).status == .ok, "\(host)")
        }
        #expect(fixture.respond(.GET, "/admin/config", headers: [("Origin", "http://localhost:3000")]).status == .ok)
    }

    @Test func badJSONIs400() throws {
        let fixture = try MonitorFixture()
        #expect(fixture.respond(.POST, "/admin/service", body: "{not json").status == .badRequest)
        #expect(fixture.respond(.POST, "/admin/service", body: "[1,2]").status == .badRequest)
        #expect(fixture.respond(.POST, "/admin/service", body: "{\"action\":\"explode\"}").status == .badRequest)
        #expect(fixture.respond(.POST, "/admin/service").status == .badRequest)
        #expect(fixture.respond(.POST, "/admin/clean-old-emails", body: "{\"days\":-1}").status == .badRequest)
        #expect(fixture.respond(.POST, "/admin/clean-old-emails?days=soon").status == .badRequest)
        #expect(fixture.respond(.POST, "/admin/clean-queue", body: "{\"state\":\"active\"}").status == .badRequest)
        #expect(fixture.relayed.isEmpty)
    }

    // MARK: - Metrics

    @Test func metricsJSONWithAcceptOrQuery() throws {
        let fixture = try MonitorFixture()
        fixture.healthySnapshot { snapshot in
            var store = MetricsStore()
            store.apply(.workerCounter(name: "mailer_accepted_total", labels: "", delta: 5))
            store.apply(.workerCounter(name: "mailer_accepted_recipients_total", labels: "", delta: 9))
            store.apply(.workerCounter(name: "mailer_delivered_total", labels: "provider=a", delta: 3))
            store.apply(.workerCounter(name: "mailer_delivered_total", labels: "provider=b", delta: 1))
            store.apply(.workerCounter(name: "mailer_failed_total", labels: "", delta: 1))
            store.apply(.workerObservation(name: "mailer_delivery_seconds", labels: "", value: 0.2))
            store.apply(.workerObservation(name: "mailer_delivery_seconds", labels: "", value: 0.4))
            store.fill(&snapshot)
        }
        for response in [fixture.respond(.GET, "/metrics?format=json"),
                         fixture.respond(.GET, "/metrics", headers: [("Accept", "application/json")])] {
            #expect(response.status == .ok)
            #expect(response.header("Content-Type")?.hasPrefix("application/json") == true)
            let body = response.object
            #expect(body["total_emails"] as? Int == 5)
            #expect(body["successful_emails"] as? Int == 4)
            #expect(body["failed_emails"] as? Int == 1)
            #expect(body["total_recipients"] as? Int == 9)
            #expect((body["avg_processing_time_ms"] as? Double).map { abs($0 - 300) < 0.01 } == true)
        }
        let prometheusAccept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        let text = fixture.respond(.GET, "/metrics", headers: [("Accept", prometheusAccept)])
        #expect(text.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        #expect(text.body.contains("mailer_accepted_total 5\n"))
    }

    @Test func prometheusExposition() throws {
        let fixture = try MonitorFixture()
        try fixture.message(in: .new, receivedAgo: 120)
        try fixture.message(in: .deferred, receivedAgo: 30)
        try fixture.message(in: .failed)
        fixture.healthySnapshot { snapshot in
            var store = MetricsStore()
            store.apply(.workerCounter(name: "mailer_accepted_total", labels: "", delta: 7))
            store.apply(.workerCounter(name: "mailer_rejected_total", labels: "reason=rate_limit", delta: 2))
            store.apply(.workerCounter(name: "mailer_delivered_total", labels: "provider=say \"hi\"\\now\nx", delta: 1))
            store.apply(.workerCounter(name: "mailer_delivery_attempts_total", labels: "outcome=ok,provider=p1", delta: 4))
            store.apply(.workerGauge(name: "mailer_provider_circuit_open", labels: "provider=p1", value: 0))
            store.apply(.workerObservation(name: "mailer_delivery_seconds", labels: "", value: 0.3))
            store.apply(.workerObservation(name: "mailer_delivery_seconds", labels: "", value: 7))
            store.add(counter: "mailer_worker_restarts_total", labels: "worker=forwarder")
            store.fill(&snapshot)
            snapshot.paused = true
        }
        let response = fixture.respond(.GET, "/metrics")
        #expect(response.status == .ok)
        let text = response.body
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.contains("mailer_accepted_total 7"))
        #expect(lines.contains("mailer_rejected_total{reason=\"rate_limit\"} 2"))
        #expect(lines.contains("mailer_delivered_total{provider=\"say \\\"hi\\\"\\\\now\\nx\"} 1"))
        #expect(lines.contains("mailer_delivery_attempts_total{outcome=\"ok\",provider=\"p1\"} 4"))
        #expect(lines.contains("mailer_provider_circuit_open{provider=\"p1\"} 0"))
        #expect(lines.contains("mailer_delivery_seconds_bucket{le=\"0.25\"} 0"))
        #expect(lines.contains("mailer_delivery_seconds_bucket{le=\"0.5\"} 1"))
        #expect(lines.contains("mailer_delivery_seconds_bucket{le=\"10\"} 2"))
        #expect(lines.contains("mailer_delivery_seconds_bucket{le=\"+Inf\"} 2"))
        #expect(lines.contains("mailer_delivery_seconds_sum 7.3"))
        #expect(lines.contains("mailer_delivery_seconds_count 2"))
        #expect(lines.contains("mailer_worker_restarts_total{worker=\"forwarder\"} 1"))
        #expect(lines.contains("mailer_queue_messages{state=\"new\"} 1"))
        #expect(lines.contains("mailer_queue_messages{state=\"deferred\"} 1"))
        #expect(lines.contains("mailer_queue_messages{state=\"failed\"} 1"))
        #expect(lines.contains("mailer_queue_oldest_age_seconds 120"))
        #expect(lines.contains("mailer_disk_free_bytes 53687091200"))
        #expect(lines.contains("mailer_worker_up{worker=\"receiver\"} 1"))
        #expect(lines.contains("mailer_deliveries_paused 1"))
        #expect(lines.contains("mailer_failed_total 0"))  // present before it first moves
        #expect(lines.contains("# TYPE mailer_delivery_seconds histogram"))
        #expect(lines.contains("# TYPE mailer_accepted_total counter"))
        #expect(lines.contains("# TYPE mailer_queue_messages gauge"))
        // Each family has exactly one HELP and one TYPE line, and its samples follow them.
        let types = lines.filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] }
        #expect(Set(types).count == types.count)
        #expect(lines.filter { $0.hasPrefix("# HELP ") }.count == types.count)
        var current = ""
        for line in lines {
            if line.hasPrefix("# TYPE ") { current = String(line.split(separator: " ")[2]) }
            if line.hasPrefix("#") { continue }
            #expect(line.hasPrefix(current), "\(line) outside its family \(current)")
        }
    }

    @Test func prometheusFormatting() {
        #expect(MonitorPrometheus.format(5) == "5")
        #expect(MonitorPrometheus.format(0.25) == "0.25")
        #expect(MonitorPrometheus.format(.infinity) == "+Inf")
        #expect(MonitorPrometheus.format(-.infinity) == "-Inf")
        #expect(MonitorPrometheus.format(.nan) == "NaN")
        #expect(MonitorPrometheus.escapeLabel("a\\b\"c\nd") == "a\\\\b\\\"c\\nd")
        #expect(MonitorPrometheus.sanitize("mailer-x.y") == "mailer_x_y")
        #expect(MonitorPrometheus.sanitize("9lives") == "_lives")
        #expect(MonitorLabels.parse("a=1,b=x=y").map { "\($0.0):\($0.1)" } == ["a:1", "b:x=y"])
        #expect(MonitorLabels.parse("").isEmpty)
    }

    @Test func jsonRendering() {
        let document = MonitorJSON.object([
            ("s", .string("quote\" back\\ nl\n ctl\u{1} é")),
            ("n", .double(100)), ("f", .double(66.67)), ("nan", .double(.nan)), ("null", .null),
            ("a", .array([.int(1), .bool(false)])),
        ])
        let text = document.rendered()
        #expect(text == "{\"s\":\"quote\\\" back\\\\ nl\\n ctl\\u0001 é\",\"n\":100,\"f\":66.67,\"nan\":null,"
            + "\"null\":null,\"a\":[1,false]}")
        #expect((try? JSONSerialization.jsonObject(with: Data(text.utf8))) != nil)
    }

    // MARK: - Admin

    @Test func retryFailedRequeuesAndWakes() throws {
        let fixture = try MonitorFixture()
        let failed = try fixture.message(in: .failed, receivedAgo: 9000, failedRecipients: true, lastError: "550 no")
        let other = try fixture.message(in: .failed, failedRecipients: true)
        let response = fixture.respond(.POST, "/admin/retry-failed")
        #expect(response.status == .ok)
        #expect(response.object["status"] as? String == "ok")
        #expect(response.object["message"] as? String == "2 messages re-queued")
        #expect(fixture.spool.names(in: .failed).isEmpty)
        #expect(Set(fixture.spool.names(in: .new)) == [failed, other])
        let envelope = try fixture.spool.envelope(of: failed, in: .new)
        #expect(envelope.recipients.allSatisfy { $0.state == .pending })
        #expect(fixture.wakes == 1)
        // Nothing to retry: no wake-up.
        #expect(fixture.respond(.POST, "/admin/retry-failed").object["message"] as? String == "0 messages re-queued")
        #expect(fixture.wakes == 1)
    }

    @Test func cleanQueueRemovesWaitingMailOnly() throws {
        let fixture = try MonitorFixture()
        try fixture.message(in: .new)
        try fixture.message(in: .deferred)
        try fixture.message(in: .hold)
        let active = try fixture.message(in: .active)
        let failed = try fixture.message(in: .failed)
        let onlyHold = fixture.respond(.POST, "/admin/clean-queue", body: "{\"state\":\"hold\"}")
        #expect(onlyHold.object["removed"] as? Int == 1)
        let response = fixture.respond(.POST, "/admin/clean-queue")
        #expect(response.status == .ok)
        #expect(response.object["message"] as? String == "2 messages removed from the queue")
        #expect(fixture.spool.count(.new) == 0 && fixture.spool.count(.deferred) == 0 && fixture.spool.count(.hold) == 0)
        #expect(fixture.spool.names(in: .active) == [active])
        #expect(fixture.spool.names(in: .failed) == [failed])
    }

    @Test func cleanOldEmailsByAge() throws {
        let fixture = try MonitorFixture()
        let old = try fixture.message(in: .failed)
        let young = try fixture.message(in: .failed)
        try fixture.setModificationTime(fixture.spool.path(.failed, old), ago: 31 * 86_400)
        try fixture.setModificationTime(fixture.spool.path(.failed, young), ago: 5 * 86_400)
        let local = fixture.spool.localDirectory
        FileManager.default.createFile(atPath: local + "/old.eml", contents: Data("x".utf8))
        FileManager.default.createFile(atPath: local + "/new.eml", contents: Data("x".utf8))
        try fixture.setModificationTime(local + "/old.eml", ago: 40 * 86_400)
        try fixture.setModificationTime(local + "/new.eml", ago: 60)

        let response = fixture.respond(.POST, "/admin/clean-old-emails")
        #expect(response.status == .ok)
        #expect(response.object["days"] as? Int == 30)
        #expect(response.object["removed_failed"] as? Int == 1)
        #expect(response.object["removed_local"] as? Int == 1)
        #expect(fixture.spool.names(in: .failed) == [young])
        #expect(FileManager.default.fileExists(atPath: local + "/new.eml"))
        #expect(!FileManager.default.fileExists(atPath: local + "/old.eml"))

        let byQuery = fixture.respond(.POST, "/admin/clean-old-emails?days=4")
        #expect(byQuery.object["removed_failed"] as? Int == 1)
        let byBody = fixture.respond(.POST, "/admin/clean-old-emails", body: "{\"days\": 0}")
        #expect(byBody.object["removed_local"] as? Int == 1)
    }

    @Test func servicePauseAndResumeAreRelayed() throws {
        let fixture = try MonitorFixture()
        let pause = fixture.respond(.POST, "/admin/service", body: "{\"action\":\"pause\"}")
        #expect(pause.status == .ok)
        #expect(pause.object["status"] as? String == "ok")
        #expect(fixture.respond(.POST, "/admin/service", body: "{\"action\":\"resume\"}").status == .ok)
        #expect(fixture.relayed == ["pause", "resume"])
        fixture.relayWorks = false
        #expect(fixture.respond(.POST, "/admin/service", body: "{\"action\":\"pause\"}").status == .serviceUnavailable)
    }

    @Test func configHidesSecrets() throws {
        let fixture = try MonitorFixture()
        fixture.config.defaultUsername = "app"
        fixture.config.defaultPassword = "default-pass-1"
        fixture.config.forwardPassword = "forward-pass-2"
        var provider = MailerConfig.Provider()
        provider.host = "smtp.example.org"
        provider.password = "provider-pass-3"
        fixture.config.forwardProviders = [provider]
        fixture.config.users = [MailerConfig.User(username: "u", password: "user-pass-4")]
        fixture.config.adminToken = "admin-token-5"
        let response = fixture.respond(.GET, "/admin/config", headers: [("Authorization", "Bearer admin-token-5")])
        #expect(response.status == .ok)
        for secret in ["default-pass-1", "forward-pass-2", "provider-pass-3", "user-pass-4", "admin-token-5"] {
            #expect(!response.body.contains(secret))
            #expect(!response.body.contains(String(secret.prefix(2)) + "*"))
        }
        let config = response.object["config"] as? [String: Any]
        #expect(config?["defaultUsername"] as? String == "app")
        #expect(config?["defaultPassword"] as? String == "***")
        #expect(config?["healthCheckPort"] as? Int == 8025)
        #expect((config?["forwardProviders"] as? [[String: Any]])?.first?["host"] as? String == "smtp.example.org")
    }

    @Test func queueListAndShow() throws {
        let fixture = try MonitorFixture()
        let first = try fixture.message(in: .deferred, receivedAgo: 600, recipients: ["x@a.test", "y@a.test"],
                                        lastError: "421 try later")
        let second = try fixture.message(in: .new, receivedAgo: 5)
        let list = fixture.respond(.GET, "/admin/queue")
        #expect(list.status == .ok)
        let messages = list.object["messages"] as? [[String: Any]] ?? []
        #expect(messages.map { $0["id"] as? String } == [first, second])
        #expect(messages.first?["state"] as? String == "deferred")
        #expect(messages.first?["age_seconds"] as? Int == 600)
        #expect(messages.first?["recipients"] as? Int == 2)
        #expect(messages.first?["last_error"] as? String == "421 try later")
        #expect(messages.first?["attempts"] as? Int == 0)
        let onlyNew = fixture.respond(.GET, "/admin/queue?state=new").object["messages"] as? [[String: Any]]
        #expect(onlyNew?.count == 1)
        #expect(fixture.respond(.GET, "/admin/queue?limit=1").object["count"] as? Int == 1)
        #expect(fixture.respond(.GET, "/admin/queue?state=tmp").status == .badRequest)

        let show = fixture.respond(.GET, "/admin/queue/\(first)")
        #expect(show.status == .ok)
        let message = show.object["message"] as? [String: Any]
        #expect(message?["sender"] as? String == "a@example.org")
        #expect((message?["recipients"] as? [[String: Any]])?.map { $0["address"] as? String } == ["x@a.test", "y@a.test"])
        #expect(message?["state"] as? String == "deferred")

        #expect(fixture.respond(.GET, "/admin/queue/\(QueueID.make())").status == .notFound)
        #expect(fixture.respond(.GET, "/admin/queue/not-an-id").status == .badRequest)
        // A decoded "/" makes it another path, which does not exist.
        #expect(fixture.respond(.GET, "/admin/queue/..%2F..%2Fetc%2Fpasswd").status == .notFound)
        #expect(fixture.respond(.GET, "/admin/queue/%2E%2E").status == .badRequest)
        #expect(fixture.respond(.GET, "/admin/queue/a/b").status == .notFound)
    }
}
