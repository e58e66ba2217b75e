import Foundation

/// Reads typed values out of one JSON object of the configuration file, remembering which keys it
/// was asked for so that the rest can be reported as unknown. Errors name the full dotted key and
/// the line it stands on.
struct ConfigReader {
    private let object: [String: JSONValue]
    private let path: String
    private let locator: KeyLocator
    private(set) var knownKeys: Set<String> = []

    init(object: [String: JSONValue], path: String, locator: KeyLocator) {
        self.object = object
        self.path = path
        self.locator = locator
    }

    func fullKey(_ key: String) -> String { self.path.isEmpty ? key : "\(self.path).\(key)" }

    func error(_ key: String, _ message: String) -> ConfigError {
        let full = self.fullKey(key)
        return ConfigError(key: full, line: self.locator.line(of: full), message: message)
    }

    private mutating func value(_ key: String) -> JSONValue? {
        self.knownKeys.insert(key)
        guard let value = self.object[key], value != .null else { return nil }
        return value
    }

    mutating func string(_ key: String, default defaultValue: String) throws -> String {
        guard let value = self.value(key) else { return defaultValue }
        guard case .string(let s) = value else {
            throw self.error(key, "expected a string, found \(value.typeName)")
        }
        return s
    }

    mutating func bool(_ key: String, default defaultValue: Bool) throws -> Bool {
        guard let value = self.value(key) else { return defaultValue }
        switch value {
        case .bool(let b): return b
        case .string(let s) where ["true", "false"].contains(s.lowercased()): return s.lowercased() == "true"
        default: throw self.error(key, "expected true or false, found \(value.typeName)")
        }
    }

