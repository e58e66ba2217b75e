import Foundation
import IPC

/// When a deferred message is tried again and when it is given up, and how recipients are split
/// into transactions.
struct ForwarderRetryPolicy: Sendable, Equatable {
    var initialDelay: Int
    var maxDelay: Int
    var maxLifetime: Int

    init(initialDelay: Int, maxDelay: Int, maxLifetime: Int) {
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        self.maxLifetime = maxLifetime
    }

    init(_ queue: MailerConfig.Queue) {
        self.init(initialDelay: queue.retryInitialDelay, maxDelay: queue.retryMaxDelay, maxLifetime: queue.maxQueueLifetime)
    }

    /// Seconds until the next attempt after `attempts` attempts (1 after the first): the initial
    /// delay, doubled per further attempt, capped at the maximum.
    func delay(afterAttempts attempts: Int) -> Int {
        let doublings = max(0, attempts - 1)
        guard doublings < 40 else { return self.maxDelay }
        return min(self.maxDelay, self.initialDelay << doublings)
    }

    /// The message has been in the queue longer than `queue.maxQueueLifetime`.
    func isExpired(receivedAt: Double, now: Date) -> Bool {
        now.timeIntervalSince1970 - receivedAt >= Double(self.maxLifetime)
    }

    /// Recipients in transactions of at most `size`, in order (45 by 20 → 20, 20, 5).
    static func batches<T>(_ items: [T], size: Int) -> [[T]] {
        precondition(size > 0, "batch size must be positive")
        return stride(from: 0, to: items.count, by: size).map { Array(items[$0..<min($0 + size, items.count)]) }
    }
}
