import Foundation
import IPC
import NIOHTTP1
import Testing

@testable import Monitor

@Suite struct MonitorHealthTests {
    @Test func okCarriesTheOriginalFields() throws {
        let fixture = try MonitorFixture()
        fixture.config.forwardSMTP = true
        var provider = MailerConfig.Provider()
        provider.host = "127.0.0.1"
        provider.port = 2525
        fixture.config.forwardProviders = [provider]
        try fixture.message(in: .new)
        try fixture.message(in: .failed)
        fixture.healthySnapshot { snapshot in
            var store = MetricsStore()
            store.apply(.workerCounter(name: "mailer_accepted_total", labels: "", delta: 4))
            store.apply(.workerCounter(name: "mailer_delivered_total", labels: "provider=127.0.0.1:2525", delta: 2))
            store.apply(.workerCounter(name: "mailer_failed_total", labels: "", delta: 1))
            store.fill(&snapshot)
        }
        let response = fixture.respond(.GET, "/health")
        #expect(response.status == .ok)
        let body = response.object
        #expect(body["status"] as? String == "ok")
        #expect(body["timestamp"] as? String == "2027-01-15T08:00:00Z")
        let details = body["details"] as? [String: Any] ?? [:]
        #expect(details["disk_space_available_mb"] as? Int == 51_200)
        #expect(details["queued_emails"] as? Int == 1)
        #expect(details["failed_emails"] as? Int == 1)
        #expect(details["total_emails_processed"] as? Int == 4)
        #expect(details["success_rate"] as? Double == 66.67)
        let workers = details["workers"] as? [[String: Any]] ?? []
        #expect(workers.map { $0["role"] as? String } == ["receiver", "forwarder", "monitor"])
        #expect(workers.first?["pid"] as? Int == 100)
        #expect(workers.first?["state"] as? String == "running")
        #expect(workers.first?["restarts"] as? Int == 0)
        let providers = details["providers"] as? [[String: Any]] ?? []
        #expect(providers.first?["name"] as? String == "127.0.0.1:2525")
        #expect(providers.first?["circuit"] as? String == "closed")
    }

    @Test func successRateIs100BeforeAnythingFinished() throws {
        let fixture = try MonitorFixture()
        fixture.healthySnapshot()
        let details = fixture.respond(.GET, "/health").object["details"] as? [String: Any]
        #expect(details?["success_rate"] as? Int == 100)
    }

    private func status(_ fixture: MonitorFixture) -> (HTTPResponseStatus, String?, [String]) {
        let response = fixture.respond(.GET, "/health")
        let details = response.object["details"] as? [String: Any]
        return (response.status, response.object["status"] as? String, details?["problems"] as? [String] ?? [])
    }

    @Test func degradedCases() throws {
        let circuit = try MonitorFixture()
        circuit.healthySnapshot { $0.gauges = [.init(name: "mailer_provider_circuit_open", labels: "provider=p1", value: 1)] }
        #expect(self.status(circuit).1 == "degraded")
        #expect(self.status(circuit).0 == .ok)
        let providers = (circuit.respond(.GET, "/health").object["details"] as? [String: Any])?["providers"]
        #expect((providers as? [[String: Any]])?.first?["circuit"] as? String == "open")

        let crashLoop = try MonitorFixture()
        crashLoop.healthySnapshot { $0.workers[1].state = "crash-loop" }
        #expect(self.status(crashLoop).1 == "degraded")

        let disk = try MonitorFixture()
        disk.healthySnapshot()
        disk.diskFree = 50 * 1024 * 1024
        #expect(self.status(disk).1 == "degraded")

        let backlog = try MonitorFixture()
        backlog.healthySnapshot()
        for _ in 0...MonitorThresholds.failedBacklog {
            FileManager.default.createFile(atPath: backlog.spool.path(.failed, QueueID.make()), contents: nil)
        }
        #expect(self.status(backlog).1 == "degraded")

        let old = try MonitorFixture()
        old.healthySnapshot()
        try old.message(in: .deferred, receivedAgo: 2 * 3600)
        #expect(self.status(old).1 == "degraded")
        // A held message may wait as long as the operator wants.
        let held = try MonitorFixture()
        held.healthySnapshot()
        try held.message(in: .hold, receivedAgo: 2 * 3600)
        #expect(self.status(held).1 == "ok")

        let none = try MonitorFixture()
        #expect(self.status(none).1 == "degraded")
        #expect(self.status(none).0 == .ok)
    }

    @Test func errorCasesAnswer503() throws {
        let noReceiver = try MonitorFixture()
        noReceiver.healthySnapshot { $0.workers[0].state = "restarting" }
        #expect(self.status(noReceiver).0 == .serviceUnavailable)
        #expect(self.status(noReceiver).1 == "error")
        #expect(self.status(noReceiver).2.contains("no receiver is running"))

        let stale = try MonitorFixture()
        var snapshot = MonitorSnapshot()
        snapshot.workers = [.init(role: "receiver", pid: 1, generation: 1, state: "running", restarts: 0, startedAt: 0,
                                  lastExit: nil)]
        stale.snapshots.update(snapshot, at: stale.now.addingTimeInterval(-30))
        #expect(self.status(stale).0 == .serviceUnavailable)

        let readOnly = try MonitorFixture()
        readOnly.healthySnapshot()
        readOnly.writable = false
        #expect(self.status(readOnly).0 == .serviceUnavailable)
        #expect(self.status(readOnly).1 == "error")

        // error wins over degraded.
        let both = try MonitorFixture()
        both.healthySnapshot { $0.workers[0].state = "crash-loop" }
        #expect(self.status(both).1 == "error")
        #expect(self.status(both).2.count == 2)
    }

    @Test func writeProbeOnARealSpool() throws {
        let fixture = try MonitorFixture()
        #expect(MonitorProbes.probeWrite(fixture.spool))
        #expect(fixture.spool.names(in: .tmp).isEmpty)
        #expect(MonitorProbes.statvfsFree(fixture.spool.dataDir) != nil)
        if geteuid() != 0 {
            chmod(fixture.spool.directory(.tmp), 0o500)
            #expect(!MonitorProbes.probeWrite(fixture.spool))
            chmod(fixture.spool.directory(.tmp), 0o750)
        }
    }

    @Test func snapshotStoreKeepsTheLastGoodOne() throws {
        let store = MonitorSnapshotStore()
        var snapshot = MonitorSnapshot()
        snapshot.generation = 3
        let json = String(decoding: try JSONEncoder().encode(snapshot), as: UTF8.self)
        #expect(store.update(json: json))
        #expect(!store.update(json: "{garbage"))
        #expect(store.latest?.snapshot.generation == 3)
    }
}
