import Foundation
import NIOCore

/// The headers the receiver adds in front of a message: `Received:` with the queue id always, and
/// `Message-ID:` and `Date:` when the message has none (RFC 5321 §4.4, RFC 5322 §3.6).
struct TraceHeaders {
    var queueID: String
    var hostname: String
    var heloName: String
    var clientIP: String
    /// `ESMTP`, `ESMTPSA`, … (RFC 3848), or `UTF8SMTP…` (RFC 6531).
    var protocolName: String
    var recipients: [String]
    var date: Date

    /// The bytes to write before the message body, given what its headers already carry.
    func render(for summary: HeaderSummary) -> ByteBuffer {
        var text = "Received: from \(self.heloName) ([\(self.clientIP)])\r\n\tby \(self.hostname) (mailer) with \(self.protocolName) id \(self.queueID)"
        if self.recipients.count == 1 { text += "\r\n\tfor <\(self.recipients[0])>" }
        text += "; \(Self.rfc5322Date(self.date))\r\n"
        if !summary.hasMessageID { text += "Message-ID: <\(self.queueID)@\(self.hostname)>\r\n" }
        if !summary.hasDate { text += "Date: \(Self.rfc5322Date(self.date))\r\n" }
        return ByteBuffer(string: text)
    }

    /// `Sun, 29 Nov 2026 15:04:05 +0000`, formatted by hand (no CoreFoundation on the hot path).
    static func rfc5322Date(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(days[Int(parts.tm_wday)]), \(parts.tm_mday) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) +0000"
    }
}

/// What the header section of a message says about itself: whether it has a Message-ID and a
/// Date, and its Subject (for `logAllEmails`).
struct HeaderSummary {
    var hasMessageID = false
    var hasDate = false
    var subject: String?

    init(_ body: ByteBuffer) {
        let view = body.readableBytesView
        var lineStart = view.startIndex
        var index = view.startIndex
        while index < view.endIndex {
            if view[index] == 0x0A {
                var end = index
                if end > lineStart && view[end - 1] == 0x0D { end -= 1 }
                if end == lineStart { return }  // the empty line: headers are over
                self.inspect(view[lineStart..<end])
                lineStart = index + 1
            }
            index += 1
        }
    }

    private mutating func inspect(_ line: ByteBufferView.SubSequence) {
        guard let first = line.first, first != 0x20, first != 0x09, let colon = line.firstIndex(of: UInt8(ascii: ":"))
        else { return }
        let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self).lowercased()
        switch name {
        case "message-id": self.hasMessageID = true
        case "date": self.hasDate = true
        case "subject" where self.subject == nil:
            let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingCharacters(in: .whitespaces)
            self.subject = String(value.prefix(200))
        default: break
        }
    }
}
