import Foundation
import IPC
import Logging

/// Decides what is delivered when: scans the spool at start, every `queue.scanInterval` seconds
/// and when woken (a byte on the wake pipe, a hint only), claims messages while a delivery slot is
/// free, and hands each to one of `workerCount` delivery threads. Pause stops claiming; drain
/// stops claiming, waits for the deliveries in flight and exits.
final class ForwarderScheduler: @unchecked Sendable {
    private let spool: Spool
    private let delivery: ForwarderDelivery
    private let pool: ForwarderConnectionPool?
    private let workerCount: Int
    private let scanInterval: TimeInterval
    private let wakeFD: Int32?
    private let logger: Logger
    private let reporter: StatusReporter
    private let condition = NSCondition()
    private var paused = false
    private var draining = false
    private var inFlight: Set<String> = []
    private var handoff: [ClaimedMessage] = []
    /// Ids found by the last scan and not yet claimed (scanner thread only).
    private var candidates: [(id: String, state: Spool.State)] = []
    private let selfPipe: (read: Int32, write: Int32)

    init(spool: Spool, delivery: ForwarderDelivery, pool: ForwarderConnectionPool?, workerCount: Int,
         scanInterval: TimeInterval, wakeFD: Int32?, logger: Logger, reporter: StatusReporter) {
        self.spool = spool
        self.delivery = delivery
        self.pool = pool
        self.workerCount = max(1, workerCount)
        self.scanInterval = max(0.1, scanInterval)
        self.wakeFD = wakeFD
        self.logger = logger
        self.reporter = reporter
        var fds: [Int32] = [-1, -1]
        if pipe(&fds) == 0 {
            for fd in fds {
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            }
        }
        self.selfPipe = (fds[0], fds[1])
    }

    // MARK: - Control (any thread)

    func pause() {
        self.update { $0.paused = true }
        self.logger.info("deliveries paused")
    }

    func resume() {
        self.update { $0.paused = false }
        self.logger.info("deliveries resumed")
    }

    func drain(reason: String) {
        var first = false
        self.update {
            first = !$0.draining
            $0.draining = true
        }
        if first { self.logger.info("draining (\(reason)): no new deliveries") }
    }

    private func update(_ change: (ForwarderScheduler) -> Void) {
        self.condition.lock()
        change(self)
        self.condition.broadcast()
        self.condition.unlock()
        self.poke()
    }

    private func poke() {
        var byte: UInt8 = 1
        _ = write(self.selfPipe.write, &byte, 1)
    }

    // MARK: - Scanner (the calling thread, forever)

    func run() -> Never {
        for number in 0..<self.workerCount {
            let thread = Thread { [self] in self.deliveryLoop() }
            thread.name = "delivery-\(number)"
            thread.start()
        }
        var nextScan = Date.distantPast
        var wanted = true
        var lastReap = Date()
        while true {
            self.condition.lock()
            let draining = self.draining
            let paused = self.paused
            let free = self.workerCount - self.inFlight.count
            self.condition.unlock()
            if draining { self.finishDrain() }

            let now = Date()
            var timerFired = false
            if now >= nextScan {
                timerFired = true
                wanted = true
                nextScan = now.addingTimeInterval(self.scanInterval)
            }
            if !paused && free > 0 {
                if wanted && (self.candidates.isEmpty || timerFired) {
                    self.condition.lock()
                    let busy = self.inFlight
                    self.condition.unlock()
                    // A wake-up means new mail: list new/ only. The timer looks at everything,
                    // due retries and abandoned claims included.
                    self.candidates = self.spool.claimable(newOnly: !timerFired).filter { !busy.contains($0.id) }
                    wanted = false
                }
                self.claim(upTo: free)
            }
            if now.timeIntervalSince(lastReap) >= 1 {
                lastReap = now
                self.pool?.closeIdle()
            }
            let wait = max(0, min(1, nextScan.timeIntervalSinceNow))
            if self.waitForEvents(milliseconds: Int32(wait * 1000)) { wanted = true }
        }
    }

    private func claim(upTo free: Int) {
        var free = free
        var index = 0
        while free > 0 && index < self.candidates.count {
            let candidate = self.candidates[index]
            index += 1
            self.condition.lock()
            let busy = self.inFlight.contains(candidate.id)
            self.condition.unlock()
            if busy { continue }
            guard let claimed = self.spool.claim(candidate.id, from: candidate.state) else { continue }
            self.condition.lock()
            self.inFlight.insert(claimed.envelope.id)
            self.handoff.append(claimed)
            let count = self.inFlight.count
            self.condition.signal()
            self.condition.unlock()
            self.reporter.gauge("mailer_deliveries_in_flight", "", Double(count))
            free -= 1
        }
        self.candidates.removeFirst(index)
    }

    /// Waits on the wake pipe and the self-pipe; true when the wake pipe had bytes.
    private func waitForEvents(milliseconds: Int32) -> Bool {
        var fds = [pollfd(fd: self.selfPipe.read, events: Int16(POLLIN), revents: 0)]
        if let wake = self.wakeFD { fds.append(pollfd(fd: wake, events: Int16(POLLIN), revents: 0)) }
        let ready = poll(&fds, nfds_t(fds.count), milliseconds)
        guard ready > 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 512)
        var woken = false
        for pfd in fds where pfd.revents != 0 {
            // Both ends are non-blocking: read until empty. A wake pipe at EOF (impossible while the
            // supervisor lives) would spin, so stop watching it then.
            while true {
                let n = read(pfd.fd, &buffer, buffer.count)
                if n <= 0 { break }
                if pfd.fd == self.wakeFD { woken = true }
            }
        }
        return woken
    }

    // MARK: - Delivery threads

    private func deliveryLoop() {
        while true {
            self.condition.lock()
            while self.handoff.isEmpty { self.condition.wait() }
            let claimed = self.handoff.removeFirst()
            let skip = self.paused || self.draining
            self.condition.unlock()
            if skip {
                self.spool.unclaim(claimed)
            } else {
                self.delivery.deliver(claimed)
            }
            self.condition.lock()
            let wasFull = self.inFlight.count >= self.workerCount
            self.inFlight.remove(claimed.envelope.id)
            let count = self.inFlight.count
            // Only a drain waits for deliveries to end. The other waiters on this condition are the
            // idle delivery threads: waking all of them after every message costs a context switch
            // each and hands them nothing (the scanner signals one per claim).
            if self.draining { self.condition.broadcast() }
            self.condition.unlock()
            self.reporter.gauge("mailer_deliveries_in_flight", "", Double(count))
            // The scanner waits for a free slot only when every slot was taken: otherwise it
            // already claimed what it had, and waking it would cost two context switches for nothing.
            if wasFull { self.poke() }
        }
    }

    private func finishDrain() -> Never {
        self.condition.lock()
        while !self.inFlight.isEmpty {
            _ = self.condition.wait(until: Date().addingTimeInterval(0.5))
        }
        self.condition.unlock()
        self.pool?.closeAll()
        usleep(100_000)
        self.logger.info("drained: exiting")
        exit(0)
    }
}
