//! Personalised mail: the subject and body of a message, note or reminder may use merge fields of
//! the recipient contact and of the sender (`{{ contact.first_name | default("there") }}`,
//! `{{ sender.name }}`). A [`MergeTemplate`] is checked once, when the message is saved or sent,
//! and then rendered per recipient in a sandboxed minijinja environment.
//!
//! The sandbox: no loader and no includes (no file access), a fuel budget per render (every loop
//! and every recursion ends), the output written into a size-capped buffer, no auto-escaping (the
//! output is plain text; the HTML part escapes it later), strict undefined values, and only the
//! fields of [`MergeFields`] in the context.

use std::io;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::ValueKind;
use minijinja::{AutoEscape, Environment, ErrorKind, Output, State, UndefinedBehavior, Value, context};
use serde::{Deserialize, Serialize};

/// The fields of [`ContactFields`], in the order error messages list them.
pub const CONTACT_FIELDS: [&str; 8] =
    ["first_name", "last_name", "name", "email", "company", "phone", "address", "tags"];
/// The fields of [`SenderFields`].
pub const SENDER_FIELDS: [&str; 2] = ["name", "email"];
/// A rendered subject is one header line: at most 998 bytes (RFC 5322 2.1.1).
pub const SUBJECT_MAX_BYTES: usize = 998;
/// A rendered body is at most 1 MiB.
pub const BODY_MAX_BYTES: usize = 1 << 20;
/// The work one render of one part may do, in minijinja fuel (one per instruction, one per 64
/// bytes of data). A 2 KB body with a few fields and a loop over tags uses about 70 and a 1 MiB
/// body about 16,400; running out takes about 3 ms in a release build, whatever the template.
pub const FUEL: u64 = 100_000;
/// The longest first or last name [`split_name`] returns, in characters.
pub const NAME_PART_MAX_CHARS: usize = 100;

const FIELDS_HELP: &str =
    "contact has first_name, last_name, name, email, company, phone, address, tags; sender has name, email";

/// What one recipient's email may use: stored as a JSON snapshot on the ledger row at queue time,
/// rendered at delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeFields {
    pub contact: ContactFields,
    pub sender: SenderFields,
}

/// The recipient contact's fields. A missing (`None`) field is empty text in a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactFields {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub name: String,
    pub email: String,
    pub company: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The sending CRM user's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderFields {
    pub name: String,
    pub email: String,
}

/// The part of a message a problem is in (the web layer names the form field after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Subject,
    Body,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Subject => "subject",
            Part::Body => "body",
        }
    }

    fn max_bytes(self) -> usize {
        match self {
            Part::Subject => SUBJECT_MAX_BYTES,
            Part::Body => BODY_MAX_BYTES,
        }
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a template is refused (or, rarely, why one recipient's email could not be rendered):
/// the part, the line and column (1-based; the column counts characters) where the problem is,
/// the field or construct named, and a message a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{part}, line {line}, column {column}: {message}")]
pub struct MergeError {
    pub part: Part,
    pub line: usize,
    pub column: usize,
    pub name: Option<String>,
    pub message: String,
}

/// A subject and body, merged for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub subject: String,
    pub body: String,
}

/// Subject and body checked once (at save/send time) and rendered per recipient.
#[derive(Clone)]
pub struct MergeTemplate {
    subject: String,
    body: String,
    /// Both parts compiled, under the names `subject` and `body`; `None` when the text is plain.
    env: Option<Environment<'static>>,
}

impl std::fmt::Debug for MergeTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeTemplate")
            .field("subject", &self.subject)
            .field("body", &self.body)
            .field("plain", &self.is_plain())
            .finish()
    }
}

impl MergeTemplate {
    /// Checks a subject and body: the subject is one line; both parse; no include, import or
    /// extends; every field is one of [`CONTACT_FIELDS`] or [`SENDER_FIELDS`]; every filter and
    /// test exists; and both render, within the fuel and the size caps, for a sample recipient
    /// with every field set and one with every optional field missing. A template that passes
    /// fails at delivery only on what the samples cannot show (an `int` filter on a real name).
    pub fn parse(subject: &str, body: &str) -> Result<MergeTemplate, MergeError> {
        check_one_line(subject)?;
        let plain = [subject, body].iter().all(|text| !has_merge_syntax(text));
        let mut template = MergeTemplate { subject: subject.to_owned(), body: body.to_owned(), env: None };
        if plain {
            for (part, text) in [(Part::Subject, subject), (Part::Body, body)] {
                if text.len() > part.max_bytes() {
                    return Err(too_large(part));
                }
            }
            return Ok(template);
        }
        let mut env = environment().map_err(|err| engine_error(Part::Subject, subject, &err))?;
        for (part, text) in [(Part::Subject, subject), (Part::Body, body)] {
            env.add_template_owned(part.as_str(), text.to_owned()).map_err(|err| engine_error(part, text, &err))?;
            let tags = scan(text);
            check_statements(part, text, &tags)?;
            let compiled = env.get_template(part.as_str()).map_err(|err| engine_error(part, text, &err))?;
            check_names(part, text, &tags, &compiled.undeclared_variables(true))?;
            check_filters_and_tests(&env, part, text, &tags)?;
        }
        template.env = Some(env);
        for sample in samples() {
            template.render(&sample)?;
        }
        Ok(template)
    }

    /// No merge syntax at all: rendering returns the text as is (the fast path for 1,000,000
    /// recipients).
    pub fn is_plain(&self) -> bool {
        self.env.is_none()
    }

