import Foundation

/// Everything the processes say to each other over their pipes. Cases are named after the sender.
///
/// Wire format: a 4-byte big-endian length of what follows, the version byte, a tag byte, then the
/// fields (integers as 8-byte big-endian, strings as a 4-byte length and UTF-8 bytes). Decoding
/// rejects unknown tags, a wrong version and trailing bytes; a trusted peer that sends such garbage
/// has a bug, and the reader treats it as fatal for that channel.
public enum PipeMessage: Equatable, Sendable {
    /// Bump on any change to the cases or their fields.
    public static let version: UInt8 = 2

    // MARK: worker → supervisor
    /// The worker is set up and serving.
    case workerReady(role: String, pid: Int32, generation: Int)
    /// Answer to `supervisorPing`: the worker's loop is alive.
    case workerHeartbeat(pid: Int32)
    /// A counter moved: `name` with labels as `k=v` pairs joined by `,`.
    case workerCounter(name: String, labels: String, delta: Int)
    /// A duration or size to add to a histogram.
    case workerObservation(name: String, labels: String, value: Double)
    /// A gauge took a value (circuit state, in-flight deliveries, sessions).
    case workerGauge(name: String, labels: String, value: Double)
    /// The monitor asks the supervisor to relay an admin action to the forwarders ("pause", "resume").
    case monitorAdmin(action: String)
    /// A draining receiver or monitor no longer accepts on its listening socket: the next
    /// generation's may start (two processes accepting on one socket race for each connection).
    case workerStoppedAccepting(pid: Int32)

    // MARK: supervisor → worker
    /// Heartbeat request; the worker answers `workerHeartbeat`.
    case supervisorPing
    /// Stop taking new work, finish what is in flight, exit.
    case supervisorDrain
    /// A receiver or monitor started in standby (`WorkerEnvironment.standby`) starts accepting.
    case supervisorServe
    /// Pause or resume deliveries (forwarder).
    case supervisorPause
    case supervisorResume
    /// The aggregated metrics and worker table, as JSON (`MonitorSnapshot`), for the monitor.
    case supervisorSnapshot(json: String)

    private enum Tag: UInt8 {
        case workerReady = 1, workerHeartbeat, workerCounter, workerObservation, workerGauge, monitorAdmin
        case workerStoppedAccepting
        case supervisorPing = 20, supervisorDrain, supervisorPause, supervisorResume, supervisorSnapshot
        case supervisorServe
    }

    public func encoded() -> [UInt8] {
        var body: [UInt8] = [Self.version]
        func int(_ v: Int) { withUnsafeBytes(of: Int64(v).bigEndian) { body.append(contentsOf: $0) } }
        func string(_ s: String) {
            let bytes = Array(s.utf8)
            withUnsafeBytes(of: UInt32(bytes.count).bigEndian) { body.append(contentsOf: $0) }
            body.append(contentsOf: bytes)
        }
        func double(_ d: Double) { int(Int(Int64(bitPattern: d.bitPattern))) }
        switch self {
        case .workerReady(let role, let pid, let generation):
            body.append(Tag.workerReady.rawValue); string(role); int(Int(pid)); int(generation)
        case .workerHeartbeat(let pid):
            body.append(Tag.workerHeartbeat.rawValue); int(Int(pid))
        case .workerCounter(let name, let labels, let delta):
            body.append(Tag.workerCounter.rawValue); string(name); string(labels); int(delta)
        case .workerObservation(let name, let labels, let value):
            body.append(Tag.workerObservation.rawValue); string(name); string(labels); double(value)
        case .workerGauge(let name, let labels, let value):
            body.append(Tag.workerGauge.rawValue); string(name); string(labels); double(value)
        case .monitorAdmin(let action):
            body.append(Tag.monitorAdmin.rawValue); string(action)
        case .workerStoppedAccepting(let pid):
            body.append(Tag.workerStoppedAccepting.rawValue); int(Int(pid))
        case .supervisorServe: body.append(Tag.supervisorServe.rawValue)
        case .supervisorPing: body.append(Tag.supervisorPing.rawValue)
        case .supervisorDrain: body.append(Tag.supervisorDrain.rawValue)
        case .supervisorPause: body.append(Tag.supervisorPause.rawValue)
        case .supervisorResume: body.append(Tag.supervisorResume.rawValue)
        case .supervisorSnapshot(let json):
            body.append(Tag.supervisorSnapshot.rawValue); string(json)
        }
        var frame: [UInt8] = []
        withUnsafeBytes(of: UInt32(body.count).bigEndian) { frame.append(contentsOf: $0) }
        return frame + body
    }

