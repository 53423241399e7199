//! Serve against PostgreSQL alone: the rows that put each phase beside pgbench's figure for the
//! same SQL, and the section of `BENCHMARKS.md` that says how pgbench ran and what it ran.

use std::fmt::Write as _;
use std::time::Duration;

use super::DbRun;
use crate::report::{Phase, Row, thousands};
use crate::workloads::AUTOCOMPLETE_CLASSES;

/// List answers per second must be at least this share of pgbench's transactions per second.
pub const LIST_TARGET: f64 = 0.7;
/// Creates per second, the same.
pub const CREATE_TARGET: f64 = 0.6;
/// Autocomplete's p99 may be at most this multiple of pgbench's.
pub const AUTOCOMPLETE_TARGET: f64 = 2.0;
const SECTION: &str = "## Serve against PostgreSQL alone (pgbench)";

/// pgbench's runs beside the create, list and autocomplete phases, or why each could not run.
pub struct DatabaseLimits {
    pub create: Result<DbRun, String>,
    pub list: Result<DbRun, String>,
    /// `None` in a run without the autocomplete phase.
    pub autocomplete: Option<Result<DbRun, String>>,
    /// Autocomplete's statements prepared once per connection, for comparison (not judged).
    pub autocomplete_prepared: Option<Result<DbRun, String>>,
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 { format!("{ms:.2} ms") } else { format!("{ms:.1} ms") }
}

fn errors(phase: &Phase, db: &DbRun) -> String {
    let mut out = String::new();
    if phase.stats.errors > 0 {
        let _ = write!(out, " · serve {} errors", phase.stats.errors);
    }
    if db.failed > 0 {
        let _ = write!(out, " · pgbench {} failed", db.failed);
    }
    out
}

/// A phase's rate as a share of pgbench's for its SQL.
fn share_row(phase: &Phase, db: &Result<DbRun, String>, target: f64) -> Row {
    let metric =
        format!("{}: serve / PostgreSQL alone (pgbench, same SQL, {} connections)", phase.name, phase.spec.connections);
    let target_text = format!("≥ {:.0} %", target * 100.0);
    match db {
        Ok(db) => {
            let share = phase.stats.per_sec() / db.per_sec().max(1e-9);
            Row {
                metric,
                target: target_text,
                measured: format!(
                    "{:.0} % ({} req/s vs {} tx/s){}",
                    share * 100.0,
                    thousands(phase.stats.per_sec()),
                    thousands(db.per_sec()),
                    errors(phase, db)
                ),
                pass: share >= target && phase.stats.errors == 0 && db.failed == 0 && db.ok > 0,
            }
        }
        Err(error) => not_measured(metric, target_text, error),
    }
}

fn not_measured(metric: String, target: String, error: &str) -> Row {
    let error = error.replace('\n', " ").replace('|', "\\|");
    Row { metric, target, measured: format!("not measured: {error}"), pass: false }
}

impl DatabaseLimits {
    pub fn create_row(&self, create: &Phase) -> Row {
        share_row(create, &self.create, CREATE_TARGET)
    }

    pub fn list_row(&self, list: &Phase) -> Row {
        share_row(list, &self.list, LIST_TARGET)
    }

    /// Autocomplete's p99 as a multiple of pgbench's (the statements planned at every call, as serve runs them).
    pub fn autocomplete_row(&self, autocomplete: &Phase) -> Option<Row> {
        let db = self.autocomplete.as_ref()?;
        let metric = format!(
            "autocomplete p99: serve / PostgreSQL alone (pgbench, same SQL, {} connections)",
            autocomplete.spec.connections
        );
        let target = format!("≤ {AUTOCOMPLETE_TARGET:.0}×");
        let db = match db {
            Ok(db) => db,
            Err(error) => return Some(not_measured(metric, target, error)),
        };
        let (serve, alone) = (autocomplete.stats.percentile(99.0), db.percentile(99.0));
        let multiple = serve.as_secs_f64() / alone.as_secs_f64().max(1e-9);
        let prepared = match &self.autocomplete_prepared {
            Some(Ok(prepared)) => format!(
                "; {:.1}× pgbench's prepared statements' {}",
                serve.as_secs_f64() / prepared.percentile(99.0).as_secs_f64().max(1e-9),
                ms(prepared.percentile(99.0))
            ),
            _ => String::new(),
        };
        Some(Row {
            metric,
            target,
            measured: format!(
                "{multiple:.1}× (p99 {} vs {}; p50 {} vs {}{prepared}){}",
                ms(serve),
                ms(alone),
                ms(autocomplete.stats.percentile(50.0)),
                ms(db.percentile(50.0)),
                errors(autocomplete, db)
            ),
            pass: multiple <= AUTOCOMPLETE_TARGET
                && autocomplete.stats.errors == 0
                && autocomplete.stats.ok > 0
                && db.failed == 0
                && db.ok > 0,
        })
    }