    /// The subject and body for one recipient. In the subject, line breaks and other control
    /// characters that the fields bring in become spaces.
    pub fn render(&self, fields: &MergeFields) -> Result<Merged, MergeError> {
        let Some(env) = &self.env else {
            return Ok(Merged { subject: self.subject.clone(), body: self.body.clone() });
        };
        let root = fields.to_value();
        let subject = render_part(env, Part::Subject, &self.subject, root.clone())?;
        let subject = match crate::header_line(&subject) {
            std::borrow::Cow::Borrowed(_) => subject,
            std::borrow::Cow::Owned(one_line) => one_line,
        };
        let body = render_part(env, Part::Body, &self.body, root)?;
        Ok(Merged { subject, body })
    }
}

impl MergeFields {
    /// The template context: `contact` and `sender`, a missing field as empty text.
    fn to_value(&self) -> Value {
        let text = |value: &Option<String>| Value::from(value.as_deref().unwrap_or(""));
        let c = &self.contact;
        let tags: Value = c.tags.iter().map(String::as_str).collect();
        let contact = context! {
            first_name => text(&c.first_name),
            last_name => text(&c.last_name),
            name => c.name.as_str(),
            email => c.email.as_str(),
            company => text(&c.company),
            phone => text(&c.phone),
            address => text(&c.address),
            tags => tags,
        };
        let sender = context! { name => self.sender.name.as_str(), email => self.sender.email.as_str() };
        context! { contact => contact, sender => sender }
    }
}

/// Whether a text has anything minijinja would read as template syntax.
fn has_merge_syntax(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// The sandbox every merge template renders in.
fn environment() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    // No loader, and every include, import or extends resolves to a name no template has, so
    // even one the static check missed finds nothing (not even the other part).
    env.set_path_join_callback(|_, _| std::borrow::Cow::Borrowed("\u{0}"));
    for global in ["range", "dict", "namespace", "debug"] {
        env.remove_global(global);
    }
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_debug(false);
    env.set_fuel(Some(FUEL));
    // Plain text: a block tag on its own line leaves no blank line, and the text keeps its last
    // newline (as the plain path does).
    env.set_syntax(SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).keep_trailing_newline(true).build()?);
    env.set_formatter(format_value);
    env.add_filter("default", default_filter);
    env.add_filter("d", default_filter);
    Ok(env)
}

/// `none` prints nothing, a list prints its items separated by `, `, anything else as usual.
fn format_value(out: &mut Output, state: &mut State, value: &Value) -> Result<(), minijinja::Error> {
    if value.is_none() {
        return Ok(());
    }
    if value.kind() != ValueKind::Seq {
        return minijinja::escape_formatter(out, state, value);
    }
    for (index, item) in value.try_iter()?.enumerate() {
        if index > 0 {
            out.write_str(", ")?;
        }
        if !item.is_none() {
            minijinja::escape_formatter(out, state, &item)?;
        }
    }
    Ok(())
}

/// `default(x)`: `x` (or empty text) when the value is undefined, none or empty text;
/// `default(x, true)` also for any other false value (`0`, an empty list).
fn default_filter(value: &Value, fallback: Option<Value>, any_false: Option<bool>) -> Value {
    let missing = value.is_undefined()
        || value.is_none()
        || value.as_str() == Some("")
        || (any_false == Some(true) && !value.is_true());
    if missing { fallback.unwrap_or_else(|| Value::from("")) } else { value.clone() }
}

/// An `io::Write` that refuses, whole, the write that would take it past its cap (minijinja
/// writes whole `str`s, so what it holds stays UTF-8).
struct CappedBuffer {
    bytes: Vec<u8>,
    cap: usize,
    exceeded: bool,
}

impl io::Write for CappedBuffer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.bytes.len().saturating_add(data.len()) > self.cap {
            self.exceeded = true;
            return Err(io::Error::other("merged text too large"));
        }
        self.bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn render_part(env: &Environment<'static>, part: Part, source: &str, root: Value) -> Result<String, MergeError> {
    let template = env.get_template(part.as_str()).map_err(|err| engine_error(part, source, &err))?;
    let capacity = source.len().saturating_add(source.len() / 4).min(part.max_bytes());
    let mut out = CappedBuffer { bytes: Vec::with_capacity(capacity), cap: part.max_bytes(), exceeded: false };
    match template.render_captured_to(root, &mut out) {
        Ok(_) => Ok(String::from_utf8(out.bytes)
            .unwrap_or_else(|not_utf8| String::from_utf8_lossy(not_utf8.as_bytes()).into_owned())),
        Err(_) if out.exceeded => Err(too_large(part)),
        Err(err) => Err(engine_error(part, source, &err)),
    }
}

fn too_large(part: Part) -> MergeError {
    let limit = match part {
        Part::Subject => "998 bytes",
        Part::Body => "1 MiB",
    };
    MergeError {
        part,
        line: 1,
        column: 1,
        name: None,
        message: format!("the {part} would be longer than {limit} once merged"),
    }
}

/// Line and column (1-based, the column in characters) of a byte offset.
fn position(source: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(source.len());
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    let before = source.get(..end).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
    (before.matches('\n').count() + 1, column)
}

fn error_at(part: Part, source: &str, offset: usize, name: Option<String>, message: String) -> MergeError {
    let (line, column) = position(source, offset);
    MergeError { part, line, column, name, message }
}

