// Browser-test harness: a real stack per test file — an SMTP server (mailbox.py on aiosmtpd, whose
// mail the harness reads back from its directory), `borcelle serve` on a fresh PostgreSQL database, and a headless Chromium driven
// by playwright-core — plus helpers to create verified users, log a browser context in, and save
// screenshots (each main page a run visits, and the page of every failing test).
//
// Environment: BORCELLE_BIN (the built `borcelle` binary), CHROMIUM_BIN (default /usr/bin/chromium), BORCELLE_TEST_PG (default
// postgres://postgres@127.0.0.1:5432).

import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { test } from "node:test";

import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
export const SCREENSHOTS = join(here, "screenshots");
export const PASSWORD = "correct horse battery staple";
/** The domain of reply addresses when a stack runs with `{ inbound: true }`. */
export const INBOUND_DOMAIN = "in.borcelle.test";

const run = promisify(execFile);

const BORCELLE_BIN =
  process.env.BORCELLE_BIN ||
  join(process.env.CARGO_TARGET_DIR || join(root, "target"), "debug", "borcelle");
const MAILBOX_PY = join(here, "mailbox.py");
const CHROMIUM_BIN = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const PG = (process.env.BORCELLE_TEST_PG || "postgres://postgres@127.0.0.1:5432").replace(/\/$/, "");

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Polls `check` (an async boolean) until it holds, for at most `ms`. */
export async function waitUntil(what, check, ms = 15000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

/** A child process whose output is kept (shown when something fails) and that is stopped at the end. */
function start(name, command, args, env) {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const output = [];
  const keep = (chunk) => {
    output.push(chunk.toString());
    if (output.length > 400) output.shift();
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  let exited = null;
  child.on("exit", (code, signal) => {
    exited = { code, signal };
  });
  child.on("error", (err) => {
    exited = { code: -1, signal: null };
    output.push(`cannot start ${command}: ${err.message}\n`);
  });
  return {
    name,
    child,
    output: () => output.join(""),
    exited: () => exited,
    async stop() {
      if (exited) return;
      const gone = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const late = setTimeout(() => child.kill("SIGKILL"), 5000);
      await gone;
      clearTimeout(late);
    },
  };
}

/**
 * A mailbox (browser-tests/mailbox.py on aiosmtpd): a real SMTP server that keeps every message as
 * a JSON file in a directory of its own, written before it answers 250.
 */
async function startMail() {
  const smtpPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "borcelle-browser-mail-"));
  const proc = start("mailbox", "python3", [MAILBOX_PY, "127.0.0.1", String(smtpPort), dir]);
  await waitUntilListening("the mailbox", proc, smtpPort);
  const read = (name) => JSON.parse(readFileSync(join(dir, name), "utf8"));
  return {
    proc,
    smtpPort,
    /** Every message received so far, in order: { id, sender, recipients, subject, plain, source }. */
    async messages() {
      return readdirSync(dir).filter((name) => name.endsWith(".json")).sort().map(read);
    },
    /** The text part of a message listed by `messages()`. */
    async plain(id) {
      return (await this.messages()).find((m) => m.id === id)?.plain;
    },
    /** The raw source of a message listed by `messages()`. */
    async source(id) {
      return (await this.messages()).find((m) => m.id === id)?.source;
    },
    /** Waits for a message to `email` and returns its text part. */
    async textTo(email, ms = 15000) {
      let found;
      await waitUntil(`a mail to ${email}`, async () => {
        found = (await this.messages()).find((m) => m.recipients.includes(email));
        return Boolean(found);
      }, ms);
      return found.plain;
    },
    removeDir: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Waits until a child process accepts TCP connections on a port (or fails if it exited). */
async function waitUntilListening(what, proc, port) {
  await waitUntil(what, () => new Promise((resolve, reject) => {
    if (proc.exited()) {
      reject(new Error(`${proc.name} exited:\n${proc.output()}`));
      return;
    }
    const socket = createConnection(port, "127.0.0.1");
    socket.on("connect", () => { socket.destroy(); resolve(true); });
    socket.on("error", () => resolve(false));
  }));
}

/**
 * A bulk SMTP sink (Python's aiosmtpd, which scripts/test installs) that accepts any number of
 * messages per connection and keeps none: for sends whose mails the test does not read.
 */
async function startSink() {
  const smtpPort = await freePort();
  const proc = start("aiosmtpd", "python3", [
    "-m", "aiosmtpd", "-n", "-l", `127.0.0.1:${smtpPort}`, "-c", "aiosmtpd.handlers.Sink",
  ]);
  await waitUntilListening("aiosmtpd", proc, smtpPort);
  return {
    proc,
    smtpPort,
    async textTo() {
      throw new Error("this stack's SMTP server keeps no mail: start it with startStack() to read mail");
    },
  };
}

async function psql(sql) {
  await run("psql", [`${PG}/postgres`, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql]);
}

/**
 * Starts the mailbox and `borcelle serve` (fresh database, SMTP to the mailbox) and launches Chromium.
 * With `{ sink: true }` the SMTP server is a bulk sink that keeps nothing (for many mails).
 * Call `stack.close()` at the end (the test helpers below do).
 */
export async function startStack({ sink = false, inbound = false } = {}) {
  if (!existsSync(BORCELLE_BIN)) {
    throw new Error(`no borcelle binary at ${BORCELLE_BIN}: build it (cargo build --bin borcelle) or set BORCELLE_BIN`);
  }
  const mail = sink ? await startSink() : await startMail();
  const port = await freePort();
  const dbName = `borcelle_browser_${randomBytes(8).toString("hex")}`;
  const databaseUrl = `${PG}/${dbName}`;
  const baseUrl = `http://127.0.0.1:${port}`;
  const filesDir = mkdtempSync(join(tmpdir(), "borcelle-browser-files-"));
  const env = {
    DATABASE_URL: databaseUrl,
    BORCELLE_LISTEN: `127.0.0.1:${port}`,
    BORCELLE_PUBLIC_URL: baseUrl,
    BORCELLE_MAIL_TRANSPORT: "smtp",
    BORCELLE_SMTP_HOST: "127.0.0.1",
    BORCELLE_SMTP_PORT: String(mail.smtpPort),
    BORCELLE_SMTP_TLS: "none",
    BORCELLE_STORAGE_DIR: filesDir,
    RUST_LOG: process.env.RUST_LOG || "warn",
  };
  // Inbound mail: replies go to reply+<token>@in.borcelle.test, and serve's SMTP receiver takes them.
  const inboundPort = inbound ? await freePort() : null;
  if (inbound) {
    env.BORCELLE_INBOUND_DOMAIN = INBOUND_DOMAIN;
    env.BORCELLE_INBOUND_LISTEN = `127.0.0.1:${inboundPort}`;
  }
  const server = start("borcelle", BORCELLE_BIN, ["serve"], env);
  let browser;
  const stack = {
    baseUrl,
    mail,
    server,
    inboundPort,
    dbName,
    url: (path) => `${baseUrl}${path}`,

    /** A verified account made with `borcelle admin create-user`, as an operator would. */
    async createUser(email, { admin = false, name } = {}) {
      const args = ["admin", "create-user", "--email", email];
      if (name) args.push("--name", name);
      if (admin) args.push("--admin");
      await run(BORCELLE_BIN, args, {
        env: { ...process.env, DATABASE_URL: databaseUrl, BORCELLE_ADMIN_PASSWORD: PASSWORD, RUST_LOG: "warn" },
      });
    },

    /** A fresh browser context (its own cookies) and page; `options` go to the context. */
    async newPage(options = {}) {
      const context = await browser.newContext({ baseURL: baseUrl, viewport: { width: 1100, height: 800 }, ...options });
      context.setDefaultTimeout(10000);
      const page = await context.newPage();
      return page;
    },

    /** Logs a page's context in through the login form; lands on the home page. */
    async login(page, email, password = PASSWORD) {
      await page.goto("/login");
      await page.getByLabel("Email").fill(email);
      await page.getByLabel("Password").fill(password);
      await Promise.all([page.waitForURL(`${baseUrl}/`), page.getByRole("button", { name: "Log in" }).click()]);
    },

    /**
     * The JSON API (under /api/v1) with a page's session: its cookie and CSRF token. `post` and
     * `get` check the status and return the JSON.
     */
    async api(page) {
      const session = await (await page.request.get("/api/v1/auth/session")).json();
      const headers = { "X-CSRF-Token": session.csrf_token, Origin: baseUrl };
      return {
        async post(path, data, status) {
          const response = await page.request.post(`/api/v1${path}`, { headers, data });
          assert.equal(response.status(), status, `POST ${path}: ${await response.text()}`);
          return response.json();
        },
        async get(path) {
          const response = await page.request.get(`/api/v1${path}`);
          assert.equal(response.status(), 200, `GET ${path}: ${await response.text()}`);
          return response.json();
        },
      };
    },

    /**
     * Sends a raw RFC 5322 message to serve's SMTP receiver with a real SMTP client (Python's
     * smtplib), from `sender` to `recipient`; rejects with the server's answer when refused.
     */
    async answer(sender, recipient, message) {
      if (!inboundPort) throw new Error("start the stack with { inbound: true } to answer mail");
      const script = [
        "import smtplib, sys",
        "with smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30) as smtp:",
        "    smtp.sendmail(sys.argv[2], [sys.argv[3]], sys.stdin.buffer.read())",
      ].join("\n");
      await new Promise((resolve, reject) => {
        const child = execFile("python3", ["-c", script, String(inboundPort), sender, recipient], (err, _out, stderr) => {
          if (err) reject(new Error(`the reply was refused: ${stderr || err.message}`));
          else resolve();
        });
        child.stdin.end(message);
      });
    },

    /** The server's recent output, for failure messages. */
    logs: () => `--- borcelle serve ---\n${server.output()}\n--- smtp ---\n${mail.proc.output()}`,

    async close() {
      if (browser) await browser.close().catch(() => {});
      await server.stop();
      await mail.proc.stop();
      mail.removeDir?.();
      await psql(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).catch((err) => {
        process.stderr.write(`could not drop ${dbName}: ${err.message}\n`);
      });
      rmSync(filesDir, { recursive: true, force: true });
    },
  };
  try {
    await waitUntil("borcelle serve to be ready", async () => {
      if (server.exited()) throw new Error(`borcelle serve exited:\n${server.output()}`);
      return (await fetch(`${baseUrl}/readyz`)).ok;
    }, 30000);
    // playwright-core gives the browser a fresh user-data-dir of its own (and removes it on close);
    // it refuses a --user-data-dir argument.
    browser = await chromium.launch({
      executablePath: CHROMIUM_BIN,
      headless: true,
      args: [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
      ],
    });
  } catch (err) {
    await stack.close();
    err.message += `\n${stack.logs()}`;
    throw err;
  }
  return stack;
}

/** Saves a screenshot of a main page: browser-tests/screenshots/<name>.png. */
export async function snap(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

function slug(text) {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 80);
}

/**
 * A browser test: `body(t, ctx)` gets `ctx.stack` (shared by the file) and `ctx.page(name)`, which
 * opens a page in a fresh context. When the body fails, the last page opened is saved as
 * screenshots/failure-<test>.png and the servers' output is added to the error.
 */
export function browserTest(name, getStack, body) {
  test(name, async (t) => {
    const stack = getStack();
    const pages = [];
    const ctx = {
      stack,
      async page(options) {
        const page = await stack.newPage(options);
        pages.push(page);
        return page;
      },
    };
    try {
      await body(t, ctx);
    } catch (err) {
      const last = pages[pages.length - 1];
      if (last && !last.isClosed()) {
        mkdirSync(SCREENSHOTS, { recursive: true });
        const file = join(SCREENSHOTS, `failure-${slug(name)}.png`);
        await last.screenshot({ path: file, fullPage: true }).catch(() => {});
        err.message += `\n(screenshot: ${file}; page: ${last.url()})`;
      }
      err.message += `\n${stack.logs().slice(-6000)}`;
      throw err;
    } finally {
      for (const page of pages) await page.context().close().catch(() => {});
    }
  });
}
