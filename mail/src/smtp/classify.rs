//! What an SMTP server's negative reply means for the address and the message.
//!
//! | reply                                                           | meaning                    |
//! |-----------------------------------------------------------------|----------------------------|
//! | 4xx (421, 450, 451, 452, 454, …), whatever the text             | [`Refusal::Transient`]     |
//! | 5xx with enhanced code 5.1.1, 5.1.2, 5.1.3, 5.1.4, 5.1.6, 5.1.10, 5.2.1 | [`Refusal::Recipient`] |
//! | 5xx with any other enhanced code (5.1.0, 5.1.7, 5.1.8, 5.2.2, 5.7.x, …) | [`Refusal::Permanent`] |
//! | 550, 551, 553 without an enhanced code, not about relaying      | [`Refusal::Recipient`]     |
//! | any other 5xx without an enhanced code (552, 554, 5xx on relaying, 500–504, 530, 535, …) | [`Refusal::Permanent`] |
//!
//! The enhanced status code (RFC 3463), where the server gives one, is more precise than the
//! three digits and decides. Only codes that say *this recipient's mailbox* does not exist or
//! takes no mail suppress the address: 5.1.7 and 5.1.8 are about our sender, 5.1.0 says nothing
//! about which address, 5.2.2 (mailbox full) may clear, and 5.7.x is policy — spam filters,
//! blocklisted IPs, failed DMARC, "Recipient address rejected: Access denied". Policy refusals
//! come back for every recipient at once when our own reputation or authentication is at fault,
//! so suppressing on them would silently drop good addresses in bulk; the message still fails
//! for good ([`Refusal::Permanent`]). The same holds for a relay that refuses to relay for us
//! ("550 relaying denied"): our configuration, not the address.
//!
//! lettre does not say which command (`MAIL`, `RCPT`, `DATA`) a reply answered. Messages have one
//! recipient, so a recipient code on `DATA` is that recipient's too; a sender refusal on `MAIL`
//! carries 5.1.7/5.1.8 at servers that give enhanced codes.

/// What a negative reply means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Try again later; the address stays.
    Transient,
    /// This message will not go, but the address is not known to be bad.
    Permanent,
    /// The recipient's address does not exist or takes no mail: a hard bounce.
    Recipient,
}

/// Classifies a reply by its code and text (see the module's table).
pub fn classify(code: u16, reply: &str) -> Refusal {
    if !(500..600).contains(&code) {
        return Refusal::Transient;
    }
    if let Some((class, subject, detail)) = enhanced_code(reply) {
        return match (class, subject, detail) {
            (5, 1, 1 | 2 | 3 | 4 | 6 | 10) | (5, 2, 1) => Refusal::Recipient,
            _ => Refusal::Permanent,
        };
    }
    let about_relaying = reply.to_ascii_lowercase().contains("relay");
    match code {
        550 | 551 | 553 if !about_relaying => Refusal::Recipient,
        _ => Refusal::Permanent,
    }
}

/// The first enhanced status code (`class.subject.detail`) in the reply: at the start as RFC
/// 2034 puts it, or anywhere (qmail writes `(#5.7.1)` at the end).
fn enhanced_code(reply: &str) -> Option<(u8, u16, u16)> {
    reply.split_ascii_whitespace().find_map(|word| {
        let word = word.trim_matches(|c: char| matches!(c, '(' | ')' | '#' | '[' | ']' | ',' | ';' | ':'));
        let mut parts = word.split('.');
        let class = parts.next()?;
        let subject = parts.next()?;
        let detail = parts.next()?;
        let number_ok =
            |part: &str, max: usize| (1..=max).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
        if parts.next().is_some()
            || !matches!(class, "2" | "4" | "5")
            || !number_ok(subject, 3)
            || !number_ok(detail, 3)
        {
            return None;
        }
        Some((class.parse().ok()?, subject.parse().ok()?, detail.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::Refusal::{Permanent, Recipient, Transient};
    use super::*;

    #[test]
    fn transient_replies_are_retried_whatever_their_text() {
        for (code, reply) in [
            (421, "4.7.0 Try again later, closing connection"),
            (450, "4.2.1 The user you are trying to contact is receiving mail too quickly"),
            (451, "4.3.0 Local error in processing"),
            (452, "4.5.3 Too many recipients"),
            (454, "4.7.0 TLS not available due to local problem"),
            (450, "Requested mail action not taken: mailbox unavailable"),
            (451, "5.1.1 a server that mixes up its codes"),
        ] {
            assert_eq!(classify(code, reply), Transient, "{code} {reply}");
        }
    }

    #[test]
    fn an_unknown_or_disabled_mailbox_is_a_hard_bounce() {
        for (code, reply) in [
            (550, "5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in local recipient table"),
            (550, "5.1.1 The email account that you tried to reach does not exist."),
            (550, "5.1.2 Host unknown (Name server: example.invalid: host not found)"),
            (553, "5.1.3 Bad recipient address syntax"),
            (550, "5.1.6 Recipient mailbox has moved"),
            (556, "5.1.10 Recipient address has null MX"),
            (550, "5.2.1 The email account that you tried to reach is disabled."),
            (554, "5.2.1 Mailbox disabled, not accepting messages"),
            (550, "Requested action not taken: mailbox unavailable"),
            (551, "User not local; please try <forward@example.org>"),
            (553, "Requested action not taken: mailbox name not allowed"),
        ] {
            assert_eq!(classify(code, reply), Recipient, "{code} {reply}");
        }
    }

    #[test]
    fn policy_sender_and_message_refusals_fail_the_message_without_suppressing_the_address() {
        for (code, reply) in [
            (554, "5.7.1 <someone@example.com>: Recipient address rejected: Access denied"),
            (550, "5.7.1 Message rejected as spam by Content Filtering"),
            (550, "5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC policy"),
            (553, "5.1.8 <noreply@example.com>: Sender address rejected: Domain not found"),
            (553, "5.1.7 The sender address is not a valid RFC 5321 address"),
            (550, "5.1.0 Sender denied"),
            (552, "5.2.2 The email account that you tried to reach is over quota"),
            (552, "5.3.4 Message size exceeds fixed maximum message size"),
            (554, "Transaction failed"),
            (552, "Requested mail action aborted: exceeded storage allocation"),
            (535, "5.7.8 Authentication credentials invalid"),
            (530, "5.7.0 Authentication required"),
            (500, "Syntax error, command unrecognised"),
            (550, "Relaying denied"),
            (553, "sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"),
        ] {
            assert_eq!(classify(code, reply), Permanent, "{code} {reply}");
        }
    }

    #[test]
    fn the_enhanced_code_is_found_where_servers_put_it() {
        assert_eq!(enhanced_code("5.1.1 User unknown"), Some((5, 1, 1)));
        assert_eq!(enhanced_code("sorry, no mailbox here by that name. (#5.1.1)"), Some((5, 1, 1)));
        assert_eq!(enhanced_code("[5.1.10] null MX"), Some((5, 1, 10)));
        assert_eq!(enhanced_code("version 1.2.3 of something"), None);
        assert_eq!(enhanced_code("5.1 User unknown"), None);
        assert_eq!(enhanced_code("5.1.1.1 odd"), None);
        assert_eq!(enhanced_code(""), None);
    }
}
