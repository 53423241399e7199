//! Every email has a text and an HTML part rendered from templates (minijinja, compiled into the
//! binary); the HTML part escapes what users typed, the text part keeps it as typed.

use std::sync::LazyLock;

use minijinja::{AutoEscape, Environment, context};

/// Subject and both bodies of an email.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A template failed to render (a bug in a template; the data is always escaped or plain text).
#[derive(Debug, thiserror::Error)]
#[error("rendering the email template {template}: {source}")]
pub struct TemplateError {
    template: &'static str,
    #[source]
    source: minijinja::Error,
}

/// The templates, each under its path below `templates/`.
const TEMPLATES: [(&str, &str); 9] = [
    ("emails/layout.html", include_str!("../templates/emails/layout.html")),
    ("emails/verify_email.txt", include_str!("../templates/emails/verify_email.txt")),
    ("emails/verify_email.html", include_str!("../templates/emails/verify_email.html")),
    ("emails/reset_password.txt", include_str!("../templates/emails/reset_password.txt")),
    ("emails/reset_password.html", include_str!("../templates/emails/reset_password.html")),
    ("emails/already_registered.txt", include_str!("../templates/emails/already_registered.txt")),
    ("emails/already_registered.html", include_str!("../templates/emails/already_registered.html")),
    ("emails/message.txt", include_str!("../templates/emails/message.txt")),
    ("emails/message.html", include_str!("../templates/emails/message.html")),
];

/// The environment every email renders in: HTML escaping for `.html`, none for `.txt`, undefined
/// values an error (a misspelt variable fails the template's test instead of rendering empty).
/// Like askama before it, a template's one trailing newline is not part of its output.
static ENVIRONMENT: LazyLock<Result<Environment<'static>, minijinja::Error>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| if name.ends_with(".html") { AutoEscape::Html } else { AutoEscape::None });
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_formatter(|out, state, value| {
        if matches!(state.auto_escape(), AutoEscape::Html) && !value.is_safe() && !value.is_none() {
            out.write_str(&escape_html(&value.to_string()))?;
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    Ok(env)
});

/// The five characters that mean something in HTML text and attribute values, as entities (a `/`
/// stays as it is, so links in the HTML part read as links).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    // The text between special characters goes in whole (they are ASCII, so every cut falls on a
    // character boundary).
    let mut rest = text;
    while let Some(at) = rest.bytes().position(|b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'')) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#39;",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out
}

fn render(template: &'static str, data: minijinja::Value) -> Result<String, TemplateError> {
    let env = ENVIRONMENT.as_ref().map_err(|err| TemplateError {
        template,
        source: minijinja::Error::new(minijinja::ErrorKind::TemplateNotFound, err.to_string()),
    })?;
    env.get_template(template).and_then(|t| t.render(data)).map_err(|source| TemplateError { template, source })
}

fn pair(
    subject: &str,
    text: &'static str,
    html: &'static str,
    data: minijinja::Value,
) -> Result<Rendered, TemplateError> {
    Ok(Rendered { subject: subject.to_owned(), text: render(text, data.clone())?, html: render(html, data)? })
}

/// A CRM user's message (or note) to a contact: the body as typed, escaped in HTML, with
/// blank lines as paragraph breaks, and, for bulk mail, the visible unsubscribe link.
pub fn message(sender: &str, subject: &str, body: &str, unsubscribe: Option<&str>) -> Result<Rendered, TemplateError> {
    // Most bodies hold no CR: no copy of them then.
    let normalized =
        if body.contains('\r') { std::borrow::Cow::Owned(body.replace("\r\n", "\n")) } else { body.into() };
    let paragraphs: Vec<Vec<String>> = normalized
        .split("\n\n")
        .map(|p| p.trim_matches('\n'))
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.split('\n').map(str::to_owned).collect())
        .collect();
    let html = render("emails/message.html", context! { subject, paragraphs, sender, unsubscribe })?;
    let text = render("emails/message.txt", context! { body, sender, unsubscribe })?;
    Ok(Rendered { subject: subject.to_owned(), text, html })
}

/// The email that carries the verification link.
pub fn verify_email(name: &str, link: &str, hours: u64) -> Result<Rendered, TemplateError> {
    let data = context! { name, link, hours };
    pair("Verify your email for Borcelle", "emails/verify_email.txt", "emails/verify_email.html", data)
}

