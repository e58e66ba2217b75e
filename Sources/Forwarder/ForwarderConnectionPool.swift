import Foundation

/// Idle sessions per hop, so that several messages to one provider share a connection (each
/// transaction after the first starts with RSET). A session idle longer than `idleTimeout` is
/// closed with QUIT.
final class ForwarderConnectionPool: @unchecked Sendable {
    let idleTimeout: TimeInterval
    let maxIdlePerHop: Int
    private let lock = NSLock()
    private var idle: [ForwarderHop: [ForwarderConnection]] = [:]

    init(idleTimeout: TimeInterval = 30, maxIdlePerHop: Int) {
        self.idleTimeout = idleTimeout
        self.maxIdlePerHop = max(1, maxIdlePerHop)
    }

    /// A usable idle session to `hop`, most recently used first.
    func take(_ hop: ForwarderHop) -> ForwarderConnection? {
        while true {
            self.lock.lock()
            let candidate = self.idle[hop]?.popLast()
            self.lock.unlock()
            guard let connection = candidate else { return nil }
            if connection.isUsable { return connection }
            connection.close()
        }
    }

    func give(_ connection: ForwarderConnection) {
        guard connection.isUsable else {
            connection.close()
            return
        }
        connection.idleSince = Date()
        self.lock.lock()
        var list = self.idle[connection.hop] ?? []
        let keep = list.count < self.maxIdlePerHop
        if keep { list.append(connection) }
        self.idle[connection.hop] = list
        self.lock.unlock()
        if !keep { connection.close() }
    }

    /// Closes the sessions idle for longer than `idleTimeout`.
    func closeIdle(now: Date = Date()) {
        self.lock.lock()
        var expired: [ForwarderConnection] = []
        for (hop, list) in self.idle {
            let (old, fresh) = (list.filter { now.timeIntervalSince($0.idleSince) >= self.idleTimeout },
                                list.filter { now.timeIntervalSince($0.idleSince) < self.idleTimeout })
            expired += old
            self.idle[hop] = fresh
        }
        self.lock.unlock()
        for connection in expired { connection.close() }
    }

    func closeAll() {
        self.lock.lock()
        let all = self.idle.values.flatMap { $0 }
        self.idle = [:]
        self.lock.unlock()
        for connection in all { connection.close() }
    }
}
