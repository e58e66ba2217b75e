import Foundation

/// What the monitor can make other processes do. In the worker these write to the status pipe and
/// the wake pipe; tests record the calls.
struct MonitorActions: Sendable {
    /// Sends `monitorAdmin(action:)` to the supervisor ("pause", "resume"); false when it cannot.
    var relay: @Sendable (_ action: String) -> Bool
    /// One byte on the wake pipe: "there is mail in new/".
    var wakeForwarders: @Sendable () -> Void
}
