import Dispatch
import Foundation

/// Runs a handler for SIGTERM and SIGINT in a worker (the supervisor has its own self-pipe loop).
/// Each signal has this one owner in a worker process.
public enum SignalTraps {
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []

    public static func onTerminate(_ handler: @escaping @Sendable () -> Void) {
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler(handler: handler)
            source.resume()
            self.sources.append(source)
        }
    }
}
