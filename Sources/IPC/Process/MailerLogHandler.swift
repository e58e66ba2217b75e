import Foundation
import Logging

/// One line per event on stderr (journald picks it up), optionally appended to a file that
/// logrotate may rotate (it is reopened when it disappears):
/// `2026-11-29T15:04:05.123Z info mailer/receiver[1234] message key=value`.
public struct MailerLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let sink: LogSink

    public init(label: String, sink: LogSink) {
        self.label = label
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(
        level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String,
        file: String, function: String, line: UInt
    ) {
        var all = self.metadata
        if let explicit = explicit { all.merge(explicit) { $1 } }
        var text = "\(LogSink.timestamp()) \(level) \(self.label)[\(CurrentProcess.id)] \(message)"
        for key in all.keys.sorted() {
            let value = "\(all[key]!)"
            text += value.utf8.contains(UInt8(ascii: " ")) ? " \(key)=\"\(value)\"" : " \(key)=\(value)"
        }
        self.sink.write(text + "\n")
    }

    /// Sets swift-log up once per process.
    public static func bootstrap(label: String, logFile: String = "", level: Logger.Level = .info) {
        let sink = LogSink(path: logFile)
        LoggingSystem.bootstrap { _ in
            var handler = MailerLogHandler(label: label, sink: sink)
            handler.logLevel = level
            return handler
        }
    }
}

/// Where log lines go: stderr, and the log file when one is configured.
public final class LogSink: @unchecked Sendable {
    private let path: String
    private var fileFD: Int32 = -1
    private let lock = NSLock()

    public init(path: String) {
        self.path = path
        if !path.isEmpty { self.fileFD = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o640) }
    }

    func write(_ line: String) {
        let bytes = Array(line.utf8)
        self.lock.lock()
        defer { self.lock.unlock() }
        _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress!, $0.count) }
        guard !self.path.isEmpty else { return }
        if access(self.path, F_OK) != 0 {
            if self.fileFD >= 0 { close(self.fileFD) }
            self.fileFD = open(self.path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o640)
        }
        if self.fileFD >= 0 { _ = bytes.withUnsafeBytes { Glibc.write(self.fileFD, $0.baseAddress!, $0.count) } }
    }

    /// `2026-11-29T15:04:05.123Z`, formatted by hand: `String(format:)` goes through CoreFoundation
    /// and costs more than the rest of a log line.
    static func timestamp() -> String {
        var tv = timeval()
        gettimeofday(&tv, nil)
        var tmv = tm()
        var seconds = tv.tv_sec
        gmtime_r(&seconds, &tmv)
        var out = [UInt8]()
        out.reserveCapacity(24)
        func digits(_ value: Int, _ width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            var v = value
            while divisor > 0 {
                out.append(UInt8(48 + (v / divisor) % 10))
                v %= divisor
                divisor /= 10
            }
        }
        digits(Int(tmv.tm_year) + 1900, 4); out.append(45)
        digits(Int(tmv.tm_mon) + 1, 2); out.append(45)
        digits(Int(tmv.tm_mday), 2); out.append(84)
        digits(Int(tmv.tm_hour), 2); out.append(58)
        digits(Int(tmv.tm_min), 2); out.append(58)
        digits(Int(tmv.tm_sec), 2); out.append(46)
        digits(Int(tv.tv_usec / 1000), 3); out.append(90)
        return String(decoding: out, as: UTF8.self)
    }
}