    mutating func int(_ key: String, default defaultValue: Int, range: ClosedRange<Int>? = nil) throws -> Int {
        guard let value = self.value(key) else { return defaultValue }
        let number: Int
        switch value {
        case .int(let i): number = i
        case .double(let d) where d == d.rounded() && abs(d) < 1e15: number = Int(d)
        default: throw self.error(key, "expected an integer, found \(value.typeName)")
        }
        if let range = range, !range.contains(number) {
            throw self.error(key, "\(number) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    mutating func object(_ key: String) throws -> ConfigReader? {
        guard let value = self.value(key) else { return nil }
        guard case .object(let o) = value else {
            throw self.error(key, "expected an object, found \(value.typeName)")
        }
        return ConfigReader(object: o, path: self.fullKey(key), locator: self.locator)
    }

    mutating func objects(_ key: String) throws -> [ConfigReader] {
        guard let value = self.value(key) else { return [] }
        guard case .array(let items) = value else {
            throw self.error(key, "expected an array, found \(value.typeName)")
        }
        return try items.enumerated().map { index, item in
            guard case .object(let o) = item else {
                throw self.error("\(key)[\(index)]", "expected an object, found \(item.typeName)")
            }
            return ConfigReader(object: o, path: self.fullKey("\(key)[\(index)]"), locator: self.locator)
        }
    }

    mutating func strings(_ key: String, default defaultValue: [String]) throws -> [String] {
        guard let value = self.value(key) else { return defaultValue }
        guard case .array(let items) = value else {
            throw self.error(key, "expected an array of strings, found \(value.typeName)")
        }
        return try items.map {
            guard case .string(let s) = $0 else { throw self.error(key, "expected an array of strings") }
            return s
        }
    }

    /// Keys present in the object that nobody asked for, as full dotted paths.
    func unknownKeys() -> [String] {
        self.object.keys.filter { !self.knownKeys.contains($0) }.sorted().map { self.fullKey($0) }
    }
}

/// Finds the line of a key path (`security.requireAuth`, `forwardProviders[1].host`) in the configuration
/// text. It scans the JSON5 text once, skipping comments and string values, and records the line of
/// every key and of every array element; a key that is missing gets the line of the nearest enclosing
/// value that is present.
struct KeyLocator {
    private var lines: [String: Int] = [:]

    init(text: String) {
        /// An object or array being scanned, with the path of the value it is.
        struct Frame {
            var path: String
            var isArray: Bool
            var index = 0
            var key: String?
            var expectingKey = true
        }
        let bytes = Array(text.utf8)
        var stack: [Frame] = []
        var line = 1
        var i = 0

        /// Where a value starting on `line` sits: records array elements, returns the value's path.
        func valueStarts() -> String {
            guard var top = stack.last else { return "" }
            if top.isArray {
                let path = "\(top.path)[\(top.index)]"
                if self.lines[path] == nil { self.lines[path] = line }
                return path
            }
            top.expectingKey = false
            stack[stack.count - 1] = top
            guard let key = top.key else { return top.path }
            return top.path.isEmpty ? key : "\(top.path).\(key)"
        }
        func keyFound(_ key: String) {
            stack[stack.count - 1].key = key
            let parent = stack[stack.count - 1].path
            let path = parent.isEmpty ? key : "\(parent).\(key)"
            if self.lines[path] == nil { self.lines[path] = line }
        }
        var expectingKey: Bool { stack.last.map { !$0.isArray && $0.expectingKey } ?? false }

        while i < bytes.count {
            let c = bytes[i]
            switch c {
            case UInt8(ascii: "\n"):
                line += 1
                i += 1
            case UInt8(ascii: "/") where i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "/"):
                while i < bytes.count && bytes[i] != UInt8(ascii: "\n") { i += 1 }
            case UInt8(ascii: "/") where i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "*"):
                i += 2
                while i + 1 < bytes.count && !(bytes[i] == UInt8(ascii: "*") && bytes[i + 1] == UInt8(ascii: "/")) {
                    if bytes[i] == UInt8(ascii: "\n") { line += 1 }
                    i += 1
                }
                i += 2
            case UInt8(ascii: "\""), UInt8(ascii: "'"):
                let startLine = line
                var content: [UInt8] = []
                i += 1
                while i < bytes.count && bytes[i] != c {
                    if bytes[i] == UInt8(ascii: "\\") && i + 1 < bytes.count { i += 1 }
                    if bytes[i] == UInt8(ascii: "\n") { line += 1 }
                    content.append(bytes[i])
                    i += 1
                }
                i += 1
                let savedLine = line
                line = startLine
                if expectingKey { keyFound(String(decoding: content, as: UTF8.self)) } else { _ = valueStarts() }
                line = savedLine
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                let path = valueStarts()
                stack.append(Frame(path: path, isArray: c == UInt8(ascii: "[")))
                i += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                if !stack.isEmpty { stack.removeLast() }
                i += 1
            case UInt8(ascii: ":"):
                if !stack.isEmpty { stack[stack.count - 1].expectingKey = false }
                i += 1
            case UInt8(ascii: ","):
                if var top = stack.popLast() {
                    if top.isArray { top.index += 1 } else { top.expectingKey = true; top.key = nil }
                    stack.append(top)
                }
                i += 1
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"):
                i += 1
            default:
                // A bare word: an unquoted key (JSON5), a number, true, false or null.
                let start = i
                while i < bytes.count && !" \t\r\n,:{}[]\"'/".utf8.contains(bytes[i]) { i += 1 }
                if i == start { i += 1 }
                if expectingKey {
                    keyFound(String(decoding: bytes[start..<i], as: UTF8.self))
                } else {
                    _ = valueStarts()
                }
            }
        }
    }

    /// The 1-based line of `dottedKey`, or of its nearest enclosing value present in the text.
    func line(of dottedKey: String) -> Int? {
        var key = Substring(dottedKey)
        while !key.isEmpty {
            if let line = self.lines[String(key)] { return line }
            guard let cut = key.lastIndex(where: { $0 == "." || $0 == "[" }) else { return nil }
            key = key[..<cut]
        }
        return nil
    }
}
