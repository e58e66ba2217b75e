import SMTPCore

/// The `reason` label of `mailer_rejected_total` for a reply the session state machine sends, when
/// that reply refuses mail (a message, a recipient, or the session); nil for every other reply.
/// Refusals decided outside the state machine are counted where they happen: not_local and
/// too_many_sessions (session handler), rate_limit (policy), disk_full and io_error (committer).
enum ReceiverRejections {
    static func reason(for reply: SMTPReply) -> String? {
        switch reply {
        case .messageTooBig: return "message_too_big"
        case .dataLineTooLong: return "line_too_long"
        case .bareLineEnding: return "bare_line_ending"
        case .authRequired: return "auth_required"
        case .tooManyRecipients: return "too_many_recipients"
        case .tooManyErrors: return "too_many_errors"
        default: return nil
        }
    }
}
