//! Every email has a text and an HTML part rendered from templates; the HTML part escapes user content.

use askama::Template;

/// Subject and both bodies of an email.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

macro_rules! email_pair {
    ($text:ident = $text_path:literal, $html:ident = $html_path:literal, { $($field:ident : $ty:ty),* $(,)? }) => {
        #[derive(Template)]
        #[template(path = $text_path)]
        struct $text<'a> { $($field: $ty),* }

        #[derive(Template)]
        #[template(path = $html_path)]
        struct $html<'a> { $($field: $ty),* }
    };
}

email_pair!(VerifyText = "emails/verify_email.txt", VerifyHtml = "emails/verify_email.html", { name: &'a str, link: &'a str, hours: u64 });
email_pair!(ResetText = "emails/reset_password.txt", ResetHtml = "emails/reset_password.html", { name: &'a str, link: &'a str, minutes: u64 });
email_pair!(TakenText = "emails/already_registered.txt", TakenHtml = "emails/already_registered.html", { name: &'a str, login_link: &'a str, reset_link: &'a str });

#[derive(Template)]
#[template(path = "emails/message.txt")]
struct MessageText<'a> {
    body: &'a str,
    sender: &'a str,
}

#[derive(Template)]
#[template(path = "emails/message.html")]
struct MessageHtml<'a> {
    subject: &'a str,
    paragraphs: Vec<Vec<&'a str>>,
    sender: &'a str,
}

/// A CRM user's message (or note) to a contact: the body as typed, escaped in HTML, with
/// blank lines as paragraph breaks.
pub fn message(sender: &str, subject: &str, body: &str) -> anyhow::Result<Rendered> {
    let normalized = body.replace("\r\n", "\n");
    let paragraphs: Vec<Vec<&str>> = normalized
        .split("\n\n")
        .map(|p| p.trim_matches('\n'))
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.split('\n').collect())
        .collect();
    let html = MessageHtml { subject, paragraphs, sender }.render()?;
    Ok(Rendered { subject: subject.to_owned(), text: MessageText { body, sender }.render()?, html })
}

fn render(subject: &str, text: impl Template, html: impl Template) -> anyhow::Result<Rendered> {
    Ok(Rendered { subject: subject.to_owned(), text: text.render()?, html: html.render()? })
}

/// The email that carries the verification link.
pub fn verify_email(name: &str, link: &str, hours: u64) -> anyhow::Result<Rendered> {
    render("Verify your email for Borcelle", VerifyText { name, link, hours }, VerifyHtml { name, link, hours })
}

/// The email that carries the password-reset link.
pub fn reset_password(name: &str, link: &str, minutes: u64) -> anyhow::Result<Rendered> {
    render("Reset your Borcelle password", ResetText { name, link, minutes }, ResetHtml { name, link, minutes })
}

/// Sent to the owner of an address when someone registers with it again.
pub fn already_registered(name: &str, login_link: &str, reset_link: &str) -> anyhow::Result<Rendered> {
    render(
        "Someone tried to sign up with your email",
        TakenText { name, login_link, reset_link },
        TakenHtml { name, login_link, reset_link },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_user_content_and_text_keeps_it() {
        let mail = verify_email("<script>alert(1)</script> & Co", "http://x/verify?token=a&b", 24).unwrap();
        assert!(!mail.html.contains("<script>"));
        assert!(mail.html.contains("&#60;script&#62;") || mail.html.contains("&lt;script&gt;"), "{}", mail.html);
        assert!(mail.text.contains("<script>alert(1)</script> & Co"));
        assert!(mail.text.contains("http://x/verify?token=a&b"));
    }
}
