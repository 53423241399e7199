//! Text rules shared by every way data comes in (the JSON API, the pages, CSV imports, resources
//! applied with kubectl): what an email address is, and what may go into a mail header. They sit
//! here, under both the engine and the operator, so that each path refuses the same values.

use std::fmt;

const EMAIL_MAX: usize = 254;
const LOCAL_PART_MAX: usize = 64;
const LABEL_MAX: usize = 63;

/// Whether `value` is one line: no control character at all. A CR or LF in a subject or a name
/// would start a new mail header (`Bcc:` …).
pub fn is_one_line(value: &str) -> bool {
    !value.chars().any(char::is_control)
}

/// Why a text is not an email address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailProblem {
    Empty,
    TooLong,
    NotAscii,
    NoAt,
    LocalPart,
    Domain,
}

impl fmt::Display for EmailProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EmailProblem::Empty => "email is required",
            EmailProblem::TooLong => "email must be at most 254 characters",
            EmailProblem::NotAscii => {
                "enter a valid email address: use only ASCII characters (internationalised domains in their xn-- form)"
            }
            EmailProblem::NoAt => "enter a valid email address: it needs an @",
            EmailProblem::LocalPart => "enter a valid email address: the part before the @ is not valid",
            EmailProblem::Domain => "enter a valid email address: the domain after the @ is not valid",
        })
    }
}

/// The normal form of an email address (trimmed, lower case), or why `raw` is not one.
///
/// Addresses are ASCII (internationalised domains are entered in their `xn--` form); the local part
/// is a dot-atom, the domain at least two DNS labels with a non-numeric top level.
pub fn email_address(raw: &str) -> Result<String, EmailProblem> {
    let email = raw.trim().to_ascii_lowercase();
    if email.is_empty() {
        return Err(EmailProblem::Empty);
    }
    if email.chars().count() > EMAIL_MAX {
        return Err(EmailProblem::TooLong);
    }
    if !email.is_ascii() {
        return Err(EmailProblem::NotAscii);
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(EmailProblem::NoAt);
    };
    let local_ok = !local.is_empty()
        && local.len() <= LOCAL_PART_MAX
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    if !local_ok {
        return Err(EmailProblem::LocalPart);
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= LABEL_MAX
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels.last().is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()));
    if !domain_ok {
        return Err(EmailProblem::Domain);
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_injections_and_partial_addresses_are_not_addresses() {
        for bad in
            ["a@b", "@example.com", "a@example.com\r\nBcc: victim@example.org", "a b@example.com", "a@ex ample.com"]
        {
            assert!(email_address(bad).is_err(), "{bad:?}");
        }
        assert_eq!(email_address(" Ada@Example.COM ").as_deref(), Ok("ada@example.com"));
        assert!(!is_one_line("Hello\r\nBcc: victim@example.org"));
        assert!(!is_one_line("tab\there"));
        assert!(is_one_line("Réunion — ☕"));
    }
}
