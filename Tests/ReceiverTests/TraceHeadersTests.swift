import Foundation
import NIOCore
import Testing

@testable import Receiver

/// The headers the receiver puts in front of a message.
@Suite struct TraceHeadersTests {
    static let date = Date(timeIntervalSince1970: 1_700_000_000)  // Tue, 14 Nov 2023 22:13:20 +0000

    static func headers(recipients: [String] = ["bob@example.com"]) -> TraceHeaders {
        TraceHeaders(queueID: "018BD2F5C3A0000123ABCD", hostname: "mx.test.example", heloName: "client.example",
                     clientIP: "192.0.2.7", protocolName: "ESMTPSA", recipients: recipients, date: Self.date)
    }

    static func render(_ body: String, recipients: [String] = ["bob@example.com"]) -> String {
        String(buffer: Self.headers(recipients: recipients).render(for: HeaderSummary(ByteBuffer(string: body))))
    }

    @Test func receivedCarriesTheQueueID() {
        let text = Self.render("Message-ID: <x@y>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n")
        #expect(text == "Received: from client.example ([192.0.2.7])\r\n"
            + "\tby mx.test.example (mailer) with ESMTPSA id 018BD2F5C3A0000123ABCD\r\n"
            + "\tfor <bob@example.com>; Tue, 14 Nov 2023 22:13:20 +0000\r\n")
    }

    @Test func severalRecipientsAreNotListed() {
        let text = Self.render("Message-ID: <x@y>\r\nDate: x\r\n\r\n", recipients: ["a@example.com", "b@example.com"])
        #expect(!text.contains("for <"))
        #expect(text.hasSuffix("id 018BD2F5C3A0000123ABCD; Tue, 14 Nov 2023 22:13:20 +0000\r\n"))
    }

    @Test func messageIDAndDateAreAddedWhenMissing() {
        let text = Self.render("Subject: hi\r\n\r\nbody\r\n")
        #expect(text.hasSuffix("\r\nMessage-ID: <018BD2F5C3A0000123ABCD@mx.test.example>\r\n"
            + "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"))
        #expect(text.hasPrefix("Received: "))
    }

    @Test func onlyTheMissingOneIsAdded() {
        let noDate = Self.render("message-id: <x@y>\r\n\r\n")
        #expect(!noDate.contains("Message-ID:"))
        #expect(noDate.contains("\r\nDate: "))
        let noID = Self.render("DATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n")
        #expect(noID.contains("\r\nMessage-ID: "))
        #expect(!noID.contains("\r\nDate: "))
    }

    @Test func theHeaderScanStopsAtTheEmptyLine() {
        let text = Self.render("Subject: hi\r\n\r\nMessage-ID: <in-the-body@x>\r\nDate: in the body\r\n")
        #expect(text.contains("\r\nMessage-ID: <018BD2F5C3A0000123ABCD@mx.test.example>\r\n"))
        #expect(text.contains("\r\nDate: Tue, 14 Nov 2023"))
    }

    @Test func continuationLinesAreNotHeaders() {
        let text = Self.render("Subject: hi\r\n Message-ID: <folded@x>\r\n\tDate: folded\r\n\r\n")
        #expect(text.contains("\r\nMessage-ID: "))
        #expect(text.contains("\r\nDate: "))
    }

    @Test func aMessageWithoutHeadersGetsBoth() {
        let text = Self.render("\r\njust a body\r\n")
        #expect(text.contains("\r\nMessage-ID: ") && text.contains("\r\nDate: "))
        let empty = Self.render("")
        #expect(empty.contains("\r\nMessage-ID: ") && empty.contains("\r\nDate: "))
    }

    @Test func headerSummary() {
        let summary = HeaderSummary(ByteBuffer(string: "From: a\r\nSubject:   Hello there  \r\nSubject: second\r\n\r\n"))
        #expect(summary.subject == "Hello there")
        #expect(!summary.hasMessageID && !summary.hasDate)
        let long = HeaderSummary(ByteBuffer(string: "Subject: " + String(repeating: "s", count: 500) + "\r\n\r\n"))
        #expect(long.subject?.count == 200)
        let bodySubject = HeaderSummary(ByteBuffer(string: "From: a\r\n\r\nSubject: not a header\r\n"))
        #expect(bodySubject.subject == nil)
    }

    @Test func rfc5322Dates() {
        #expect(TraceHeaders.rfc5322Date(Date(timeIntervalSince1970: 0)) == "Thu, 1 Jan 1970 00:00:00 +0000")
        #expect(TraceHeaders.rfc5322Date(Self.date) == "Tue, 14 Nov 2023 22:13:20 +0000")
        #expect(TraceHeaders.rfc5322Date(Date(timeIntervalSince1970: 951_782_400)) == "Tue, 29 Feb 2000 00:00:00 +0000")
    }
}
