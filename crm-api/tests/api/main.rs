//! Integration tests of `borcelle`: accounts, sessions, CSRF, mail transports, bad input and the
//! binary itself, against real PostgreSQL, a real SMTP server process and a real S3 server process.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test harness fails loudly by design

mod helpers;

mod accounts;
mod api_tokens;
mod attachments;
mod bad_input;
mod binary;
mod consent;
mod contacts;
mod contacts_csv;
mod csrf;
mod dkim;
mod hardening;
mod inbound;
mod inbound_postfix;
mod mailjet;
mod mailjet_events;
mod messaging;
mod openapi;
mod pages_admin;
mod pages_contacts;
mod passwords;
mod processes;
mod queueing;
mod schedules;
mod sessions;
mod smtp;
mod status_parity;
mod throttling;
mod ws_resume;