    fn runs(&self) -> Vec<&Result<DbRun, String>> {
        let mut runs = vec![&self.create, &self.list];
        runs.extend(self.autocomplete.as_ref());
        runs.extend(self.autocomplete_prepared.as_ref());
        runs
    }

    /// The `BENCHMARKS.md` section: how pgbench ran, its figures, and its scripts.
    pub fn markdown(&self) -> String {
        let mut md = format!("{SECTION}\n\n");
        md.push_str(
            "Beside the create, list and autocomplete phases, pgbench (PostgreSQL's own load generator, C, on the \
             same machine) runs the statements serve runs for that request, against the same database straight \
             after the phase, with as many connections as the phase had HTTP connections (pgbench's threads in \
             brackets), the same warm-up and the same measured window: each transaction's latency and end come \
             from pgbench's per-transaction log (`--log`), so the rate and the percentiles count the transactions \
             that started after the warm-up and ended within the window, as the phases count requests. pgbench's \
             own summary (over the whole run, warm-up included) is shown too. Each script is the statement text \
             serve sends, copied from `borcelle-store`, with serve's parameters as pgbench variables (`-D`; a \
             `::uuid` or `::text` cast where PostgreSQL could not infer the type that serve declares); \"seen\" \
             says whether that exact text was among the statements serve's database connections had last run when \
             the phase ended (`pg_stat_activity`, read before the bench itself runs any of them), which shows that \
             the copy is still serve's SQL (the list's first page is one statement in 2,000 with 100,000 contacts, \
             so it is seldom the last one a connection ran).\n\n\
             - **list:** `GET /api/v1/contacts?limit=50` runs one statement, outside a transaction (no count: the \
             API's page has no total): the first page, then each next page from the cursor, and the first page \
             again after the last, prepared as sqlx prepares it. pgbench keeps the last row of the 51 it reads \
             (`\\aset`), so its pages are 51 rows apart instead of 50; every statement is still one read of 51 \
             rows after a key.\n\
             - **create:** `POST /api/v1/contacts` runs one statement, the insert with its `RETURNING`, outside a \
             transaction; its triggers write the owner's counter and the words of autocomplete, for pgbench as for \
             serve. pgbench inserts for the same owner as the create phase the same names, phone, company and \
             tags, with emails `created.pgbench.<client>.<n>@bench.example`, which are deleted after the run, \
             before the seed and its `VACUUM (ANALYZE)`, so later phases do not see them. The id, which serve \
             makes in Rust (UUIDv7) and binds, is made by the statement (a UUIDv7 too), and the name and email \
             from pgbench's client number and counter, since pgbench variables hold no text of their own.\n\
             - **autocomplete:** one script per input of the phase (48), equally weighted as the phase sends them; \
             the second statement is in the script of the inputs for which serve runs it (fewer than ten contacts \
             match the prefix, and three characters or more), found by running the first statement for each input \
             before pgbench. Serve does not keep these statements prepared (a cached generic plan cannot turn a \
             LIKE pattern it has not seen into an index range), so the judged run parses and plans at every call \
             (`-M extended`), as serve's do; a run with the statements prepared (`-M prepared`) is shown for \
             comparison, not judged.\n\n\
             Serve reaches PostgreSQL through at most 16 pooled connections, and pages of contacts through 8 of \
             their own; pgbench through one per client.\n\n",
        );
        let _ = writeln!(
            md,
            "| statements | mode | connections (threads) | warm-up + window | transactions | failed | tx/s | p50 | p99 | \
             pgbench's summary | CPU: pgbench / PostgreSQL | machine busy | load at start | serve's SQL seen |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for run in self.runs() {
            let Ok(run) = run else { continue };
            let summary = match (run.reported_tps, run.reported_latency_ms) {
                (Some(tps), Some(latency)) => format!("{} tps, latency average {latency:.3} ms", thousands(tps)),
                _ => "—".to_owned(),
            };
            let seen: Vec<String> =
                run.seen.iter().map(|(label, seen)| format!("{label}: {}", if *seen { "yes" } else { "no" })).collect();
            let _ = writeln!(
                md,
                "| {} | -M {} | {} ({}) | {} s + {} s | {} | {} | {} | {} | {} | {summary} | {:.0} % / {:.0} % | {:.0} % | \
                 {:.2} | {} |",
                run.work.what,
                run.work.mode.flag(),
                run.load.connections,
                run.threads,
                run.load.warmup.as_secs(),
                run.load.duration.as_secs(),
                run.ok,
                run.failed,
                thousands(run.per_sec()),
                ms(run.percentile(50.0)),
                ms(run.percentile(99.0)),
                run.cpu.server_pct,
                run.cpu.postgres_pct,
                run.cpu.machine_pct,
                run.cpu.load_at_start,
                seen.join(", ")
            );
        }
        for (what, run) in [("create", &self.create), ("list", &self.list)] {
            if let Err(error) = run {
                let _ = writeln!(md, "\nThe {what} comparison was not measured: {error}");
            }
        }
        if let Some(Err(error)) = &self.autocomplete {
            let _ = writeln!(md, "\nThe autocomplete comparison was not measured: {error}");
        }
        if let Some(Ok(run)) = &self.autocomplete {
            let _ = writeln!(md, "\n### pgbench's autocomplete by kind of input (`-M {}`)\n", run.work.mode.flag());
            let _ = writeln!(md, "| input | transactions | p50 | p99 |\n|---|---|---|---|");
            for (i, (kind, _)) in AUTOCOMPLETE_CLASSES.iter().enumerate() {
                let _ = writeln!(
                    md,
                    "| {kind} | {} | {} | {} |",
                    run.class_count(i),
                    ms(run.class_percentile(i, 50.0)),
                    ms(run.class_percentile(i, 99.0))
                );
            }
        }
        md.push_str("\n### The scripts\n");
        for run in [&self.create, &self.list].into_iter().chain(self.autocomplete.as_ref()) {
            let Ok(run) = run else { continue };
            let variables: Vec<String> = if run.work.scripts.len() == 1 {
                run.work.variables.iter().map(|(k, v)| format!("`{k}={v}`")).collect()
            } else {
                // One set per input: as typed, and its patterns (LIKE-escaped).
                let owner = run.work.variables.iter().find(|(k, _)| k == "owner").map_or("", |(_, v)| v.as_str());
                vec![format!(
                    "`owner={owner}`, and for input N `typedN` (as typed), `prefixN` (`typed%`) and, with the second \
                     statement, `infixN` (`%typed%`)"
                )]
            };
            let _ = writeln!(
                md,
                "\n{}: `pgbench -n -M {} -c {} -j {} -T {} --log`, {} script{}; `-D` {}\n",
                run.work.what,
                run.work.mode.flag(),
                run.load.connections,
                run.threads,
                (run.load.warmup + run.load.duration).as_secs() + 1,
                run.work.scripts.len(),
                if run.work.scripts.len() == 1 { "" } else { "s, each `-f …@1`" },
                variables.join(" ")
            );
            // The autocomplete scripts differ only in their variables' numbers: one of each shape.
            let one_statement = run.work.scripts.iter().find(|s| !s.two_statements());
            let two_statements = run.work.scripts.iter().find(|s| s.two_statements());
            let shown: Vec<&super::Script> = if run.work.scripts.len() == 1 {
                run.work.scripts.iter().collect()
            } else {
                one_statement.into_iter().chain(two_statements).collect()
            };
            for script in shown {
                let _ = writeln!(md, "```\n-- {}\n{}```", script.name, script.text);
            }
            if run.work.scripts.len() > 1 {
                let names: Vec<&str> =
                    run.work.scripts.iter().filter(|s| s.two_statements()).map(|s| s.name.as_str()).collect();
                let _ = writeln!(
                    md,
                    "\nThe others are the same with their own variables; the second statement is in {}.",
                    names.join(", ")
                );
            }
        }
        md
    }

    /// Each run in a line, for the terminal.
    pub fn text(&self) -> String {
        self.runs().into_iter().map(line).collect()
    }
}

/// A pgbench run in a line, for the terminal.
pub fn line(run: &Result<DbRun, String>) -> String {
    match run {
        Ok(run) => format!(
            "    pgbench {} (-M {}): {} tx/s, p50 {}, p99 {}, {} failed; CPU pgbench {:.0} %, PostgreSQL {:.0} %, \
             machine {:.0} %; serve's SQL seen: {}\n",
            run.work.what,
            run.work.mode.flag(),
            thousands(run.per_sec()),
            ms(run.percentile(50.0)),
            ms(run.percentile(99.0)),
            run.failed,
            run.cpu.server_pct,
            run.cpu.postgres_pct,
            run.cpu.machine_pct,
            run.seen
                .iter()
                .map(|(label, seen)| format!("{label} {}", if *seen { "yes" } else { "no" }))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(error) => format!("    pgbench: not measured: {error}\n"),
    }
}