/// A minijinja error (syntax at parse, anything at render) as a [`MergeError`].
fn engine_error(part: Part, source: &str, err: &minijinja::Error) -> MergeError {
    let range = err.range().filter(|range| range.start <= source.len());
    let written = range.clone().and_then(|range| source.get(range)).map(str::trim);
    let name = written.filter(|text| !text.is_empty() && !text.contains('\n') && text.chars().count() <= 60);
    let detail = err.detail().unwrap_or_default();
    let message = match err.kind() {
        ErrorKind::SyntaxError => {
            format!("syntax error: {}", if detail.is_empty() { "not a valid template" } else { detail })
        }
        ErrorKind::OutOfFuel => {
            "the template does too much work (a loop that runs too long or a value that grows too large)".to_owned()
        }
        ErrorKind::TemplateNotFound | ErrorKind::BadInclude => "templates cannot include files".to_owned(),
        ErrorKind::UndefinedError => match name {
            Some(name) => format!("{name} is not defined ({FIELDS_HELP})"),
            None => format!("a value is not defined ({FIELDS_HELP})"),
        },
        ErrorKind::InvalidOperation if detail.contains("recursion") => {
            "a macro calls itself too deeply (it would never end)".to_owned()
        }
        kind if detail.is_empty() => kind.to_string(),
        kind => format!("{kind}: {detail}"),
    };
    let (line, column) = match range {
        Some(range) => position(source, range.start),
        None => (err.line().unwrap_or(1), 1),
    };
    MergeError { part, line, column, name: name.map(str::to_owned), message }
}

fn check_one_line(subject: &str) -> Result<(), MergeError> {
    match subject.char_indices().find(|(_, c)| c.is_control()) {
        None => Ok(()),
        Some((offset, c)) => Err(error_at(
            Part::Subject,
            subject,
            offset,
            Some(format!("U+{:04X}", u32::from(c))),
            format!("the subject must be one line without control characters (found U+{:04X})", u32::from(c)),
        )),
    }
}

/// A word or punctuation mark inside a template tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    Mark(char),
}

/// One `{{ … }}` or `{% … %}` tag as tokens with their byte offsets: enough to find where a
/// name, filter or statement is written. minijinja has already accepted the template; this only
/// locates what its analysis names and finds the statements its analysis skips.
struct Tag<'a> {
    statement: bool,
    tokens: Vec<(usize, Token<'a>)>,
}

impl<'a> Tag<'a> {
    /// The statement's keyword (`for`, `include`, …), after any whitespace control mark.
    fn keyword(&self) -> Option<(usize, &'a str)> {
        let mut tokens = self.tokens.iter().skip_while(|(_, t)| matches!(t, Token::Mark('-' | '+')));
        match tokens.next() {
            Some(&(offset, Token::Word(word))) if self.statement => Some((offset, word)),
            _ => None,
        }
    }
}

/// The tags of a template, skipping comments and the content of `{% raw %}` blocks.
fn scan(source: &str) -> Vec<Tag<'_>> {
    let bytes = source.as_bytes();
    let mut tags: Vec<Tag<'_>> = Vec::new();
    let mut at = 0;
    while let Some(found) = source.get(at..).and_then(|rest| rest.find('{')) {
        let start = at + found;
        let statement = match bytes.get(start + 1) {
            Some(b'{') => false,
            Some(b'%') => true,
            Some(b'#') => {
                at = source
                    .get(start + 2..)
                    .and_then(|rest| rest.find("#}"))
                    .map_or(source.len(), |end| start + 4 + end);
                continue;
            }
            _ => {
                at = start + 1;
                continue;
            }
        };
        let (tag, end) = scan_tag(source, start + 2, statement);
        at = end;
        if tag.keyword().is_some_and(|(_, word)| word == "raw") {
            at = find_endraw(source, at);
        }
        tags.push(tag);
    }
    tags
}

/// Where the `{% endraw %}` tag after `from` starts (the end of the text if there is none).
fn find_endraw(source: &str, from: usize) -> usize {
    let mut at = from;
    while let Some(found) = source.get(at..).and_then(|rest| rest.find("{%")) {
        let start = at + found;
        let rest = source.get(start + 2..).unwrap_or_default();
        if rest.trim_start_matches(['-', '+']).trim_start().starts_with("endraw") {
            return start;
        }
        at = start + 2;
    }
    source.len()
}

