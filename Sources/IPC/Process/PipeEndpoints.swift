import Foundation

/// Writes `PipeMessage`s to a pipe. Frames up to PIPE_BUF bytes are atomic, so several threads may
/// share one writer; the lock keeps bigger frames whole too.
public final class PipeWriter: @unchecked Sendable {
    public let fd: Int32
    private let lock = NSLock()
    /// When set, a full pipe drops the message instead of waiting: for the supervisor, which must
    /// never block on a wedged worker (what it sends is periodic or repeated).
    private let dropWhenFull: Bool

    public init(fd: Int32, dropWhenFull: Bool = false) {
        self.fd = fd
        self.dropWhenFull = dropWhenFull
    }

    /// Returns false when the reader is gone (EPIPE) or the pipe is broken.
    @discardableResult
    public func send(_ message: PipeMessage) -> Bool {
        self.send([message])
    }

    /// Writes several messages with one write (as long as the pipe takes them at once).
    @discardableResult
    public func send(_ messages: [PipeMessage]) -> Bool {
        var bytes: [UInt8] = []
        for message in messages { bytes += message.encoded() }
        self.lock.lock()
        defer { self.lock.unlock() }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(self.fd, $0.baseAddress! + offset, bytes.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN {
                    if self.dropWhenFull && offset == 0 { return false }
                    var pfd = pollfd(fd: self.fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&pfd, 1, 100)
                    continue
                }
                return false
            }
            offset += n
        }
        return true
    }
}

/// Reads `PipeMessage`s from a pipe on its own thread and hands each to `handler`; calls `onClose`
/// once at EOF or on a malformed frame (a trusted peer sending garbage is a bug: the channel ends).
public final class PipeReaderThread: @unchecked Sendable {
    private let fd: Int32
    private let handler: @Sendable (PipeMessage) -> Void
    private let onClose: @Sendable (String) -> Void

    public init(fd: Int32, handler: @escaping @Sendable (PipeMessage) -> Void, onClose: @escaping @Sendable (String) -> Void) {
        self.fd = fd
        self.handler = handler
        self.onClose = onClose
    }

    public func start() {
        let thread = Thread { [self] in self.run() }
        thread.name = "pipe-reader-\(self.fd)"
        thread.start()
    }

    private func run() {
        var decoder = PipeMessageDecoder()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(self.fd, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                self.onClose(n == 0 ? "EOF" : String(cString: strerror(errno)))
                return
            }
            decoder.append(buffer[0..<n])
            do {
                while let message = try decoder.next() { self.handler(message) }
            } catch {
                self.onClose("malformed pipe message: \(error)")
                return
            }
        }
    }
}

/// What a worker reports to the supervisor: counters, gauges and observations that the supervisor
/// aggregates for the monitor. Label sets are `k=v` pairs joined by `,`.
///
/// Reports are gathered here and sent together every `flushInterval` (and at exit), in one write:
/// a message costs several of them, and one syscall and one wake-up of the supervisor for each would
/// be a tenth of the CPU a message takes. Counters are summed, gauges keep their last value,
/// observations are kept one by one (each lands in a histogram bucket). A worker killed with
/// SIGKILL loses at most the last interval's reports.
public final class StatusReporter: @unchecked Sendable {
    public let writer: PipeWriter?
    /// How long reports may wait before they are sent.
    public static let flushInterval: TimeInterval = 0.1
    private let lock = NSLock()
    private var counters: [SeriesKey: Int] = [:]
    private var gauges: [SeriesKey: Double] = [:]
    private var observations: [(SeriesKey, Double)] = []
    private var flusherStarted = false

    private struct SeriesKey: Hashable {
        var name: String
        var labels: String
    }

    public init(writer: PipeWriter?) { self.writer = writer }

    public func count(_ name: String, _ labels: String = "", by delta: Int = 1) {
        self.record { $0.counters[SeriesKey(name: name, labels: labels), default: 0] += delta }
    }

    public func observe(_ name: String, _ labels: String = "", _ value: Double) {
        self.record { $0.observations.append((SeriesKey(name: name, labels: labels), value)) }
    }

    public func gauge(_ name: String, _ labels: String = "", _ value: Double) {
        self.record { $0.gauges[SeriesKey(name: name, labels: labels)] = value }
    }

    private func record(_ change: (StatusReporter) -> Void) {
        guard self.writer != nil else { return }
        self.lock.lock()
        change(self)
        let start = !self.flusherStarted
        self.flusherStarted = true
        self.lock.unlock()
        if start { self.startFlusher() }
    }

    /// Sends everything gathered so far in one write.
    public func flush() {
        guard let writer = self.writer else { return }
        self.lock.lock()
        var messages: [PipeMessage] = self.counters.map { .workerCounter(name: $0.key.name, labels: $0.key.labels, delta: $0.value) }
        messages += self.gauges.map { .workerGauge(name: $0.key.name, labels: $0.key.labels, value: $0.value) }
        messages += self.observations.map { .workerObservation(name: $0.0.name, labels: $0.0.labels, value: $0.1) }
        self.counters.removeAll(keepingCapacity: true)
        self.gauges.removeAll(keepingCapacity: true)
        self.observations.removeAll(keepingCapacity: true)
        self.lock.unlock()
        if !messages.isEmpty { writer.send(messages) }
    }

    private func startFlusher() {
        StatusReporter.flushAtExit = self
        atexit { StatusReporter.flushAtExit?.flush() }
        let thread = Thread { [weak self] in
            while let reporter = self {
                Thread.sleep(forTimeInterval: StatusReporter.flushInterval)
                reporter.flush()
            }
        }
        thread.name = "status-flush"
        thread.start()
    }

    nonisolated(unsafe) private static var flushAtExit: StatusReporter?
}
