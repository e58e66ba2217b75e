import Testing

@testable import IPC

/// The pipe vocabulary: length-prefixed, versioned, strict about what it accepts.
@Suite struct PipeMessageTests {
    static let all: [PipeMessage] = [
        .workerReady(role: "receiver", pid: 4242, generation: 7),
        .workerReady(role: "", pid: Int32.max, generation: -1),
        .workerHeartbeat(pid: 1),
        .workerCounter(name: "mailer_received_total", labels: "result=ok,reason=", delta: 3),
        .workerCounter(name: "c", labels: "", delta: Int.min),
        .workerObservation(name: "mailer_delivery_seconds", labels: "route=mx", value: 0.125),
        .workerObservation(name: "o", labels: "ünïcode=✓", value: -.infinity),
        .workerGauge(name: "mailer_sessions", labels: "", value: 12),
        .monitorAdmin(action: "pause"),
        .workerStoppedAccepting(pid: 4_194_303),
        .supervisorPing,
        .supervisorDrain,
        .supervisorServe,
        .supervisorPause,
        .supervisorResume,
        .supervisorSnapshot(json: #"{"workers": [{"pid": 1}], "text": "line\nbreak"}"#),
        .supervisorSnapshot(json: String(repeating: "x", count: 100_000)),
    ]

    @Test(arguments: PipeMessageTests.all)
    func roundTrip(_ message: PipeMessage) throws {
        var decoder = PipeMessageDecoder()
        decoder.append(message.encoded())
        #expect(try decoder.next() == message)
        #expect(try decoder.next() == nil)
    }

    @Test func frameLayout() {
        let bytes = PipeMessage.supervisorPing.encoded()
        #expect(bytes == [0, 0, 0, 2, PipeMessage.version, 20])
    }

    @Test func framesSplitAcrossAppendsAreReassembled() throws {
        let stream = Self.all.flatMap { $0.encoded() }
        for chunk in [1, 3, 7, 4096] {
            var decoder = PipeMessageDecoder()
            var decoded: [PipeMessage] = []
            var index = 0
            while index < stream.count {
                let end = min(stream.count, index + chunk)
                decoder.append(stream[index..<end])
                while let message = try decoder.next() { decoded.append(message) }
                index = end
            }
            #expect(decoded == Self.all, "chunks of \(chunk)")
        }
    }

    @Test func trailingBytesAreRejected() {
        var body = Array(PipeMessage.workerHeartbeat(pid: 5).encoded().dropFirst(4))
        body.append(0)
        #expect(throws: PipeMessage.DecodingError.self) { _ = try PipeMessage.decode(body: body[...]) }
        // The same through the stream decoder, with the length covering the extra byte.
        var decoder = PipeMessageDecoder()
        decoder.append(Self.frame(body))
        #expect(throws: PipeMessage.DecodingError.self) { _ = try decoder.next() }
    }

    @Test func wrongVersionIsRejected() {
        var body = Array(PipeMessage.supervisorDrain.encoded().dropFirst(4))
        body[0] = PipeMessage.version &+ 1
        #expect(throws: PipeMessage.DecodingError.self) { _ = try PipeMessage.decode(body: body[...]) }
    }

    @Test func unknownTagIsRejected() {
        for tag: UInt8 in [0, 7, 19, 26, 255] {
            let body: [UInt8] = [PipeMessage.version, tag]
            #expect(throws: PipeMessage.DecodingError.self) { _ = try PipeMessage.decode(body: body[...]) }
        }
    }

    @Test func truncatedMessagesAreRejected() {
        let body = Array(PipeMessage.workerCounter(name: "abc", labels: "x=y", delta: 9).encoded().dropFirst(4))
        for length in 0..<body.count {
            #expect(throws: PipeMessage.DecodingError.self) { _ = try PipeMessage.decode(body: body[0..<length]) }
        }
    }

    @Test func stringLengthPastTheEndIsRejected() {
        let body: [UInt8] = [PipeMessage.version, 6, 0xFF, 0xFF, 0xFF, 0xFF, 0x41]
        #expect(throws: PipeMessage.DecodingError.self) { _ = try PipeMessage.decode(body: body[...]) }
    }

    @Test func oversizedFrameIsRejectedBeforeItArrives() {
        var decoder = PipeMessageDecoder()
        decoder.append([0x7F, 0xFF, 0xFF, 0xFF, 1])
        #expect(throws: PipeMessage.DecodingError.self) { _ = try decoder.next() }
    }

    @Test func incompleteFrameWaits() throws {
        var decoder = PipeMessageDecoder()
        let bytes = PipeMessage.monitorAdmin(action: "resume").encoded()
        decoder.append(bytes.dropLast())
        #expect(try decoder.next() == nil)
        decoder.append(bytes.suffix(1))
        #expect(try decoder.next() == .monitorAdmin(action: "resume"))
    }

    static func frame(_ body: [UInt8]) -> [UInt8] {
        let n = UInt32(body.count)
        return [UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)] + body
    }
}