/// The email that carries the password-reset link.
pub fn reset_password(name: &str, link: &str, minutes: u64) -> Result<Rendered, TemplateError> {
    let data = context! { name, link, minutes };
    pair("Reset your Borcelle password", "emails/reset_password.txt", "emails/reset_password.html", data)
}

/// Sent to the owner of an address when someone registers with it again.
pub fn already_registered(name: &str, login_link: &str, reset_link: &str) -> Result<Rendered, TemplateError> {
    let data = context! { name, login_link, reset_link };
    pair(
        "Someone tried to sign up with your email",
        "emails/already_registered.txt",
        "emails/already_registered.html",
        data,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn html_escapes_user_content_and_text_keeps_it() {
        let mail = verify_email("<script>alert(1)</script> & Co", "http://x/verify?token=a&b", 24).unwrap();
        assert!(!mail.html.contains("<script>"));
        assert!(mail.html.contains("&lt;script&gt;"), "{}", mail.html);
        assert!(mail.html.contains(r#"href="http://x/verify?token=a&amp;b""#), "{}", mail.html);
        assert!(mail.text.contains("<script>alert(1)</script> & Co"));
        assert!(mail.text.contains("http://x/verify?token=a&b"));
    }

    #[test]
    fn every_template_renders_with_its_data() {
        let verify = verify_email("Ada", "https://crm.example/verify?token=t", 24).unwrap();
        assert!(verify.text.contains("https://crm.example/verify?token=t") && verify.text.contains("24 hours"));
        assert!(verify.html.contains("Verify my email") && verify.html.contains("<title>Verify your email</title>"));
        let reset = reset_password("Ada", "https://crm.example/reset?token=t", 60).unwrap();
        assert!(reset.text.contains("expires in 60 minutes") && reset.html.contains("Choose a new password"));
        let taken = already_registered("Ada", "https://crm.example/login", "https://crm.example/forgot").unwrap();
        assert!(taken.text.contains("log in at https://crm.example/login"));
        assert!(taken.html.contains("reset your password</a>"));
    }

    proptest::proptest! {
        /// Any text, in any script: the five characters become their entities, everything else
        /// stays as it was, in order.
        #[test]
        fn escaping_changes_the_five_characters_and_nothing_else(text in "\\PC*|[&<>\"'a é😀]{0,40}") {
            let expected: String = text.chars().map(|c| match c {
                '&' => "&amp;".to_owned(),
                '<' => "&lt;".to_owned(),
                '>' => "&gt;".to_owned(),
                '"' => "&quot;".to_owned(),
                '\'' => "&#39;".to_owned(),
                other => other.to_string(),
            }).collect();
            proptest::prop_assert_eq!(escape_html(&text), expected);
        }
    }

    #[test]
    fn a_message_keeps_its_lines_and_paragraphs() {
        let mail = message("Ada <a@b>", "Q3 & more", "Hello,\r\nline two\n\n\nThird <b>para</b>\n", None).unwrap();
        assert!(mail.html.contains("<p>Hello,<br>line two</p>"), "{}", mail.html);
        assert!(mail.html.contains("<p>Third &lt;b&gt;para&lt;/b&gt;</p>"), "{}", mail.html);
        assert!(mail.html.contains("<title>Q3 &amp; more</title>"));
        assert!(mail.text.starts_with("Hello,\r\nline two\n\n\nThird <b>para</b>\n"));
        assert!(mail.text.contains("Ada <a@b> sent you this message with Borcelle."));
        assert!(!mail.text.contains("unsubscribe") && !mail.html.contains("Unsubscribe"));
    }

    #[test]
    fn bulk_mail_shows_its_unsubscribe_link_in_both_parts() {
        let link = "https://crm.example/unsubscribe/abc?x=1&y=2";
        let mail = message("Ada", "News", "Hello", Some(link)).unwrap();
        assert!(mail.text.ends_with(&format!("unsubscribe: {link}")), "{}", mail.text);
        assert!(mail.html.contains(r#"<a href="https://crm.example/unsubscribe/abc?x=1&amp;y=2""#), "{}", mail.html);
    }
}
