import Foundation
import IPC

/// Per-sender and global message counts in fixed hour and day windows (`rateLimits`). A message
/// counts when its MAIL FROM is admitted (as Postfix counts delivery requests), in the same locked
/// step as the check, so sessions running side by side cannot all pass the last free slot. Counts
/// live in the receiver's memory: a restart of the receiver starts them over.
final class RateLimiter: @unchecked Sendable {
    private struct Window {
        var hour: Int = -1
        var hourCount = 0
        var day: Int = -1
        var dayCount = 0

        mutating func roll(now: Int) {
            if now / 3600 != self.hour { self.hour = now / 3600; self.hourCount = 0 }
            if now / 86_400 != self.day { self.day = now / 86_400; self.dayCount = 0 }
        }
    }

    enum Verdict: Equatable {
        case allowed
        case senderHourly, senderDaily, globalHourly, globalDaily
    }

    private let limits: MailerConfig.RateLimits
    private let lock = NSLock()
    private var senders: [String: Window] = [:]
    private var global = Window()

    init(limits: MailerConfig.RateLimits) { self.limits = limits }

    /// Checks one more message from `sender` against every limit and, when it fits, counts it.
    func admit(sender: String, now: Int = Int(Date().timeIntervalSince1970)) -> Verdict {
        guard self.limits.enabled else { return .allowed }
        self.lock.lock()
        defer { self.lock.unlock() }
        let verdict = self.checkLocked(sender: sender, now: now)
        if verdict == .allowed { self.recordLocked(sender: sender, now: now) }
        return verdict
    }

    /// Whether one more message from `sender` fits every limit now (counts nothing).
    func check(sender: String, now: Int = Int(Date().timeIntervalSince1970)) -> Verdict {
        guard self.limits.enabled else { return .allowed }
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.checkLocked(sender: sender, now: now)
    }

    /// Counts a message without checking.
    func record(sender: String, now: Int = Int(Date().timeIntervalSince1970)) {
        guard self.limits.enabled else { return }
        self.lock.lock()
        defer { self.lock.unlock() }
        self.recordLocked(sender: sender, now: now)
    }

    private func checkLocked(sender: String, now: Int) -> Verdict {
        self.global.roll(now: now)
        if self.limits.globalMaxPerHour > 0 && self.global.hourCount >= self.limits.globalMaxPerHour { return .globalHourly }
        if self.limits.globalMaxPerDay > 0 && self.global.dayCount >= self.limits.globalMaxPerDay { return .globalDaily }
        var window = self.senders[sender.lowercased()] ?? Window()
        window.roll(now: now)
        self.senders[sender.lowercased()] = window
        if self.limits.maxPerHour > 0 && window.hourCount >= self.limits.maxPerHour { return .senderHourly }
        if self.limits.maxPerDay > 0 && window.dayCount >= self.limits.maxPerDay { return .senderDaily }
        return .allowed
    }

    private func recordLocked(sender: String, now: Int) {
        self.global.roll(now: now)
        self.global.hourCount += 1
        self.global.dayCount += 1
        var window = self.senders[sender.lowercased()] ?? Window()
        window.roll(now: now)
        window.hourCount += 1
        window.dayCount += 1
        self.senders[sender.lowercased()] = window
        if self.senders.count > 100_000 {
            // Forget senders whose day is over, so the table cannot grow without bound.
            self.senders = self.senders.filter { $0.value.day == now / 86_400 }
        }
    }
}
