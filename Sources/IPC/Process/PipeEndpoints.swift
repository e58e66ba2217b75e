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
        let bytes = message.encoded()
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
public final class StatusReporter: @unchecked Sendable {
    public let writer: PipeWriter?

    public init(writer: PipeWriter?) { self.writer = writer }

    public func count(_ name: String, _ labels: String = "", by delta: Int = 1) {
        self.writer?.send(.workerCounter(name: name, labels: labels, delta: delta))
    }

    public func observe(_ name: String, _ labels: String = "", _ value: Double) {
        self.writer?.send(.workerObservation(name: name, labels: labels, value: value))
    }

    public func gauge(_ name: String, _ labels: String = "", _ value: Double) {
        self.writer?.send(.workerGauge(name: name, labels: labels, value: value))
    }
}
