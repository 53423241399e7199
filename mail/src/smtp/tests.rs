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
