import Testing

@testable import SMTPCore

/// Reply formatting (RFC 5321 §4.2, RFC 2034 enhanced codes on every line).
@Suite struct SMTPReplyTests {
    @Test func singleLineWire() {
        #expect(SMTPReply(250, "2.0.0", "Ok").wire == "250 2.0.0 Ok\r\n")
        #expect(SMTPReply(354, nil, "End data with <CR><LF>.<CR><LF>").wire
            == "354 End data with <CR><LF>.<CR><LF>\r\n")
    }

    @Test func multiLineWireUsesDashesAndRepeatsTheEnhancedCode() {
        #expect(SMTPReply(250, nil, ["mx.example", "PIPELINING", "SIZE 100"]).wire
            == "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n")
        #expect(SMTPReply(550, "5.7.1", ["first", "second"]).wire == "550-5.7.1 first\r\n550 5.7.1 second\r\n")
    }

    @Test func emptyText() {
        #expect(SMTPReply(334, nil, "").wire == "334 \r\n")
        #expect(SMTPReply(250, "2.0.0", "").wire == "250 2.0.0\r\n")
        #expect(SMTPReply(250, nil, [String]()).lines == [""])
    }

    @Test func descriptionIsOneLine() {
        #expect(SMTPReply(550, "5.1.1", "No such user").description == "550 5.1.1 No such user")
        #expect(SMTPReply(250, nil, ["a", "b"]).description == "250 a / b")
        #expect(SMTPReply(334, nil, "").description == "334")
    }

    @Test func classes() {
        #expect(SMTPReply.ok.isPositive && !SMTPReply.ok.isTransient && !SMTPReply.ok.isPermanent)
        #expect(SMTPReply.startData.isPositive)
        #expect(SMTPReply.tooManyRecipients.isTransient && !SMTPReply.tooManyRecipients.isPositive)
        #expect(SMTPReply.messageTooBig.isPermanent && !SMTPReply.messageTooBig.isTransient)
    }

    @Test func codesOfTheNamedReplies() {
        let expected: [(SMTPReply, Int, String?)] = [
            (.ok, 250, "2.0.0"), (.mailOk, 250, "2.1.0"), (.rcptOk, 250, "2.1.5"), (.startData, 354, nil),
            (.bye, 221, "2.0.0"), (.vrfy, 252, "2.5.2"), (.unrecognized, 500, "5.5.1"), (.lineTooLong, 500, "5.5.2"),
            (.badSequenceHelo, 503, "5.5.1"), (.nestedMail, 503, "5.5.1"), (.needMail, 503, "5.5.1"),
            (.noRecipients, 554, "5.5.1"), (.authRequired, 530, "5.7.0"), (.authSucceeded, 235, "2.7.0"),
            (.authFailed, 535, "5.7.8"), (.authCancelled, 501, "5.0.0"), (.authBadEncoding, 501, "5.5.2"),
            (.authEncryptionRequired, 538, "5.7.11"), (.tooManyErrors, 421, "4.7.0"), (.idleTimeout, 421, "4.4.2"),
            (.bareLineEnding, 550, "5.6.0"), (.dataLineTooLong, 552, "5.3.4"), (.messageTooBig, 552, "5.3.4"),
            (.tooManyRecipients, 452, "4.5.3"), (.insufficientStorage, 452, "4.3.1"), (.localError, 451, "4.3.0"),
            (.shuttingDown, 421, "4.3.2"),
        ]
        for (reply, code, enhanced) in expected {
            #expect(reply.code == code, "\(reply)")
            #expect(reply.enhanced == enhanced, "\(reply)")
            // An enhanced code's class matches the reply's (RFC 3463 §2).
            if let enhanced = enhanced { #expect(enhanced.first == String(code).first, "\(reply)") }
        }
    }
}