    public struct DecodingError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Decodes one frame's body (after the length).
    public static func decode(body: ArraySlice<UInt8>) throws -> PipeMessage {
        var cursor = body.startIndex
        func byte() throws -> UInt8 {
            guard cursor < body.endIndex else { throw DecodingError(description: "truncated message") }
            defer { cursor += 1 }
            return body[cursor]
        }
        func int() throws -> Int {
            guard body.endIndex - cursor >= 8 else { throw DecodingError(description: "truncated integer") }
            var v: UInt64 = 0
            for _ in 0..<8 { v = (v << 8) | UInt64(body[cursor]); cursor += 1 }
            return Int(Int64(bitPattern: v))
        }
        func string() throws -> String {
            guard body.endIndex - cursor >= 4 else { throw DecodingError(description: "truncated string") }
            var n = 0
            for _ in 0..<4 { n = (n << 8) | Int(body[cursor]); cursor += 1 }
            guard body.endIndex - cursor >= n else { throw DecodingError(description: "truncated string") }
            defer { cursor += n }
            return String(decoding: body[cursor..<cursor + n], as: UTF8.self)
        }
        func double() throws -> Double { Double(bitPattern: UInt64(bitPattern: Int64(try int()))) }

        let version = try byte()
        guard version == Self.version else { throw DecodingError(description: "pipe message version \(version)") }
        guard let tag = Tag(rawValue: try byte()) else { throw DecodingError(description: "unknown pipe message tag") }
        let message: PipeMessage
        switch tag {
        case .workerReady: message = .workerReady(role: try string(), pid: Int32(truncatingIfNeeded: try int()), generation: try int())
        case .workerHeartbeat: message = .workerHeartbeat(pid: Int32(truncatingIfNeeded: try int()))
        case .workerCounter: message = .workerCounter(name: try string(), labels: try string(), delta: try int())
        case .workerObservation: message = .workerObservation(name: try string(), labels: try string(), value: try double())
        case .workerGauge: message = .workerGauge(name: try string(), labels: try string(), value: try double())
        case .monitorAdmin: message = .monitorAdmin(action: try string())
        case .workerStoppedAccepting: message = .workerStoppedAccepting(pid: Int32(truncatingIfNeeded: try int()))
        case .supervisorServe: message = .supervisorServe
        case .supervisorPing: message = .supervisorPing
        case .supervisorDrain: message = .supervisorDrain
        case .supervisorPause: message = .supervisorPause
        case .supervisorResume: message = .supervisorResume
        case .supervisorSnapshot: message = .supervisorSnapshot(json: try string())
        }
        guard cursor == body.endIndex else { throw DecodingError(description: "trailing bytes in pipe message") }
        return message
    }
}

/// Splits a byte stream from a pipe into `PipeMessage`s.
public struct PipeMessageDecoder {
    private var buffer: [UInt8] = []
    /// Largest frame a worker reads (a snapshot for the monitor is the biggest message).
    public static let maximumFrame = 16 * 1024 * 1024
    /// Largest frame the supervisor reads from a worker: workers only send small records, and a
    /// compromised one must not make the root process buffer megabytes.
    public static let maximumWorkerFrame = 64 * 1024
    private let maximumFrame: Int

    public init(maximumFrame: Int = PipeMessageDecoder.maximumFrame) { self.maximumFrame = maximumFrame }

    public mutating func append(_ bytes: some Sequence<UInt8>) { self.buffer.append(contentsOf: bytes) }

    /// The next complete message, nil when more bytes are needed.
    public mutating func next() throws -> PipeMessage? {
        guard self.buffer.count >= 4 else { return nil }
        let length = self.buffer[0..<4].reduce(0) { ($0 << 8) | Int($1) }
        guard length <= self.maximumFrame else { throw PipeMessage.DecodingError(description: "pipe frame too large") }
        guard self.buffer.count >= 4 + length else { return nil }
        let message = try PipeMessage.decode(body: self.buffer[4..<4 + length])
        self.buffer.removeFirst(4 + length)
        return message
    }
}