/// The tokens of one tag whose content starts at `from`, and where the tag ends.
fn scan_tag(source: &str, from: usize, statement: bool) -> (Tag<'_>, usize) {
    let close = if statement { '%' } else { '}' };
    let bytes = source.as_bytes();
    let mut tokens = Vec::new();
    let mut depth = 0usize;
    let mut chars = source.get(from..).unwrap_or_default().char_indices().peekable();
    while let Some((relative, c)) = chars.next() {
        let at = from + relative;
        match c {
            c if c == close && depth == 0 && bytes.get(at + 1) == Some(&b'}') => {
                return (Tag { statement, tokens }, at + 2);
            }
            c if c.is_whitespace() => {}
            '\'' | '"' => {
                let mut escaped = false;
                for (_, d) in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' {
                        escaped = true;
                    } else if d == c {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let mut end = at + c.len_utf8();
                while let Some(&(next, d)) = chars.peek() {
                    if !(d.is_ascii_alphanumeric() || d == '_') {
                        break;
                    }
                    end = from + next + d.len_utf8();
                    chars.next();
                }
                if !c.is_ascii_digit() {
                    tokens.push((at, Token::Word(source.get(at..end).unwrap_or_default())));
                }
            }
            other => {
                match other {
                    '{' | '[' | '(' => depth += 1,
                    '}' | ']' | ')' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                tokens.push((at, Token::Mark(other)));
            }
        }
    }
    (Tag { statement, tokens }, source.len())
}

/// Refuses `include`, `import`, `from … import` and `extends`: there are no files to use.
fn check_statements(part: Part, source: &str, tags: &[Tag<'_>]) -> Result<(), MergeError> {
    for tag in tags {
        if let Some((offset, keyword @ ("include" | "import" | "from" | "extends"))) = tag.keyword() {
            return Err(error_at(
                part,
                source,
                offset,
                Some(keyword.to_owned()),
                format!("templates cannot include files (remove {{% {keyword} %}})"),
            ));
        }
    }
    Ok(())
}

/// Refuses every name other than `contact.<field>` and `sender.<field>` (minijinja's analysis
/// lists each variable and attribute chain the template reads and does not define itself),
/// naming the one written first.
fn check_names(
    part: Part,
    source: &str,
    tags: &[Tag<'_>],
    used: &std::collections::HashSet<String>,
) -> Result<(), MergeError> {
    let refused = used.iter().filter_map(|path| name_problem(path).map(|message| (path, message)));
    let first = refused.min_by_key(|&(path, _)| (locate(tags, path).unwrap_or(usize::MAX), path.as_str()));
    match first {
        None => Ok(()),
        Some((path, message)) => {
            let offset = locate(tags, path).unwrap_or(0);
            Err(error_at(part, source, offset, Some(path.clone()), message))
        }
    }
}

/// Why a name (`contact.first_name`, `secrets`, `contact.name.__class__`) may not be used.
fn name_problem(path: &str) -> Option<String> {
    let mut segments = path.split('.');
    let top = segments.next().unwrap_or_default();
    let fields: &[&str] = match top {
        "contact" => &CONTACT_FIELDS,
        "sender" => &SENDER_FIELDS,
        _ => return Some(format!("unknown name {top}: use a field of contact or sender ({FIELDS_HELP})")),
    };
    let Some(field) = segments.next() else {
        return Some(format!("{top} needs a field, like {top}.{} ({FIELDS_HELP})", fields[0]));
    };
    if !fields.contains(&field) {
        return Some(format!("unknown field {top}.{field} ({FIELDS_HELP})"));
    }
    segments.next().map(|_| {
        format!(
            "unknown field {path}: {top}.{field} has no fields; to change it use a filter, like {top}.{field} | upper"
        )
    })
}

/// The offset of the first place `path` (`contact.nope`) is written in a tag, or failing that
/// where its first name is.
fn locate(tags: &[Tag<'_>], path: &str) -> Option<usize> {
    let segments: Vec<&str> = path.split('.').collect();
    let first = segments.first()?;
    let mut fallback = None;
    for tag in tags {
        let tokens = &tag.tokens;
        let token = |index: usize| tokens.get(index).map(|&(_, token)| token);
        for (index, &(offset, token_here)) in tokens.iter().enumerate() {
            if token_here != Token::Word(first) || (index > 0 && token(index - 1) == Some(Token::Mark('.'))) {
                continue;
            }
            let mut next = index + 1;
            let whole = segments[1..].iter().all(|segment| {
                let found = token(next) == Some(Token::Mark('.')) && token(next + 1) == Some(Token::Word(segment));
                next += 2;
                found
            });
            if whole && token(next) != Some(Token::Mark('.')) {
                return Some(offset);
            }
            fallback.get_or_insert(offset);
        }
    }
    fallback
}

/// Refuses an unknown filter or test wherever it is written (minijinja looks them up only when
/// the expression runs, which the samples may not reach).
fn check_filters_and_tests(
    env: &Environment<'static>,
    part: Part,
    source: &str,
    tags: &[Tag<'_>],
) -> Result<(), MergeError> {
    for tag in tags {
        let tokens = &tag.tokens;
        for (index, &(_, token)) in tokens.iter().enumerate() {
            let (kind, at) = match token {
                Token::Mark('|') => ("filter", index + 1),
                Token::Word("is") if tokens.get(index + 1).map(|t| t.1) == Some(Token::Word("not")) => {
                    ("test", index + 2)
                }
                Token::Word("is") => ("test", index + 1),
                Token::Word("filter") if tag.keyword().is_some_and(|(offset, _)| offset == tokens[index].0) => {
                    ("filter", index + 1)
                }
                _ => continue,
            };
            let Some(&(offset, Token::Word(name))) = tokens.get(at) else { continue };
            let expression = match kind {
                "filter" => format!("none | {name}"),
                _ => format!("none is {name}"),
            };
            let unknown = match env.compile_expression_owned(expression) {
                Ok(compiled) => compiled.eval(()).err().map(|err| err.kind()),
                Err(err) => Some(err.kind()),
            };
            if matches!(unknown, Some(ErrorKind::UnknownFilter | ErrorKind::UnknownTest)) {
                let message = format!("unknown {kind} {name}");
                return Err(error_at(part, source, offset, Some(name.to_owned()), message));
            }
        }
    }
    Ok(())
}

/// The recipients every template is tried on before it is accepted: every field set (an address
/// over two lines, two tags), and every optional field missing (no tags).
fn samples() -> [MergeFields; 2] {
    let sender = SenderFields { name: "Grace Hopper".to_owned(), email: "grace@example.com".to_owned() };
    [
        MergeFields {
            contact: ContactFields {
                first_name: Some("Ada".to_owned()),
                last_name: Some("Lovelace".to_owned()),
                name: "Ada Lovelace".to_owned(),
                email: "ada@example.com".to_owned(),
                company: Some("Analytical Engines Ltd".to_owned()),
                phone: Some("+442079460000".to_owned()),
                address: Some("12 St James's Square\nLondon SW1Y 4LB".to_owned()),
                tags: vec!["customer".to_owned(), "newsletter".to_owned()],
            },
            sender: sender.clone(),
        },
        MergeFields {
            contact: ContactFields {
                first_name: None,
                last_name: None,
                name: "ada".to_owned(),
                email: "ada@example.com".to_owned(),
                company: None,
                phone: None,
                address: None,
                tags: Vec::new(),
            },
            sender,
        },
    ]
}

/// First and last name from a display name, for contacts and CSV imports that have only a name.
///
/// Exactly (so that a SQL backfill can do the same):
/// 1. Whitespace is Unicode `White_Space` (Rust's `char::is_whitespace`). Normalising a text
///    means trimming it and replacing each run of whitespace inside by one space `' '`.
/// 2. If the name contains a comma (`,`, U+002C) it is split at the first comma into `before`
///    and `after` (the rest, which may hold more commas), both normalised. If both are
///    non-empty, the name is "Last, First": the result is `(after, before)`. If only one is
///    non-empty, that one is split by rule 3. If neither is, the result is `(None, None)`.
/// 3. Otherwise the name is normalised. Empty: `(None, None)`. One word: `(word, None)`.
///    Several words: `(first word, the other words joined by single spaces)`.
/// 4. Each part is then cut to its first [`NAME_PART_MAX_CHARS`] (100) characters (Unicode
///    scalar values, not bytes) and trimmed again at its end; a part that is empty is `None`.
///
/// `"  Ada   King  Lovelace "` → `(Ada, King Lovelace)`; `"Lovelace, Ada"` → `(Ada, Lovelace)`;
/// `"Cher"` → `(Cher, None)`; `", Ada"` → `(Ada, None)`; `""` → `(None, None)`. It does not
/// know suffixes: `"Ada Lovelace, Countess"` → `(Countess, Ada Lovelace)`.
pub fn split_name(name: &str) -> (Option<String>, Option<String>) {
    let (first, last) = match name.split_once(',') {
        Some((before, after)) => {
            let (before, after) = (normalise(before), normalise(after));
            match (before.is_empty(), after.is_empty()) {
                (false, false) => (after, before),
                (true, false) => split_words(&after),
                (false, true) => split_words(&before),
                (true, true) => (String::new(), String::new()),
            }
        }
        None => split_words(&normalise(name)),
    };
    (name_part(&first), name_part(&last))
}

/// Trimmed, with each run of whitespace as one space.
fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A normalised name as (first word, the rest).
fn split_words(normalised: &str) -> (String, String) {
    match normalised.split_once(' ') {
        Some((first, rest)) => (first.to_owned(), rest.to_owned()),
        None => (normalised.to_owned(), String::new()),
    }
}

fn name_part(part: &str) -> Option<String> {
    let cut = match part.char_indices().nth(NAME_PART_MAX_CHARS) {
        Some((end, _)) => part.get(..end).unwrap_or(part),
        None => part,
    };
    let cut = cut.trim_end();
    (!cut.is_empty()).then(|| cut.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::*;

    fn refused(subject: &str, body: &str) -> MergeError {
        MergeTemplate::parse(subject, body).expect_err("the template should be refused")
    }

    fn render(subject: &str, body: &str, fields: &MergeFields) -> Merged {
        MergeTemplate::parse(subject, body).unwrap().render(fields).unwrap()
    }

    fn full() -> MergeFields {
        samples()[0].clone()
    }

    fn missing() -> MergeFields {
        samples()[1].clone()
    }

    /// Refusals fail the sample render at most once, and a render stops within its fuel: well
    /// under this even unoptimised on a busy machine.
    const QUICKLY: Duration = Duration::from_secs(5);

    #[test]
    fn an_unknown_field_is_refused_with_part_line_column_and_name() {
        let err = refused("Hello", "Hello,\nDear {{ contact.nope }},\n");
        assert_eq!((err.part, err.line, err.column), (Part::Body, 2, 9), "{err}");
        assert_eq!(err.name.as_deref(), Some("contact.nope"));
        assert_eq!(
            err.to_string(),
            "body, line 2, column 9: unknown field contact.nope (contact has first_name, last_name, name, \
             email, company, phone, address, tags; sender has name, email)"
        );
    }

    #[test]
    fn an_unknown_field_in_a_branch_the_samples_skip_is_still_refused() {
        let err = refused("Hi", "{% if contact.company == 'nobody' %}\n  {{ sender . nope }}\n{% endif %}");
        assert_eq!((err.part, err.line, err.column), (Part::Body, 2, 6), "{err}");
        assert_eq!(err.name.as_deref(), Some("sender.nope"));
    }

    #[test]
    fn the_first_of_several_unknown_names_is_named() {
        let err = refused("{{ contact.first }} {{ zzz }} {{ aaa }}", "");
        assert_eq!((err.part, err.column, err.name.as_deref()), (Part::Subject, 4, Some("contact.first")), "{err}");
    }

    #[test]
    fn an_unclosed_expression_is_a_syntax_error_where_it_is() {
        let err = refused("Hi {{ unclosed", "body");
        assert_eq!((err.part, err.line, err.column), (Part::Subject, 1, 7), "{err}");
        assert_eq!(err.name.as_deref(), Some("unclosed"));
        assert!(err.message.starts_with("syntax error: unexpected end of input"), "{err}");
    }

    #[test]
    fn a_broken_for_statement_is_a_syntax_error_where_it_is() {
        let err = refused("Hi", "Hello\n  {% for %}\n{% endfor %}");
        assert_eq!((err.part, err.line, err.column), (Part::Body, 2, 10), "{err}");
        assert!(err.message.starts_with("syntax error"), "{err}");
    }

    #[test]
    fn a_loop_that_would_run_forever_is_refused_quickly() {
        for body in [
            "{% for a in 'x' * 100000 %}{% for b in 'x' * 100000 %}{{ b }}{% endfor %}{% endfor %}",
            "{% for a in contact.tags * 100000 %}{% for b in contact.tags * 100000 %}{{ b | upper }}{% endfor %}{% endfor %}",
        ] {
            let started = Instant::now();
            let err = refused("Hi", body);
            let took = started.elapsed();
            println!("refused in {took:?}: {err}");
            assert!(took < QUICKLY, "{took:?}");
            assert_eq!((err.part, err.line), (Part::Body, 1), "{err}");
            assert!(err.message.contains("too much work"), "{err}");
        }
    }

    #[test]
    fn range_and_the_other_globals_are_unknown_names() {
        let err = refused("Hi", "x\n{% for a in range(100000) %}{% for b in range(100000) %}.{% endfor %}{% endfor %}");
        assert_eq!((err.line, err.column, err.name.as_deref()), (2, 13, Some("range")), "{err}");
        for body in ["{{ namespace() }}", "{{ dict(a=1) }}", "{{ debug() }}", "{{ loop.index }}"] {
            assert!(refused("Hi", body).message.starts_with("unknown name"), "{body}");
        }
    }

    #[test]
    fn a_ten_megabyte_expansion_is_refused_before_it_is_built() {
        let started = Instant::now();
        let err = refused("Hi", "Hello\n{{ 'x' * 10000000 }}");
        assert!(started.elapsed() < QUICKLY);
        assert_eq!((err.part, err.line, err.column), (Part::Body, 2, 4), "{err}");
        assert!(err.message.contains("too much work"), "{err}");
    }

    #[test]
    fn a_body_over_one_mebibyte_once_merged_is_refused() {
        let err = refused("Hi", "{% for tag in contact.tags %}{{ 'x' * 600000 }}{% endfor %}");
        assert_eq!(err.part, Part::Body);
        assert_eq!(err.message, "the body would be longer than 1 MiB once merged");
        let plain = "x".repeat(BODY_MAX_BYTES + 1);
        assert_eq!(refused("Hi", &plain).message, "the body would be longer than 1 MiB once merged");
        assert!(MergeTemplate::parse("Hi", &plain[1..]).unwrap().is_plain());
    }

    #[test]
    fn a_subject_over_998_bytes_once_merged_is_refused() {
        let err = refused("{{ contact.name * 100 }}", "");
        assert_eq!(
            (err.part, err.message.as_str()),
            (Part::Subject, "the subject would be longer than 998 bytes once merged")
        );
        assert_eq!(refused(&"s".repeat(999), "").part, Part::Subject);
        MergeTemplate::parse(&"s".repeat(998), "").unwrap();
    }

    #[test]
    fn a_macro_that_calls_itself_forever_is_refused() {
        let err = refused("Hi", "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}");
        assert_eq!(err.part, Part::Body);
        assert!(err.message.contains("calls itself"), "{err}");
    }

    #[test]
    fn includes_imports_and_extends_are_refused() {
        for (body, keyword) in [
            ("a\n  {% include 'x' %}", "include"),
            ("a\n  {%- include 'subject' %}", "include"),
            ("a\n  {% import 'subject' as s %}", "import"),
            ("a\n  {% from 'x' import y %}", "from"),
            ("a\n  {% extends 'subject' %}", "extends"),
        ] {
            let err = refused("Hi", body);
            assert_eq!((err.part, err.line, err.name.as_deref()), (Part::Body, 2, Some(keyword)), "{err}");
            assert!(err.message.starts_with("templates cannot include files"), "{err}");
        }
        let err = refused("{% include 'body' %}", "Hello");
        assert_eq!((err.part, err.column), (Part::Subject, 4), "{err}");
    }

    #[test]
    fn the_sandbox_finds_no_template_even_if_an_include_got_through() {
        let env = MergeTemplate::parse("Hi {{ sender.name }}", "Hello").unwrap().env.unwrap();
        let err = env.render_str("{% include 'subject' %}", ()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TemplateNotFound);
    }

    #[test]
    fn a_name_outside_contact_and_sender_is_refused() {
        let err = refused("Hi", "Hello {{ secrets }}");
        assert_eq!((err.line, err.column, err.name.as_deref()), (1, 10, Some("secrets")), "{err}");
        assert!(err.message.starts_with("unknown name secrets"), "{err}");
    }

    #[test]
    fn attributes_of_a_field_are_refused() {
        let err = refused("Hi", "{{ contact.name.__class__ }}");
        assert_eq!((err.column, err.name.as_deref()), (4, Some("contact.name.__class__")), "{err}");
        let err = refused("Hi", "{{ contact.name.upper() }}");
        assert!(err.message.contains("use a filter, like contact.name | upper"), "{err}");
    }

    #[test]
    fn contact_and_sender_are_only_used_through_their_fields() {
        for body in ["{{ contact['name'] }}", "{% set c = contact %}{{ c.nope }}", "{{ sender | attr('x') }}"] {
            let err = refused("Hi", body);
            assert!(err.message.contains("needs a field"), "{body}: {err}");
        }
    }

    #[test]
    fn an_unknown_filter_or_test_is_refused_even_where_the_samples_do_not_go() {
        let err = refused("Hi", "{% if false %}\n{{ contact.name | trim | shout }}{% endif %}");
        assert_eq!((err.line, err.column, err.name.as_deref()), (2, 26, Some("shout")), "{err}");
        assert_eq!(err.message, "unknown filter shout");
        let err = refused("Hi", "{% if contact.name is not shouting %}x{% endif %}");
        assert_eq!((err.column, err.message.as_str()), (27, "unknown test shouting"), "{err}");
        let err = refused("Hi", "{% filter shout %}x{% endfilter %}");
        assert_eq!(err.message, "unknown filter shout");
    }

    #[test]
    fn a_control_character_in_the_subject_is_refused() {
        let err = refused("Hello\nWorld", "");
        assert_eq!((err.part, err.line, err.column, err.name.as_deref()), (Part::Subject, 1, 6, Some("U+000A")));
        assert_eq!(refused("a\tb {{ contact.name }}", "").name.as_deref(), Some("U+0009"));
    }

    #[test]
    fn every_field_renders() {
        let body = "{{ contact.first_name }}|{{ contact.last_name }}|{{ contact.name }}|{{ contact.email }}|\
                    {{ contact.company }}|{{ contact.phone }}|{{ contact.address }}|{{ contact.tags }}|\
                    {{ sender.name }}|{{ sender.email }}";
        let merged = render("For {{ contact.first_name }}", body, &full());
        assert_eq!(merged.subject, "For Ada");
        assert_eq!(
            merged.body,
            "Ada|Lovelace|Ada Lovelace|ada@example.com|Analytical Engines Ltd|+442079460000|\
             12 St James's Square\nLondon SW1Y 4LB|customer, newsletter|Grace Hopper|grace@example.com"
        );
    }

    #[test]
    fn missing_fields_render_as_empty_text() {
        let body = "[{{ contact.first_name }}|{{ contact.company | upper }}|{{ contact.tags }}|{{ none }}]\
                    {% if not contact.phone %} no phone{% endif %}";
        assert_eq!(render("Hi", body, &missing()).body, "[|||] no phone");
    }

    #[test]
    fn default_applies_to_a_missing_or_empty_field() {
        let template = MergeTemplate::parse(
            "Hi {{ contact.first_name | default(\"there\") }}",
            "{{ contact.tags | d('-', true) }}",
        )
        .unwrap();
        let mut fields = missing();
        assert_eq!(template.render(&fields).unwrap(), Merged { subject: "Hi there".into(), body: "-".into() });
        fields.contact.first_name = Some(String::new());
        assert_eq!(template.render(&fields).unwrap().subject, "Hi there");
        assert_eq!(
            template.render(&full()).unwrap(),
            Merged { subject: "Hi Ada".into(), body: "customer, newsletter".into() }
        );
    }

    #[test]
    fn a_line_break_in_a_field_becomes_a_space_in_the_subject_only() {
        let merged = render("To {{ contact.address }}", "{{ contact.address }}", &full());
        assert_eq!(merged.subject, "To 12 St James's Square London SW1Y 4LB");
        assert_eq!(merged.body, "12 St James's Square\nLondon SW1Y 4LB");
    }

    #[test]
    fn plain_text_is_returned_as_is() {
        let template = MergeTemplate::parse("Price: {50%} }}", "Hello {name}\n\n100% sure }} #}\n").unwrap();
        assert!(template.is_plain());
        assert_eq!(
            template.render(&full()).unwrap(),
            Merged { subject: "Price: {50%} }}".into(), body: "Hello {name}\n\n100% sure }} #}\n".into() }
        );
        assert!(!MergeTemplate::parse("Hi", "{# note #}").unwrap().is_plain());
    }

    #[test]
    fn block_tags_on_their_own_line_leave_no_blank_line_and_the_last_newline_stays() {
        let body =
            "Hello {{ contact.first_name }},\n  {% for tag in contact.tags %}\n- {{ tag }}\n  {% endfor %}\nBye\n";
        assert_eq!(render("Hi", body, &full()).body, "Hello Ada,\n- customer\n- newsletter\nBye\n");
    }

    #[test]
    fn builtin_filters_still_work() {
        let body = "{{ contact.name | upper }} {{ contact.name | lower }} {{ 'ada lovelace' | title }} \
                    [{{ '  x ' | trim }}] {{ contact.tags | join('+') }} {{ contact.tags | length }}";
        assert_eq!(
            render("Hi", body, &full()).body,
            "ADA LOVELACE ada lovelace Ada Lovelace [x] customer+newsletter 2"
        );
    }

    #[test]
    fn comments_and_raw_blocks_are_not_read_as_fields() {
        let merged =
            render("Hi", "{# {{ contact.nope }} #}{% raw %}{{ contact.nope }} {% include 'x' %}{% endraw %}", &full());
        assert_eq!(merged.body, "{{ contact.nope }} {% include 'x' %}");
    }

    #[test]
    fn a_field_value_is_never_read_as_template_code() {
        let mut fields = full();
        fields.contact.first_name = Some("{{ sender.email }}{% for a in 'x' * 9 %}".into());
        assert_eq!(
            render("{{ contact.first_name }}", "{{ contact.first_name }}", &fields).body,
            "{{ sender.email }}{% for a in 'x' * 9 %}"
        );
    }

    #[test]
    fn merge_fields_round_trip_through_json_and_tags_may_be_absent() {
        let fields = full();
        let json = serde_json::to_value(&fields).unwrap();
        assert_eq!(serde_json::from_value::<MergeFields>(json).unwrap(), fields);
        let old = serde_json::json!({
            "contact": {"name": "Ada", "email": "ada@example.com"},
            "sender": {"name": "Grace", "email": "grace@example.com"}
        });
        let parsed: MergeFields = serde_json::from_value(old).unwrap();
        assert_eq!((parsed.contact.first_name, parsed.contact.tags), (None, Vec::new()));
    }

    #[test]
    fn a_template_can_be_shared_between_delivery_workers() {
        fn shared<T: Send + Sync + Clone>() {}
        shared::<MergeTemplate>();
    }

    #[test]
    fn per_recipient_render_cost() {
        let mut body = String::from("Dear {{ contact.first_name | default('there') }},\n\n");
        while body.len() < 2000 {
            body.push_str("Thank you for your interest in our products; here is what is new this month. ");
        }
        body.push_str("\n\nYour account at {{ contact.company }} is looked after by {{ sender.name }}.\n");
        let template = MergeTemplate::parse("News for {{ contact.first_name | default('you') }}", &body).unwrap();
        let fields = full();
        let rounds = 2_000u32;
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(template.render(std::hint::black_box(&fields)).unwrap());
        }
        let each = started.elapsed() / rounds;
        let parse_started = Instant::now();
        MergeTemplate::parse("News for {{ contact.first_name | default('you') }}", &body).unwrap();
        println!(
            "per recipient: {each:?} for a {} byte body with 3 fields ({} build); parse with sample renders: {:?}",
            body.len(),
            if cfg!(debug_assertions) { "debug" } else { "release" },
            parse_started.elapsed()
        );
    }

    #[test]
    fn split_name_examples() {
        let split = |name: &str| {
            let (first, last) = split_name(name);
            (first.unwrap_or_default(), last.unwrap_or_default())
        };
        let pair = |first: &str, last: &str| (first.to_owned(), last.to_owned());
        assert_eq!(split("  Ada   King\tLovelace "), pair("Ada", "King Lovelace"));
        assert_eq!(split("Lovelace,  Ada King"), pair("Ada King", "Lovelace"));
        assert_eq!(split("Cher"), pair("Cher", ""));
        assert_eq!(split(", Ada Lovelace"), pair("Ada", "Lovelace"));
        assert_eq!(split("Lovelace ,"), pair("Lovelace", ""));
        assert_eq!(split_name(" ,\u{3000}\n"), (None, None));
        assert_eq!(split_name(""), (None, None));
        assert_eq!(split("Ada Lovelace, Countess, of Lovelace"), pair("Countess, of Lovelace", "Ada Lovelace"));
        let long = format!("{} {}", "é".repeat(150), "ü".repeat(99));
        assert_eq!(split(&long), pair(&"é".repeat(100), &"ü".repeat(99)));
        assert_eq!(split(&format!("A {} b", "x".repeat(99))).1, "x".repeat(99));
    }

    proptest! {
        #[test]
        fn text_without_braces_is_plain_and_renders_to_itself(subject in "[^{\\p{Cc}]{0,80}", body in "[^{]{0,400}") {
            let template = MergeTemplate::parse(&subject, &body).unwrap();
            prop_assert!(template.is_plain());
            prop_assert_eq!(template.render(&full()).unwrap(), Merged { subject, body });
        }

        #[test]
        fn text_around_fields_renders_literally(before in "[^{]{0,100}", after in "[^{]{0,100}") {
            let body = format!("{before}{{{{ contact.name }}}}{after}");
            prop_assert_eq!(render("Hi", &body, &full()).body, format!("{before}Ada Lovelace{after}"));
        }

        #[test]
        fn field_values_render_literally(value in "\\PC*|.*\\{\\{.*|.*\\{%.*", name in any::<String>()) {
            let mut fields = full();
            fields.contact.first_name = Some(value.clone());
            fields.contact.name = name.clone();
            fields.sender.name = value.clone();
            let template = MergeTemplate::parse("{{ contact.name }} {{ sender.name }}", "<{{ contact.first_name }}|{{ sender.name }}>").unwrap();
            let merged = template.render(&fields).unwrap();
            prop_assert_eq!(merged.body, format!("<{value}|{value}>"));
            prop_assert_eq!(merged.subject, crate::header_line(&format!("{name} {value}")).into_owned());
        }

        #[test]
        fn parse_never_panics_and_what_it_accepts_renders(
            subject in r#"[{}%#'". |a-z_+-]{0,30}"#,
            body in r#"([{}%#'". |()\[\]\n-]|contact|sender|name|tags|for|in|endfor|raw|endraw|if|endif|é|\x{85}){0,40}"#,
        ) {
            if let Ok(template) = MergeTemplate::parse(&subject, &body) {
                prop_assert!(template.render(&full()).is_ok());
                prop_assert!(template.render(&missing()).is_ok());
            }
        }

        #[test]
        fn split_name_parts_are_trimmed_and_reassemble_the_name(name in any::<String>()) {
            let (first, last) = split_name(&name);
            for part in [&first, &last].into_iter().flatten() {
                prop_assert!(!part.is_empty() && part.trim() == part && part.chars().count() <= NAME_PART_MAX_CHARS);
            }
            prop_assert!(first.is_some() || last.is_none());
            let normalised = normalise(&name);
            if !name.contains(',') && normalised.chars().count() <= NAME_PART_MAX_CHARS {
                let joined = [first, last].into_iter().flatten().collect::<Vec<_>>().join(" ");
                prop_assert_eq!(joined, normalised);
            }
        }

        #[test]
        fn split_name_never_panics_on_names_with_commas(name in "[ ,a-zé\\s\\p{Z}]{0,300}") {
            let (first, last) = split_name(&name);
            prop_assert!(first.is_some() || last.is_none());
        }
    }
}
