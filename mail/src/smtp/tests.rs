//! What the transport reports for a server's refusals, through lettre's real SMTP client against a
//! scripted server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;
use crate::{MailError, SmtpTls};

/// Which command the scripted server refuses, and with what reply (CRLF-separated lines).
#[derive(Clone, Copy)]
enum Refuse {
    Mail(&'static str),
    Rcpt(&'static str),
    Data(&'static str),
}

/// An SMTP server that accepts everything but the scripted refusal; serves one connection.
async fn scripted_server(refuse: Refuse) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"220 scripted ESMTP\r\n").await.unwrap();
        while let Ok(Some(line)) = lines.next_line().await {
            let command = line.to_ascii_uppercase();
            let reply = match refuse {
                Refuse::Mail(reply) if command.starts_with("MAIL") => reply,
                Refuse::Rcpt(reply) if command.starts_with("RCPT") => reply,
                _ if command.starts_with("EHLO") => "250-scripted\r\n250 ENHANCEDSTATUSCODES",
                _ if command.starts_with("DATA") => {
                    write.write_all(b"354 go ahead\r\n").await.unwrap();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line == "." {
                            break;
                        }
                    }
                    match refuse {
                        Refuse::Data(reply) => reply,
                        _ => "250 2.0.0 queued",
                    }
                }
                _ if command.starts_with("QUIT") => {
                    let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
                    return;
                }
                _ => "250 2.0.0 ok",
            };
            if write.write_all(format!("{reply}\r\n").as_bytes()).await.is_err() {
                return;
            }
        }
    });
    port
}

async fn send_to(refuse: Refuse) -> Result<Delivery, MailError> {
    let settings = SmtpSettings {
        host: "127.0.0.1".to_owned(),
        port: scripted_server(refuse).await,
        tls: SmtpTls::None,
        username: None,
        password: None,
        pool_size: 1,
        timeout: Duration::from_secs(5),
        ca_file: None,
    };
    let email = OutgoingEmail {
        from: Mailbox { name: None, email: "news@example.com".to_owned() },
        to: Mailbox { name: None, email: "ada@example.org".to_owned() },
        reply_to: None,
        subject: "Hello".to_owned(),
        text: "Hi".to_owned(),
        html: "<p>Hi</p>".to_owned(),
        message_id: "<1@example.com>".to_owned(),
        date: SystemTime::now(),
        attachments: Vec::new(),
        unsubscribe: None,
        ledger_id: None,
        envelope_from: None,
    };
    SmtpTransport::new(&settings, None).unwrap().send(&email).await
}

#[tokio::test]
async fn refusals_on_rcpt_mail_and_data_are_told_apart_by_their_codes() {
    let unknown = "550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 Please check it";
    let cases = [
        (Refuse::Rcpt("550 5.1.1 <ada@example.org>: Recipient address rejected: User unknown"), "rejected"),
        (Refuse::Rcpt(unknown), "rejected"),
        (Refuse::Data("550 5.2.1 Mailbox disabled"), "rejected"),
        (Refuse::Rcpt("554 5.7.1 <ada@example.org>: Recipient address rejected: Access denied"), "permanent"),
        (Refuse::Data("552 5.3.4 Message too big"), "permanent"),
        (Refuse::Mail("553 5.1.8 <news@example.com>: Sender address rejected: Domain not found"), "permanent"),
        (Refuse::Rcpt("451 4.3.0 Try again later"), "transient"),
        (Refuse::Data("421 4.7.0 Closing connection"), "transient"),
    ];
    for (refuse, expected) in cases {
        let outcome = match send_to(refuse).await {
            Ok(delivery) => format!("delivered: {}", delivery.provider_id),
            Err(MailError::Rejected(_)) => "rejected".to_owned(),
            Err(MailError::Permanent(_)) => "permanent".to_owned(),
            Err(MailError::Transient(_)) => "transient".to_owned(),
        };
        let reply = match refuse {
            Refuse::Mail(reply) | Refuse::Rcpt(reply) | Refuse::Data(reply) => reply,
        };
        assert_eq!(outcome, expected, "{reply}");
    }
    assert!(send_to(Refuse::Rcpt("250 2.1.5 ok")).await.is_ok(), "the script accepts otherwise");
}

