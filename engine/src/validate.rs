//! Input rules for account fields; each failure names the field and says what to fix.

use crate::Error;

pub const PASSWORD_MIN: usize = 10;
pub const PASSWORD_MAX: usize = 128;
pub const DISPLAY_NAME_MAX: usize = 100;

/// Validates an email address and returns its normal form (trimmed, lower case): the rules are
/// `borcelle_crds::text`'s, which resources applied with kubectl are held to as well.
pub fn email(field: &str, raw: &str) -> Result<String, Error> {
    borcelle_crds::text::email_address(raw).map_err(|problem| Error::invalid(field, problem.to_string()))
}

/// Validates one line of text (a subject, a name: what may reach a mail header) and returns it
/// trimmed: required, at most `max` characters, no control character (a CR or LF would start a
/// new header).
pub fn one_line(field: &str, raw: &str, max: usize) -> Result<String, Error> {
    let value = raw.trim();
    if value.is_empty() && borcelle_crds::text::is_one_line(raw) {
        return Err(Error::invalid(field, format!("{field} is required")));
    }
    // As sent: counted with its spaces, and no control character even among them (a tab or a line
    // break at an end is still not one line); what the API document says.
    if raw.chars().count() > max || !borcelle_crds::text::is_one_line(raw) {
        return Err(Error::invalid(field, format!("{field} must be one line of at most {max} characters")));
    }
    Ok(value.to_owned())
}

/// Checks a new password's length (characters, not bytes).
pub fn password(field: &str, password: &str) -> Result<(), Error> {
    let chars = password.chars().count();
    if chars < PASSWORD_MIN {
        return Err(Error::invalid(field, format!("password must be at least {PASSWORD_MIN} characters")));
    }
    if chars > PASSWORD_MAX {
        return Err(Error::invalid(field, format!("password must be at most {PASSWORD_MAX} characters")));
    }
    Ok(())
}

/// Validates a display name and returns it trimmed.
pub fn display_name(field: &str, raw: &str) -> Result<String, Error> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(Error::invalid(field, "display name is required"));
    }
    if raw.chars().count() > DISPLAY_NAME_MAX {
        return Err(Error::invalid(field, format!("display name must be at most {DISPLAY_NAME_MAX} characters")));
    }
    if raw.chars().any(char::is_control) {
        return Err(Error::invalid(field, "display name must not contain control characters"));
    }
    Ok(name.to_owned())
}

/// Validates a short free-text label (token names and the like) and returns it trimmed.
pub fn label(field: &str, raw: &str, max: usize) -> Result<String, Error> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(Error::invalid(field, format!("{field} is required")));
    }
    if raw.chars().count() > max || raw.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("{field} must be at most {max} characters, without control characters"),
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(email("email", "  Ada.Lovelace@Example.COM ").ok().as_deref(), Some("ada.lovelace@example.com"));
    }

    #[test]
    fn malformed_emails_are_refused_with_the_field_named() {
        for bad in
            ["", "plain", "a@b", "@example.com", "a..b@example.com", "a@-x.com", "a@example.123", "é@example.com"]
        {
            match email("email", bad) {
                Err(Error::Invalid { field, .. }) => assert_eq!(field, "email", "{bad}"),
                other => panic!("{bad:?} should be refused, got {other:?}"),
            }
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(email("email", &long).is_err());
    }

    #[test]
    fn passwords_are_counted_in_characters() {
        assert!(password("password", "ééééééééé").is_err());
        assert!(password("password", "éééééééééé").is_ok());
        assert!(password("password", &"x".repeat(129)).is_err());
        assert!(password("password", &"x".repeat(128)).is_ok());
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(display_name("display_name", "  Ada ").ok().as_deref(), Some("Ada"));
        assert!(display_name("display_name", "   ").is_err());
        assert!(display_name("display_name", &"a".repeat(101)).is_err());
        assert!(display_name("display_name", "a\u{0}b").is_err());
    }
}
