//! The soak's mixed load: users browse (list pages of contacts, show one), create contacts, type
//! into the autocomplete and send messages, each connection at a steady pace, with every answer
//! checked and counted per class and per sampling window.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::server::Session;

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    List,
    Show,
    Autocomplete,
    Create,
    Send,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::List, Kind::Show, Kind::Autocomplete, Kind::Create, Kind::Send];

    pub fn name(self) -> &'static str {
        match self {
            Kind::List => "browse: list a page",
            Kind::Show => "browse: show a contact",
            Kind::Autocomplete => "autocomplete",
            Kind::Create => "create a contact",
            Kind::Send => "send a message (3 recipients)",
        }
    }

    /// The only status a correct answer has.
    fn expected(self) -> u16 {
        match self {
            Kind::Create => 201,
            Kind::Send => 202,
            _ => 200,
        }
    }

    /// Shares of the mix, in percent.
    pub fn weight(self) -> u64 {
        match self {
            Kind::List => 30,
            Kind::Show => 20,
            Kind::Autocomplete => 25,
            Kind::Create => 15,
            Kind::Send => 10,
        }
    }

    fn pick(roll: u64) -> Kind {
        let mut left = roll % 100;
        for kind in Kind::ALL {
            if left < kind.weight() {
                return kind;
            }
            left -= kind.weight();
        }
        Kind::List
    }
}

/// Answers of one class: how many were right, how many were not, and how long the right ones took.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub ok: u64,
    pub errors: u64,
    /// Microseconds.
    pub latencies: Vec<u32>,
}

impl Tally {
    /// The `p`-th percentile (0..=100) of the latencies, in milliseconds.
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        self.latencies.sort_unstable();
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        f64::from(self.latencies[rank.clamp(1, self.latencies.len()) - 1]) / 1000.0
    }
}

/// Every answer so far, per class, and the first few wrong ones in full.
#[derive(Debug, Default)]
pub struct Counts {
    pub per_kind: [Tally; 5],
    pub first_errors: Vec<String>,
}

impl Counts {
    pub fn requests(&self) -> u64 {
        self.per_kind.iter().map(|t| t.ok + t.errors).sum()
    }

    pub fn errors(&self) -> u64 {
        self.per_kind.iter().map(|t| t.errors).sum()
    }

    /// All latencies of the window together.
    pub fn all(&self) -> Tally {
        let mut all = Tally::default();
        for tally in &self.per_kind {
            all.ok += tally.ok;
            all.errors += tally.errors;
            all.latencies.extend_from_slice(&tally.latencies);
        }
        all
    }

    fn add(&mut self, kind: Kind, outcome: Result<Duration, String>) {
        let index = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        let tally = &mut self.per_kind[index];
        match outcome {
            Ok(took) => {
                tally.ok += 1;
                tally.latencies.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
            }
            Err(error) => {
                tally.errors += 1;
                if self.first_errors.len() < 5 {
                    self.first_errors.push(format!("{}: {error}", kind.name()));
                }
            }
        }
    }
}

/// Where the load's answers are counted: the whole run, and the current sampling window.
#[derive(Default)]
pub struct Recorder {
    pub total: Mutex<Counts>,
    pub window: Mutex<Counts>,
}

impl Recorder {
    async fn add(&self, kind: Kind, outcome: Result<Duration, String>) {
        self.window.lock().await.add(kind, outcome.clone());
        self.total.lock().await.add(kind, outcome);
    }

    /// The window's counts; starts a new window.
    pub async fn take_window(&self) -> Counts {
        std::mem::take(&mut *self.window.lock().await)
    }
}

/// A small deterministic generator (xorshift64*): the same run sends the same requests.
struct Dice(u64);

impl Dice {
    fn roll(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Word beginnings the autocomplete is asked for: names, a company, a typo.
const TYPED: [&str; 10] = ["mar", "joh", "andr", "ali", "garc", "smi", "acme", "lefeb", "tanka", "no"];

/// One connection of the load, until `stop`: one request every `every`, from `session`'s user,
/// whose contacts (some of them) are `contact_ids`.
pub async fn connection(
    session: Session,
    contact_ids: Arc<Vec<String>>,
    id: usize,
    every: Duration,
    stop: Arc<AtomicBool>,
    recorder: Arc<Recorder>,
) {
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut cursor, mut pages, mut created) = (None::<String>, 0, 0u64);
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let kind = Kind::pick(dice.roll());
        let any_contact = |dice: &mut Dice| {
            let at = (dice.roll() % contact_ids.len().max(1) as u64) as usize;
            contact_ids.get(at).cloned().unwrap_or_default()
        };
        let started = Instant::now();
        let answer = match kind {
            Kind::List => {
                let path = match &cursor {
                    Some(cursor) => format!("/api/v1/contacts?limit=50&cursor={cursor}"),
                    None => "/api/v1/contacts?limit=50".to_owned(),
                };
                session.get(&path).await
            }
            Kind::Show => session.get(&format!("/api/v1/contacts/{}", any_contact(&mut dice))).await,
            Kind::Autocomplete => {
                let typed = TYPED[(dice.roll() % TYPED.len() as u64) as usize];
                session.get(&format!("/api/v1/contacts/autocomplete?q={typed}")).await
            }
            Kind::Create => {
                created += 1;
                let body = json!({
                    "name": format!("Soak Contact {id}-{created}"),
                    "email": format!("soak.{id}.{created}@soak.example"),
                    "tags": ["soak"],
                });
                session.post("/api/v1/contacts", &body).await
            }
            Kind::Send => {
                // Three different contacts, next to each other in the list.
                let first = dice.roll() as usize;
                let to: Vec<&String> =
                    (0..3).filter_map(|i| contact_ids.get((first + i) % contact_ids.len().max(1))).collect();
                let body = json!({ "contact_ids": to, "subject": "Soak", "body": "Ten minutes of mixed load." });
                session.post("/api/v1/messages", &body).await
            }
        };
        let took = started.elapsed();
        let outcome = match answer {
            Ok((status, body)) if status == kind.expected() => {
                if kind == Kind::List {
                    // Browse up to ten pages, then start again at the first.
                    pages += 1;
                    cursor = body["next_cursor"].as_str().filter(|_| pages < 10).map(str::to_owned);
                    if cursor.is_none() {
                        pages = 0;
                    }
                }
                Ok(took)
            }
            Ok((status, body)) => Err(format!("{status} {}", short(&body))),
            Err(err) => Err(format!("{err:#}")),
        };
        recorder.add(kind, outcome).await;
    }
}

fn short(body: &Value) -> String {
    body.to_string().chars().take(200).collect()
}
