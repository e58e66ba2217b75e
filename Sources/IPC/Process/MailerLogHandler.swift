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
        var text = "\(LogSink.timestamp()) \(level) \(self.label)[\(getpid())] \(message)"
        for key in all.keys.sorted() {
            let value = "\(all[key]!)"
            text += value.contains(" ") ? " \(key)=\"\(value)\"" : " \(key)=\(value)"
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

    static func timestamp() -> String {
        var tv = timeval()
        gettimeofday(&tv, nil)
        var tmv = tm()
        var seconds = tv.tv_sec
        gmtime_r(&seconds, &tmv)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tmv.tm_year + 1900, tmv.tm_mon + 1, tmv.tm_mday,
            tmv.tm_hour, tmv.tm_min, tmv.tm_sec, Int(tv.tv_usec / 1000))
    }
}