/// What the pipelining server saw.
#[derive(Default)]
struct Seen {
    connections: std::sync::atomic::AtomicUsize,
    noops: std::sync::atomic::AtomicUsize,
    rsets: std::sync::atomic::AtomicUsize,
    /// The recipient of each message accepted, in order.
    delivered: std::sync::Mutex<Vec<String>>,
}

/// A server that offers PIPELINING and insists on it: after `MAIL` it answers nothing until the
/// `RCPT` and `DATA` of the same transaction have arrived, so a client that waits for the reply to
/// `MAIL` waits forever. It refuses recipients that start with `unknown` (then `DATA` with 554,
/// as RFC 2920 servers do with no valid recipient), and closes each connection, without a word,
/// after `close_after` messages.
async fn pipelining_server(close_after: usize) -> (u16, std::sync::Arc<Seen>) {
    use std::sync::atomic::Ordering::Relaxed;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(Seen::default());
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            state.connections.fetch_add(1, Relaxed);
            let seen = state.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 pipelining ESMTP\r\n").await.unwrap();
                let mut messages = 0;
                while let Ok(Some(line)) = lines.next_line().await {
                    let command = line.to_ascii_uppercase();
                    if command.starts_with("EHLO") {
                        write
                            .write_all(b"250-pipelining\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n")
                            .await
                            .unwrap();
                    } else if command.starts_with("MAIL") {
                        let mut replies = String::from("250 2.1.0 ok\r\n");
                        let mut recipients = Vec::new();
                        loop {
                            let next = lines.next_line().await.unwrap().unwrap();
                            if next.eq_ignore_ascii_case("DATA") {
                                break;
                            }
                            let to = next.split_once(':').unwrap().1.trim_matches(|c| c == '<' || c == '>').to_owned();
                            if to.starts_with("unknown") {
                                replies.push_str("550 5.1.1 User unknown\r\n");
                            } else {
                                replies.push_str("250 2.1.5 ok\r\n");
                                recipients.push(to);
                            }
                        }
                        if recipients.is_empty() {
                            replies.push_str("554 5.5.1 No valid recipients\r\n");
                            write.write_all(replies.as_bytes()).await.unwrap();
                            continue;
                        }
                        replies.push_str("354 go ahead\r\n");
                        write.write_all(replies.as_bytes()).await.unwrap();
                        while let Ok(Some(line)) = lines.next_line().await {
                            if line == "." {
                                break;
                            }
                        }
                        seen.delivered.lock().unwrap().extend(recipients);
                        write.write_all(b"250 2.0.0 queued\r\n").await.unwrap();
                        messages += 1;
                        if messages == close_after {
                            return;
                        }
                    } else if command.starts_with("NOOP") {
                        seen.noops.fetch_add(1, Relaxed);
                        write.write_all(b"250 2.0.0 ok\r\n").await.unwrap();
                    } else if command.starts_with("RSET") {
                        seen.rsets.fetch_add(1, Relaxed);
                        write.write_all(b"250 2.0.0 ok\r\n").await.unwrap();
                    } else if command.starts_with("QUIT") {
                        let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
                        return;
                    } else {
                        write.write_all(b"500 5.5.2 what?\r\n").await.unwrap();
                    }
                }
            });
        }
    });
    (port, seen)
}

fn transport_to(port: u16, pool_size: u32) -> SmtpTransport {
    let settings = SmtpSettings {
        host: "127.0.0.1".to_owned(),
        port,
        tls: SmtpTls::None,
        username: None,
        password: None,
        pool_size,
        timeout: Duration::from_secs(5),
        ca_file: None,
    };
    SmtpTransport::new(&settings, None).unwrap()
}

fn email_to(to: &str) -> OutgoingEmail {
    OutgoingEmail {
        from: Mailbox { name: None, email: "news@example.com".to_owned() },
        to: Mailbox { name: None, email: to.to_owned() },
        reply_to: None,
        subject: "Hello".to_owned(),
        text: "Hi".to_owned(),
        html: "<p>Hi</p>".to_owned(),
        message_id: format!("<{}@example.com>", uuid::Uuid::now_v7().simple()),
        date: SystemTime::now(),
        attachments: Vec::new(),
        unsubscribe: None,
        ledger_id: None,
        envelope_from: None,
    }
}

