/// Finds where a configuration file stops being valid JSON (with the JSON5 extensions the loader
/// accepts: comments, trailing commas, unquoted keys, single quotes). Foundation's decoder on Linux
/// says only "not valid JSON"; this walks the text once more to name the line and what was expected.
struct JSONSyntaxLocator {
    struct Problem: Error, Equatable {
        let line: Int
        let column: Int
        let message: String
    }

    private let bytes: [UInt8]
    private var index = 0

    private init(_ text: String) { self.bytes = Array(text.utf8) }

    /// The first syntax problem in `text`, or nil when it parses.
    static func locate(_ text: String) -> Problem? {
        var locator = JSONSyntaxLocator(text)
        do {
            locator.skipSpace()
            try locator.value()
            locator.skipSpace()
            if locator.index < locator.bytes.count { throw locator.problem("unexpected text after the end of the document") }
            return nil
        } catch let problem as Problem {
            return problem
        } catch {
            return nil
        }
    }

    private func problem(_ message: String) -> Problem {
        var line = 1
        var column = 1
        for byte in self.bytes[0..<min(self.index, self.bytes.count)] {
            if byte == 10 { line += 1; column = 1 } else { column += 1 }
        }
        return Problem(line: line, column: column, message: message)
    }

    private var current: UInt8? { self.index < self.bytes.count ? self.bytes[self.index] : nil }

    private mutating func skipSpace() {
        while let c = self.current {
            if c == 32 || c == 9 || c == 10 || c == 13 {
                self.index += 1
            } else if c == 47, self.index + 1 < self.bytes.count, self.bytes[self.index + 1] == 47 {
                while let d = self.current, d != 10 { self.index += 1 }
            } else if c == 47, self.index + 1 < self.bytes.count, self.bytes[self.index + 1] == 42 {
                self.index += 2
                while self.index + 1 < self.bytes.count && !(self.bytes[self.index] == 42 && self.bytes[self.index + 1] == 47) {
                    self.index += 1
                }
                self.index = min(self.index + 2, self.bytes.count)
            } else {
                return
            }
        }
    }

    private mutating func value() throws {
        guard let c = self.current else { throw self.problem("the document ends where a value was expected") }
        switch c {
        case UInt8(ascii: "{"): try self.object()
        case UInt8(ascii: "["): try self.array()
        case UInt8(ascii: "\""), UInt8(ascii: "'"): try self.string()
        default:
            let start = self.index
            while let d = self.current, Self.isWordByte(d) { self.index += 1 }
            let word = String(decoding: self.bytes[start..<self.index], as: UTF8.self)
            if ["true", "false", "null", "Infinity", "-Infinity", "+Infinity", "NaN"].contains(word) { return }
            if !word.isEmpty, Double(word) != nil || Self.isHex(word) { return }
            self.index = start
            throw self.problem(word.isEmpty ? "expected a value" : "'\(word)' is not a value (strings need quotes)")
        }
    }

    private mutating func object() throws {
        self.index += 1
        self.skipSpace()
        while self.current != UInt8(ascii: "}") {
            guard let c = self.current else { throw self.problem("the document ends inside an object: missing '}'") }
            if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                try self.string()
            } else {
                let start = self.index
                while let d = self.current, Self.isWordByte(d), d != UInt8(ascii: ".") { self.index += 1 }
                if self.index == start { throw self.problem("expected a key or '}'") }
            }
            self.skipSpace()
            guard self.current == UInt8(ascii: ":") else { throw self.problem("expected ':' after the key") }
            self.index += 1
            self.skipSpace()
            try self.value()
            try self.separator(closing: "}")
        }
        self.index += 1
    }

    private mutating func array() throws {
        self.index += 1
        self.skipSpace()
        while self.current != UInt8(ascii: "]") {
            guard self.current != nil else { throw self.problem("the document ends inside an array: missing ']'") }
            try self.value()
            try self.separator(closing: "]")
        }
        self.index += 1
    }

    /// After a member or an element: a ',' (a trailing one is allowed) or the closing bracket.
    private mutating func separator(closing: Unicode.Scalar) throws {
        self.skipSpace()
        if self.current == UInt8(ascii: ",") {
            self.index += 1
            self.skipSpace()
        } else if self.current != UInt8(ascii: closing) {
            throw self.problem("expected ',' or '\(closing)' (a comma is missing, or a bracket does not match)")
        }
    }

    private mutating func string() throws {
        let quote = self.bytes[self.index]
        self.index += 1
        while let c = self.current {
            self.index += 1
            if c == 92 { self.index += 1 } else if c == quote { return } else if c == 10 {
                self.index -= 1
                throw self.problem("a string is not closed on its line")
            }
        }
        throw self.problem("the document ends inside a string")
    }

    private static func isWordByte(_ c: UInt8) -> Bool {
        (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95 || c == 36 || c == 43
            || c == 45 || c == 46
    }

    private static func isHex(_ word: String) -> Bool {
        let body = word.hasPrefix("-") || word.hasPrefix("+") ? String(word.dropFirst()) : word
        return body.lowercased().hasPrefix("0x") && UInt64(body.dropFirst(2), radix: 16) != nil
    }
}
