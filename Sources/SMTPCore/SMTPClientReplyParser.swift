import NIOCore

/// Splits what a server sends into replies (RFC 5321 §4.2): `250-first` … `250 last`, each line
/// ending in CRLF (a bare LF is tolerated, as most clients do). The enhanced status code (RFC 3463)
/// is taken off each line when the reply carries one, so `SMTPReply.lines` holds the text only.
///
/// A line longer than `maxLineLength`, a reply of more than `maxLines` lines, a line that does not
/// start with a three-digit code, or a continuation with another code is a protocol error: the
/// connection cannot be trusted to stay in step and is closed.
public struct SMTPClientReplyParser: Sendable {
    public struct ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        public let description: String
    }

    public let maxLineLength: Int
    public let maxLines: Int
    private var buffer: [UInt8] = []
    private var code: Int?
    private var lines: [String] = []

    public init(maxLineLength: Int = 4096, maxLines: Int = 1000) {
        self.maxLineLength = maxLineLength
        self.maxLines = maxLines
    }

    public mutating func append(_ bytes: some Sequence<UInt8>) { self.buffer.append(contentsOf: bytes) }

    public mutating func append(_ buffer: inout ByteBuffer) {
        buffer.withUnsafeReadableBytes { self.buffer.append(contentsOf: $0) }
        buffer.moveReaderIndex(to: buffer.writerIndex)
    }

    /// True when bytes of an unfinished reply are buffered.
    public var hasPartialInput: Bool { !self.buffer.isEmpty || self.code != nil }

    /// The next complete reply, nil when more bytes are needed.
    public mutating func next() throws -> SMTPReply? {
        while let newline = self.buffer.firstIndex(of: 0x0A) {
            var end = newline
            if end > 0 && self.buffer[end - 1] == 0x0D { end -= 1 }
            let line = Array(self.buffer[0..<end])
            self.buffer.removeFirst(newline + 1)
            if let reply = try self.take(line) { return reply }
        }
        if self.buffer.count > self.maxLineLength {
            throw ParseError(description: "reply line longer than \(self.maxLineLength) bytes")
        }
        return nil
    }

    private mutating func take(_ line: [UInt8]) throws -> SMTPReply? {
        guard line.count <= self.maxLineLength else {
            throw ParseError(description: "reply line longer than \(self.maxLineLength) bytes")
        }
        guard line.count >= 3, line[0] >= UInt8(ascii: "2"), line[0] <= UInt8(ascii: "5"),
              line[1...2].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else {
            throw ParseError(description: "malformed reply line: \(Self.printable(line))")
        }
        let code = Int(line[0] - 48) * 100 + Int(line[1] - 48) * 10 + Int(line[2] - 48)
        let separator: UInt8? = line.count > 3 ? line[3] : nil
        guard separator == nil || separator == UInt8(ascii: " ") || separator == UInt8(ascii: "-") else {
            throw ParseError(description: "malformed reply line: \(Self.printable(line))")
        }
        if let current = self.code, current != code {
            throw ParseError(description: "reply code changed from \(current) to \(code) within one reply")
        }
        self.code = code
        let text = line.count > 4 ? String(decoding: line[4...], as: UTF8.self) : ""
        self.lines.append(text)
        guard self.lines.count <= self.maxLines else { throw ParseError(description: "reply has too many lines") }
        if separator == UInt8(ascii: "-") { return nil }
        defer {
            self.code = nil
            self.lines = []
        }
        return Self.reply(code: code, lines: self.lines)
    }

    /// Builds the reply, taking the enhanced status code off every line when the first line has one
    /// whose class matches the reply code.
    static func reply(code: Int, lines: [String]) -> SMTPReply {
        guard let enhanced = Self.enhancedCode(lines[0]), enhanced.first == Character(String(code / 100)) else {
            return SMTPReply(code, nil, lines)
        }
        let stripped = lines.map { line -> String in
            guard line.hasPrefix(enhanced) else { return line }
            return String(line.dropFirst(enhanced.count).drop { $0 == " " })
        }
        return SMTPReply(code, enhanced, stripped)
    }

    private static func enhancedCode(_ text: String) -> String? {
        let word = text.prefix { $0 != " " }
        let parts = word.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let first = parts.first, ["2", "4", "5"].contains(first),
              parts[1].count >= 1, parts[1].count <= 3, parts[2].count >= 1, parts[2].count <= 3,
              parts.dropFirst().allSatisfy({ $0.allSatisfy(\.isNumber) })
        else { return nil }
        return String(word)
    }

    private static func printable(_ line: [UInt8]) -> String {
        String(decoding: line.prefix(80).map { $0 < 0x20 || $0 >= 0x7F ? UInt8(ascii: "?") : $0 }, as: UTF8.self)
    }
}
