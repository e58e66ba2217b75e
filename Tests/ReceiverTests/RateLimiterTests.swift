import Foundation
import Testing

@testable import IPC
@testable import Receiver

/// Per-sender and global counts in fixed hour and day windows.
@Suite struct RateLimiterTests {
    /// The start of an hour early in a day, so that the next hour is the same day.
    static let hourStart = 1_700_000_000 - 1_700_000_000 % 86_400 + 3600

    static func limits(
        perHour: Int = 0, perDay: Int = 0, globalPerHour: Int = 0, globalPerDay: Int = 0, enabled: Bool = true
    ) -> MailerConfig.RateLimits {
        var limits = MailerConfig.RateLimits()
        limits.enabled = enabled
        limits.maxPerHour = perHour
        limits.maxPerDay = perDay
        limits.globalMaxPerHour = globalPerHour
        limits.globalMaxPerDay = globalPerDay
        return limits
    }

    @Test func admittingCountsSoConcurrentSessionsCannotOverrun() {
        let limiter = RateLimiter(limits: Self.limits(perHour: 2))
        #expect(limiter.admit(sender: "a@example.com", now: Self.hourStart) == .allowed)
        #expect(limiter.admit(sender: "a@example.com", now: Self.hourStart) == .allowed)
        // Two transactions admitted, none committed yet: a third session is refused all the same.
        #expect(limiter.admit(sender: "a@example.com", now: Self.hourStart) == .senderHourly)
        #expect(limiter.check(sender: "a@example.com", now: Self.hourStart) == .senderHourly)
    }

    @Test func disabledLimitsAllowEverything() {
        let limiter = RateLimiter(limits: Self.limits(perHour: 1, perDay: 1, globalPerHour: 1, enabled: false))
        for _ in 0..<10 { limiter.record(sender: "a@example.com", now: Self.hourStart) }
        #expect(limiter.check(sender: "a@example.com", now: Self.hourStart) == .allowed)
    }

    @Test func theDefaultsAreDisabled() {
        let limiter = RateLimiter(limits: MailerConfig.RateLimits())
        for _ in 0..<600 { limiter.record(sender: "a@example.com", now: Self.hourStart) }
        #expect(limiter.check(sender: "a@example.com", now: Self.hourStart) == .allowed)
    }

    @Test func perSenderHourlyLimit() {
        let limiter = RateLimiter(limits: Self.limits(perHour: 2, perDay: 100))
        let now = Self.hourStart
        #expect(limiter.check(sender: "a@example.com", now: now) == .allowed)
        limiter.record(sender: "a@example.com", now: now)
        #expect(limiter.check(sender: "a@example.com", now: now + 10) == .allowed, "checking does not count")
        limiter.record(sender: "a@example.com", now: now + 10)
        #expect(limiter.check(sender: "a@example.com", now: now + 20) == .senderHourly)
        #expect(limiter.check(sender: "b@example.com", now: now + 20) == .allowed, "other senders are not affected")
        #expect(limiter.check(sender: "a@example.com", now: now + 3599) == .senderHourly)
        #expect(limiter.check(sender: "a@example.com", now: now + 3600) == .allowed, "the next hour starts over")
    }

    @Test func perSenderDailyLimit() {
        let limiter = RateLimiter(limits: Self.limits(perHour: 0, perDay: 3))
        let now = Self.hourStart
        for hour in 0..<3 { limiter.record(sender: "a@example.com", now: now + hour * 3600) }
        #expect(limiter.check(sender: "a@example.com", now: now + 4 * 3600) == .senderDaily)
        let nextDay = now - now % 86_400 + 86_400
        #expect(limiter.check(sender: "a@example.com", now: nextDay - 1) == .senderDaily)
        #expect(limiter.check(sender: "a@example.com", now: nextDay) == .allowed)
    }

    @Test func sendersAreCaseInsensitive() {
        let limiter = RateLimiter(limits: Self.limits(perHour: 1))
        limiter.record(sender: "Alice@Example.COM", now: Self.hourStart)
        #expect(limiter.check(sender: "alice@example.com", now: Self.hourStart) == .senderHourly)
    }

    @Test func globalHourlyLimitCountsEverySender() {
        let limiter = RateLimiter(limits: Self.limits(perHour: 100, globalPerHour: 3))
        for i in 0..<3 { limiter.record(sender: "s\(i)@example.com", now: Self.hourStart) }
        #expect(limiter.check(sender: "new@example.com", now: Self.hourStart) == .globalHourly)
        #expect(limiter.check(sender: "new@example.com", now: Self.hourStart + 3600) == .allowed)
    }

    @Test func globalDailyLimit() {
        let limiter = RateLimiter(limits: Self.limits(globalPerDay: 2))
        limiter.record(sender: "a@example.com", now: Self.hourStart)
        limiter.record(sender: "b@example.com", now: Self.hourStart + 3600)
        #expect(limiter.check(sender: "c@example.com", now: Self.hourStart + 7200) == .globalDaily)
    }

    @Test func globalLimitIsReportedBeforeTheSendersOwn() {
        let limiter = RateLimiter(limits: Self.limits(perHour: 1, globalPerHour: 1))
        limiter.record(sender: "a@example.com", now: Self.hourStart)
        #expect(limiter.check(sender: "a@example.com", now: Self.hourStart) == .globalHourly)
    }

    @Test func concurrentRecordsAreAllCounted() async {
        let limiter = RateLimiter(limits: Self.limits(perHour: 800))
        let now = Self.hourStart
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    for _ in 0..<100 { limiter.record(sender: "a@example.com", now: now) }
                }
            }
        }
        #expect(limiter.check(sender: "a@example.com", now: now) == .senderHourly)
        let roomier = RateLimiter(limits: Self.limits(perHour: 801))
        for _ in 0..<800 { roomier.record(sender: "a@example.com", now: now) }
        #expect(roomier.check(sender: "a@example.com", now: now) == .allowed)
    }
}