#[tokio::test]
async fn a_pipelining_server_gets_each_transaction_in_one_write_and_one_connection_serves_them_all() {
    let (port, seen) = pipelining_server(usize::MAX).await;
    let transport = transport_to(port, 1);
    for i in 0..200 {
        transport.send(&email_to(&format!("r{i}@example.org"))).await.unwrap();
    }
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(seen.delivered.lock().unwrap().len(), 200);
    assert_eq!(seen.connections.load(Relaxed), 1, "one pooled connection");
    assert_eq!(seen.noops.load(Relaxed), 0, "no NOOP before reusing a connection");
    assert_eq!(seen.rsets.load(Relaxed), 0);
}

#[tokio::test]
async fn a_refused_recipient_in_a_pipelined_group_fails_that_message_and_the_connection_goes_on() {
    let (port, seen) = pipelining_server(usize::MAX).await;
    let transport = transport_to(port, 1);
    transport.send(&email_to("first@example.org")).await.unwrap();
    let refused = transport.send(&email_to("unknown@example.org")).await;
    assert!(matches!(refused, Err(MailError::Rejected(_))), "{refused:?}");
    transport.send(&email_to("third@example.org")).await.unwrap();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(*seen.delivered.lock().unwrap(), ["first@example.org", "third@example.org"]);
    assert_eq!(seen.rsets.load(Relaxed), 1, "the refused transaction is reset");
    assert_eq!(seen.connections.load(Relaxed), 1, "and its connection reused");
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_costs_nothing_the_message_goes_on_a_new_one() {
    // The server hangs up after every message, as servers do with idle connections.
    let (port, seen) = pipelining_server(1).await;
    let transport = transport_to(port, 1);
    for i in 0..5 {
        // Let the close arrive before the next send picks the connection.
        tokio::time::sleep(Duration::from_millis(20)).await;
        transport.send(&email_to(&format!("r{i}@example.org"))).await.unwrap();
    }
    use std::sync::atomic::Ordering::Relaxed;
    let delivered = seen.delivered.lock().unwrap().clone();
    assert_eq!(delivered, (0..5).map(|i| format!("r{i}@example.org")).collect::<Vec<_>>(), "each once, in order");
    assert_eq!(seen.connections.load(Relaxed), 5);
}

#[tokio::test]
async fn concurrent_sends_share_the_pool_and_never_exceed_it() {
    let (port, seen) = pipelining_server(usize::MAX).await;
    let transport = std::sync::Arc::new(transport_to(port, 4));
    let sends = (0..400).map(|i| {
        let transport = transport.clone();
        async move { transport.send(&email_to(&format!("r{i}@example.org"))).await }
    });
    for result in futures::future::join_all(sends).await {
        result.unwrap();
    }
    use std::sync::atomic::Ordering::Relaxed;
    let mut delivered = seen.delivered.lock().unwrap().clone();
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), 400, "every message once");
    assert!(seen.connections.load(Relaxed) <= 4, "{} connections", seen.connections.load(Relaxed));
}

