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

/// Finds the line of a dotted key in the configuration text: the first `"last"` (or bare `last:`)
/// that comes after the lines of its parents.
struct KeyLocator {
    let lines: [Substring]

    init(text: String) {
        self.lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    }

    func line(of dottedKey: String) -> Int? {
        var from = 0
        var found: Int?
        for rawPart in dottedKey.split(separator: ".") {
            let part = rawPart.split(separator: "[").first.map(String.init) ?? String(rawPart)
            guard let index = self.lines[from...].firstIndex(where: { line in
                line.contains("\"\(part)\"") || line.contains("'\(part)'")
                    || line.trimmingCharacters(in: .whitespaces).hasPrefix("\(part):")
            }) else { return found.map { $0 + 1 } }
            found = index
            from = index
        }
        return found.map { $0 + 1 }
    }
}
