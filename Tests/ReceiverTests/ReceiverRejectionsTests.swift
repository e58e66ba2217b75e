import Testing

@testable import Receiver
import SMTPCore

/// Which replies count as a refusal in `mailer_rejected_total`, and under which reason.
@Suite struct ReceiverRejectionsTests {
    @Test func refusalsHaveAReasonAndOtherRepliesNone() {
        #expect(ReceiverRejections.reason(for: .messageTooBig) == "message_too_big")
        #expect(ReceiverRejections.reason(for: .dataLineTooLong) == "line_too_long")
        #expect(ReceiverRejections.reason(for: .bareLineEnding) == "bare_line_ending")
        #expect(ReceiverRejections.reason(for: .authRequired) == "auth_required")
        #expect(ReceiverRejections.reason(for: .tooManyRecipients) == "too_many_recipients")
        #expect(ReceiverRejections.reason(for: .tooManyErrors) == "too_many_errors")
        for reply in [SMTPReply.ok, .mailOk, .rcptOk, .startData, .bye, .authFailed, .idleTimeout, .localError,
                      .insufficientStorage, .shuttingDown] {
            #expect(ReceiverRejections.reason(for: reply) == nil, "\(reply)")
        }
    }
}