/// A server whose first connection goes silent after `MAIL` (a send stuck mid-transaction), whose
/// second greets with `421` (a server restarting), and whose later ones take mail. Returns the
/// port, a signal that the first `MAIL` arrived, and the recipients delivered.
async fn silent_then_restarting_server() -> (u16, tokio::sync::oneshot::Receiver<()>, std::sync::Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (mail_arrived, got_mail) = tokio::sync::oneshot::channel();
    let seen = std::sync::Arc::new(Seen::default());
    let state = seen.clone();
    tokio::spawn(async move {
        let mut mail_arrived = Some(mail_arrived);
        for connection in 1.. {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            if connection == 2 {
                let _ = write.write_all(b"421 4.3.2 restarting, try again later\r\n").await;
                continue;
            }
            let mut signal = if connection == 1 { mail_arrived.take() } else { None };
            let seen = state.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 restarting ESMTP\r\n").await.unwrap();
                let mut to = Vec::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let command = line.to_ascii_uppercase();
                    if command.starts_with("MAIL")
                        && let Some(signal) = signal.take()
                    {
                        // Silent from here on: the client waits for a reply that never comes.
                        let _ = signal.send(());
                        let _ = tokio::io::copy(&mut lines.into_inner(), &mut tokio::io::sink()).await;
                        return;
                    }
                    let reply = if command.starts_with("EHLO") {
                        "250-restarting\r\n250 ENHANCEDSTATUSCODES"
                    } else if command.starts_with("RCPT") {
                        to.push(line.split_once(':').unwrap().1.trim_matches(|c| c == '<' || c == '>').to_owned());
                        "250 2.1.5 ok"
                    } else if command.starts_with("DATA") {
                        write.write_all(b"354 go ahead\r\n").await.unwrap();
                        while let Ok(Some(line)) = lines.next_line().await {
                            if line == "." {
                                break;
                            }
                        }
                        seen.delivered.lock().unwrap().append(&mut to);
                        "250 2.0.0 queued"
                    } else {
                        "250 2.0.0 ok"
                    };
                    if write.write_all(format!("{reply}\r\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, got_mail, seen)
}

#[tokio::test]
async fn a_send_aborted_mid_transaction_leaves_no_connection_counted_so_a_restarting_server_costs_no_slot() {
    let (port, got_mail, seen) = silent_then_restarting_server().await;
    let transport = std::sync::Arc::new(transport_to(port, 1));

    // A send stuck waiting for the reply to MAIL is aborted, as the delivery engine aborts the
    // sends still running when its grace period is over.
    let stuck = tokio::spawn({
        let transport = transport.clone();
        async move { transport.send(&email_to("stuck@example.org")).await }
    });
    got_mail.await.unwrap();
    stuck.abort();
    assert!(stuck.await.unwrap_err().is_cancelled());

    // The next connection is refused with 421. With no connection open, that is the server being
    // unavailable, not a limit on connections: the pool keeps its one slot.
    let refused = transport.send(&email_to("refused@example.org")).await;
    assert!(matches!(&refused, Err(MailError::Transient(text)) if text.contains("421")), "{refused:?}");

    // So the next send goes at once (a slot given up would hold it for a minute).
    let next = tokio::time::timeout(Duration::from_secs(10), transport.send(&email_to("next@example.org"))).await;
    assert!(matches!(next, Ok(Ok(_))), "{next:?}");
    assert_eq!(*seen.delivered.lock().unwrap(), ["next@example.org"]);
}

/// What a server takes from the data of a transaction (RFC 5321 §4.5.2): lines up to the one that
/// is a lone dot, each without one leading dot; `None` when the data never ends.
fn received_data(wire: &str) -> Option<String> {
    let mut data = String::new();
    let mut rest = wire;
    loop {
        let (line, next) = rest.split_once("\r\n")?;
        if line == "." {
            return next.is_empty().then_some(data);
        }
        data.push_str(line.strip_prefix('.').unwrap_or(line));
        data.push_str("\r\n");
        rest = next;
    }
}

#[test]
fn lines_that_start_with_a_dot_are_stuffed_and_the_data_ends_once() {
    for (message, wire) in [
        ("Hi", "Hi\r\n.\r\n"),
        (".", "..\r\n.\r\n"),
        ("a\r\n.\r\nb", "a\r\n..\r\nb\r\n.\r\n"),
        ("a\r\n..b\r\n", "a\r\n...b\r\n\r\n.\r\n"),
        ("a\r.b\n.c", "a\r.b\n.c\r\n.\r\n"),
    ] {
        assert_eq!(pool::Content(message).to_string(), wire, "{message:?}");
    }
}

proptest::proptest! {
    /// Whatever the message (dots, CR, LF in any order, any text), the server takes exactly the
    /// message, the end of its last line added, and the data ends where the write ends.
    #[test]
    fn the_server_takes_back_exactly_the_message(message in "[.\r\na é]{0,40}|(\\.?[a-z]{0,3}\r\n){0,8}\\.?[a-z.]{0,3}") {
        let wire = pool::Content(&message).to_string();
        proptest::prop_assert_eq!(received_data(&wire), Some(format!("{message}\r\n")), "{:?}", wire);
    }
}
