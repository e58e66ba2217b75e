import Foundation
import Logging

/// One line per event on stderr (journald picks it up), optionally appended to a file that
/// logrotate may rotate (it is reopened when it disappears):
/// `2026-11-29T15:04:05.123Z info mailer/receiver[1234] message key=value`.
public struct MailerLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let sink: LogSink
    /// `label[pid]`: the same on every line.
    private let origin: [UInt8]

    public init(label: String, sink: LogSink) {
        self.sink = sink
        self.origin = Array("\(label)[\(CurrentProcess.id)]".utf8)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(
        level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String,
        file: String, function: String, line: UInt
    ) {
        // Built as bytes in one buffer: a log line is written for every accepted and every delivered
        // message, and string interpolation, a merged dictionary and copies of the line cost more
        // than the write itself.
        var line: [UInt8] = []
        line.reserveCapacity(256)
        LogSink.appendTimestamp(to: &line)
        line.append(UInt8(ascii: " "))
        line.append(contentsOf: level.rawValue.utf8)
        line.append(UInt8(ascii: " "))
        line.append(contentsOf: self.origin)
        line.append(UInt8(ascii: " "))
        line.append(contentsOf: message.description.utf8)
        // The handler's metadata and the call's (which wins on a shared key), sorted by key,
        // without building a merged dictionary.
        var all: [(key: String, value: Logger.MetadataValue)] = []
        all.reserveCapacity(self.metadata.count + (explicit?.count ?? 0))
        for (key, value) in self.metadata where explicit?[key] == nil { all.append((key, value)) }
        if let explicit { for (key, value) in explicit { all.append((key, value)) } }
        all.sort { $0.key < $1.key }
        for (key, value) in all {
            let text = value.description
            let quoted = text.utf8.contains(UInt8(ascii: " "))
            line.append(UInt8(ascii: " "))
            line.append(contentsOf: key.utf8)
            line.append(contentsOf: quoted ? #"=""#.utf8 : "=".utf8)
            line.append(contentsOf: text.utf8)
            if quoted { line.append(UInt8(ascii: "\"")) }
        }
        line.append(UInt8(ascii: "\n"))
        self.sink.write(line)
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

    func write(_ bytes: [UInt8]) {
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

    /// Appends `2026-11-29T15:04:05.123Z`, formatted by hand: `String(format:)` goes through
    /// CoreFoundation and costs more than the rest of a log line.
    static func appendTimestamp(to out: inout [UInt8]) {
        var tv = timeval()
        gettimeofday(&tv, nil)
        var tmv = tm()
        var seconds = tv.tv_sec
        gmtime_r(&seconds, &tmv)
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
    }
}
