import Foundation

/// Skips a provider that keeps failing: after `threshold` consecutive failures it is open (skipped)
/// for `cooldown` seconds; then one attempt (the probe) goes through while the others still skip
/// it. A success closes it; a failed probe opens it for another cool-down. `onChange` gets the
/// provider's name and whether it is now open (for the `mailer_provider_circuit_open` gauge).
final class ForwarderCircuitBreaker: @unchecked Sendable {
    enum State: Equatable {
        case closed(failures: Int)
        case open(until: Date)
        /// A probe is in flight since this time.
        case probing(since: Date)
    }

    let threshold: Int
    let cooldown: TimeInterval
    private let onChange: @Sendable (String, Bool) -> Void
    private let lock = NSLock()
    private var states: [String: State] = [:]

    init(threshold: Int, cooldown: TimeInterval, onChange: @escaping @Sendable (String, Bool) -> Void = { _, _ in }) {
        self.threshold = max(1, threshold)
        self.cooldown = cooldown
        self.onChange = onChange
    }

    func state(of name: String) -> State {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.states[name] ?? .closed(failures: 0)
    }

    /// True when an attempt may go to `name` now (a closed circuit, or the probe of an open one).
    func admit(_ name: String, now: Date = Date()) -> Bool {
        self.lock.lock()
        defer { self.lock.unlock() }
        switch self.states[name] ?? .closed(failures: 0) {
        case .closed:
            return true
        case .open(let until):
            guard now >= until else { return false }
            self.states[name] = .probing(since: now)
            return true
        case .probing(let since):
            // A probe that never reported (its thread was stopped) does not block the provider forever.
            guard now.timeIntervalSince(since) >= self.cooldown else { return false }
            self.states[name] = .probing(since: now)
            return true
        }
    }

    func recordSuccess(_ name: String) {
        self.lock.lock()
        let wasOpen = self.isOpen(self.states[name])
        self.states[name] = .closed(failures: 0)
        self.lock.unlock()
        if wasOpen { self.onChange(name, false) }
    }

    func recordFailure(_ name: String, now: Date = Date()) {
        self.lock.lock()
        var opened = false
        switch self.states[name] ?? .closed(failures: 0) {
        case .closed(let failures):
            if failures + 1 >= self.threshold {
                self.states[name] = .open(until: now.addingTimeInterval(self.cooldown))
                opened = true
            } else {
                self.states[name] = .closed(failures: failures + 1)
            }
        case .open, .probing:
            self.states[name] = .open(until: now.addingTimeInterval(self.cooldown))
        }
        self.lock.unlock()
        if opened { self.onChange(name, true) }
    }

    private func isOpen(_ state: State?) -> Bool {
        switch state {
        case .open?, .probing?: return true
        default: return false
        }
    }
}
