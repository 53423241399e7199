// (9) The contacts table and the consistency rules (issue #16): bulk actions on selected rows,
//     each confirmed by a page that names the count before anything changes; emailing selected
//     contacts; pages over keyset cursors (first, previous, next, last, with the total); a form
//     with three wrong fields showing the three errors at once; every delete and cancel asked
//     first and noticed after; one time format in the account's zone or else the browser's.

import assert from "node:assert/strict";
import { after, before } from "node:test";

import { PASSWORD, browserTest, snap, startStack, waitUntil } from "./harness.mjs";

let stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack?.close(); });

/** Creates `n` contacts named `${prefix} 01`…, returns them in name order. */
async function contacts(client, prefix, n, extra = {}) {
  const made = [];
  for (let i = 1; i <= n; i++) {
    const number = String(i).padStart(2, "0");
    made.push(await client.post("/contacts", {
      name: `${prefix} ${number}`, email: `${prefix.toLowerCase()}${number}@example.com`, ...extra,
    }, 201));
  }
  return made;
}

browserTest("bulk-tag 30 selected contacts after a confirmation with the count", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("tagger@example.com", { name: "Tia Tagger" });
    const page = await open();
    await stack.login(page, "tagger@example.com");
    const client = await stack.api(page);
    const made = await contacts(client, "Member", 35);

    await page.goto("/contacts?per=50");
    assert.equal((await page.locator("#total").textContent()).trim(), "35");
    const boxes = page.locator('tbody input[type=checkbox][name="id"]');
    assert.equal(await boxes.count(), 35);
    for (let i = 0; i < 30; i++) await boxes.nth(i).check();
    await page.getByRole("status").filter({ hasText: "30 selected" }).waitFor();
    await page.getByLabel("Action").selectOption("tag");
    await page.locator("#bulk-label").fill("VIP");
    await snap(page, "contacts-table-selected");
    await page.getByRole("button", { name: "Apply to 30 selected…" }).click();

    // Nothing changed yet: the confirmation names the count.
    await page.getByRole("heading", { level: 1, name: "Add the tag “vip” to 30 contacts?" }).waitFor();
    assert.equal((await client.get("/contacts?tag=vip&limit=100")).contacts.length, 0, "nothing tagged before the confirmation");
    await snap(page, "contacts-bulk-confirm");
    await page.getByRole("button", { name: "Tag 30 contacts" }).click();
    await page.getByRole("status").filter({ hasText: "Tag “vip” added to 30 contacts." }).waitFor();

    const tagged = (await client.get("/contacts?tag=vip&limit=100")).contacts.map((c) => c.name).sort();
    assert.deepEqual(tagged, made.slice(0, 30).map((c) => c.name), "exactly the 30 ticked contacts carry the tag");

    // The tag filter is in the URL, with its count; removing the tag from all matching empties it.
    await page.goto("/contacts?tag=vip");
    assert.equal((await page.locator("#total").textContent()).trim(), "30");
    await page.getByLabel("Action").selectOption("untag");
    await page.locator("#bulk-label").fill("vip");
    await page.getByRole("button", { name: "Apply to all 30 matching…" }).click();
    await page.getByRole("heading", { level: 1, name: "Remove the tag “vip” from 30 contacts?" }).waitFor();
    await page.getByRole("button", { name: "Untag 30 contacts" }).click();
    await page.getByRole("status").filter({ hasText: "Tag “vip” removed from 30 contacts." }).waitFor();
    assert.equal((await client.get("/contacts?tag=vip&limit=100")).contacts.length, 0);

    // Deleting the 5 last after their confirmation.
    await page.goto("/contacts?per=50");
    for (let i = 30; i < 35; i++) await boxes.nth(i).check();
    await page.getByLabel("Action").selectOption("delete");
    await page.getByRole("button", { name: "Apply to 5 selected…" }).click();
    await page.getByRole("heading", { level: 1, name: "Delete 5 contacts?" }).waitFor();
    await page.getByRole("button", { name: "Delete 5 contacts" }).click();
    await page.getByRole("status").filter({ hasText: "5 contacts deleted." }).waitFor();
    assert.equal((await page.locator("#total").textContent()).trim(), "30");
  });

browserTest("email selected contacts after a confirmation with the count", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("mailer@example.com", { name: "Max Mailer" });
    const page = await open();
    await stack.login(page, "mailer@example.com");
    const client = await stack.api(page);
    const made = await contacts(client, "Reader", 4);

    await page.goto("/contacts");
    const boxes = page.locator('tbody input[type=checkbox][name="id"]');
    for (let i = 0; i < 3; i++) await boxes.nth(i).check();
    await page.getByLabel("Action").selectOption("email");
    await page.getByRole("button", { name: "Apply to 3 selected…" }).click();

    await page.getByRole("heading", { level: 1, name: "Email 3 contacts" }).waitFor();
    await page.getByLabel("Subject").fill("Hello {{ contact.first_name }}");
    await page.getByLabel("Message", { exact: true }).fill("Dear {{ contact.name }}, see you soon.");
    await page.getByRole("button", { name: "Review" }).click();
    await page.getByRole("heading", { level: 1, name: "Send “Hello {{ contact.first_name }}” to 3 contacts?" }).waitFor();
    await snap(page, "contacts-email-confirm");
    assert.equal((await stack.mail.messages()).filter((m) => m.recipients.some((r) => r.startsWith("reader"))).length, 0,
      "nothing is sent before the confirmation");
    await page.getByRole("button", { name: "Send to 3 contacts" }).click();
    // The page's notice (a toast saying the send finished may show beside it).
    await page.locator(".notice[role=status]").filter({ hasText: "Sending “Hello {{ contact.first_name }}” to 3 contacts" }).waitFor();

    let mail = [];
    await waitUntil("three personalised mails", async () => {
      mail = (await stack.mail.messages()).filter((m) => m.recipients.some((r) => r.startsWith("reader")));
      return mail.length >= 3;
    }, 30000);
    const subjects = mail.map((m) => [m.recipients[0], m.subject]).sort();
    assert.deepEqual(subjects, [
      ["reader01@example.com", "Hello Reader"],
      ["reader02@example.com", "Hello Reader"],
      ["reader03@example.com", "Hello Reader"],
    ]);
    const fourth = mail.find((m) => m.recipients.includes(made[3].email));
    assert.equal(fourth, undefined, "the contact not ticked gets nothing");
    assert.ok(mail.find((m) => m.recipients.includes("reader02@example.com")).plain.startsWith("Dear Reader 02,"));
  });

browserTest("the table pages forward and back with the total, first and last", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("pager@example.com", { name: "Pat Pager" });
    const page = await open();
    await stack.login(page, "pager@example.com");
    const made = await contacts(await stack.api(page), "Row", 60);
    const names = async () => page.locator("tbody a.name").allTextContents();
    const pageOf = async () => (await page.locator(".page-of").textContent()).trim();

    await page.goto("/contacts");
    assert.equal(await pageOf(), "1–25 of 60 · page 1 of 3");
    assert.deepEqual(await names(), made.slice(0, 25).map((c) => c.name));
    await page.getByRole("link", { name: "Last" }).click();
    assert.equal(await pageOf(), "51–60 of 60 · page 3 of 3");
    assert.deepEqual(await names(), made.slice(50).map((c) => c.name));
    await page.getByRole("link", { name: "Previous" }).click();
    assert.equal(await pageOf(), "26–50 of 60 · page 2 of 3");
    assert.deepEqual(await names(), made.slice(25, 50).map((c) => c.name));
    await page.getByRole("link", { name: "Next" }).click();
    assert.deepEqual(await names(), made.slice(50).map((c) => c.name));
    await page.getByRole("link", { name: "First" }).click();
    assert.equal(await pageOf(), "1–25 of 60 · page 1 of 3");

    // Sorting by the Name heading, then again for Z to A.
    await page.getByRole("link", { name: "Name", exact: true }).click();
    assert.equal(await page.locator('th[aria-sort="descending"]').count(), 1);
    assert.equal((await names())[0], "Row 60");
    await snap(page, "contacts-table");
  });

browserTest("a contact form with three wrong fields shows the three errors at once", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("typo@example.com", { name: "Ty Po" });
    const page = await open();
    await stack.login(page, "typo@example.com");
    await page.goto("/contacts/new");
    await page.getByLabel("Name", { exact: true }).fill("   ");
    await page.getByLabel("Email").fill("not an address");
    await page.getByLabel("Phone").fill("12 34");
    await page.getByLabel("Company").fill("Kept Ltd");
    await page.getByRole("button", { name: "Create contact" }).click();

    await page.getByRole("alert").filter({ hasText: "3 fields need fixing" }).waitFor();
    for (const field of ["name", "email", "phone"]) {
      const error = page.locator(`#${field}-error`);
      assert.ok((await error.textContent()).trim().length > 0, `an error under ${field}`);
      assert.equal(await page.locator(`#${field}`).getAttribute("aria-invalid"), "true");
    }
    assert.equal(await page.locator("p.error").count(), 3, "three errors, no more");
    assert.equal(await page.getByLabel("Company").inputValue(), "Kept Ltd", "what was typed stays");
    await snap(page, "contact-three-errors");
  });

browserTest("every delete and cancel asks first, and says when it is done", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("tidy@example.com", { name: "Tid Y", admin: true });
    const page = await open();
    await stack.login(page, "tidy@example.com");
    const client = await stack.api(page);
    await client.post("/contacts", { name: "Home Body", email: "home@example.com", tags: ["home"] }, 201);
    const note = await client.post("/notes", { title: "Old news", body: "Gone soon." }, 201);
    await client.post("/reminders", {
      name: "weekly-call",
      spec: { recipients: { tag: "home" }, subject: "Weekly call", body: "Tomorrow at ten.", schedule: "0 9 * * 1", timeZone: "Europe/Paris" },
    }, 201);
    await client.post("/admin/broadcasts", {
      name: "maintenance",
      spec: { title: "Maintenance", message: "Read-only tonight.", severity: "warning", at: new Date(Date.now() + 86400000).toISOString() },
    }, 201);

    // Each dialog is answered in turn: the first "no" changes nothing, the next "yes" goes on.
    const questions = [];
    let answer = false;
    page.on("dialog", async (dialog) => {
      questions.push(dialog.message());
      if (answer) await dialog.accept(); else await dialog.dismiss();
    });

    /** Clicks `button`: refused once (nothing happens), then accepted; waits for `notice`. */
    async function confirmed(button, question, notice) {
      answer = false;
      await button.click();
      await waitUntil(`the question ${question}`, async () => questions.at(-1)?.includes(question));
      assert.equal(await button.isVisible(), true, "a refused confirmation leaves the page as it was");
      answer = true;
      await Promise.all([page.waitForEvent("load"), button.click()]);
      await page.getByRole("status").filter({ hasText: notice }).waitFor();
    }

    await page.goto(`/notes/${note.id}`);
    await confirmed(page.getByRole("button", { name: "Delete this note" }), "Delete the note “Old news”", "Note deleted.");
    assert.equal((await client.get("/notes")).notes.length, 0);

    await page.goto("/reminders");
    await confirmed(page.getByRole("button", { name: "Delete weekly-call" }), "Delete the reminder “weekly-call”", "Reminder weekly-call deleted.");

    await page.goto("/admin/broadcasts");
    await confirmed(page.getByRole("button", { name: "Cancel broadcast maintenance" }), "Cancel the broadcast “maintenance”",
      "Broadcast maintenance cancelled");

    await page.goto("/account");
    await page.getByLabel("Token name").fill("script");
    await page.getByRole("button", { name: "Create token" }).click();
    await page.goto("/account");
    await confirmed(page.getByRole("button", { name: "Revoke" }), "Revoke the token “script”", "Token revoked");
    assert.equal(questions.length, 8, questions.join("\n"));
  });

browserTest("times show in one format, in the browser's zone until the account sets one, exact on hover", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("zoned@example.com", { name: "Zoe Zoned" });
    const page = await open({ timezoneId: "America/New_York" });
    await stack.login(page, "zoned@example.com");
    const { id } = await (await stack.api(page)).post("/contacts", { name: "Tim Zone", email: "tim@example.com" }, 201);

    const added = page.locator("dl.meta time").first();
    /** The contact's "Added" time as shown and as hovered, and what it should read in `zone`. */
    async function shown(zone) {
      await page.goto(`/contacts/${id}`);
      const instant = await added.getAttribute("datetime");
      const expected = await page.evaluate(([at, tz]) => new Intl.DateTimeFormat(undefined, {
        timeZone: tz, weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
      }).format(new Date(at)), [instant, zone]);
      return { text: (await added.textContent()).trim(), title: await added.getAttribute("title"), expected };
    }

    let seen = await shown("America/New_York");
    assert.equal(seen.text, seen.expected, "the browser's zone by default");
    assert.match(seen.title, /Eastern (Standard|Daylight) Time/, "the exact time on hover names the zone");
    assert.match(seen.title, /\d{1,2}:\d{2}:\d{2}/, "with seconds");

    // A zone that does not exist is refused, saying what to type.
    await page.goto("/account");
    await page.getByLabel("Show times in").fill("Mars/Olympus");
    await page.getByRole("button", { name: "Save time zone" }).click();
    await page.locator("#time_zone-error").filter({ hasText: "is not a time zone" }).waitFor();

    await page.getByLabel("Show times in").fill("Asia/Tokyo");
    await page.getByRole("button", { name: "Save time zone" }).click();
    await page.getByRole("status").filter({ hasText: "Times now show in Asia/Tokyo." }).waitFor();
    seen = await shown("Asia/Tokyo");
    assert.equal(seen.text, seen.expected, "the account's zone wins over the browser's");
    assert.match(seen.title, /Japan Standard Time/);

    // The table and the timeline use the same format.
    await page.goto("/contacts");
    const updated = page.locator("tbody time").first();
    const instant = await updated.getAttribute("datetime");
    const expected = await page.evaluate((at) => new Intl.DateTimeFormat(undefined, {
      timeZone: "Asia/Tokyo", weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
    }).format(new Date(at)), instant);
    assert.equal((await updated.textContent()).trim(), expected);

    // Emptied: the browser's again.
    await page.goto("/account");
    await page.getByLabel("Show times in").fill("");
    await page.getByRole("button", { name: "Save time zone" }).click();
    await page.getByRole("status").filter({ hasText: "this browser's time zone" }).waitFor();
    seen = await shown("America/New_York");
    assert.equal(seen.text, seen.expected);
  });

browserTest("the message history lists every send, filtered and paged, with filters in the URL", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("historian@example.com", { name: "Hal Historian" });
    const page = await open();
    await stack.login(page, "historian@example.com");
    const client = await stack.api(page);
    await contacts(client, "Crowd", 55, { tags: ["crowd"] });
    await client.post("/messages", { tag: "crowd", subject: "Hello {{ contact.first_name }}", body: "Hi." }, 202);

    await page.goto("/messages");
    const rows = page.locator("tbody tr");
    assert.equal(await rows.count(), 50, "a page of 50, newest first");
    assert.match(await rows.first().textContent(), /Hello Crowd/, "the subject as its recipient got it");
    await page.getByRole("link", { name: "Older" }).click();
    assert.equal(await rows.count(), 5);
    await page.getByRole("link", { name: "Newest" }).click();
    assert.equal(await rows.count(), 50);

    await page.getByLabel("Recipient").fill("crowd07@");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL(/to=crowd07%40/);
    assert.equal(await rows.count(), 1);
    assert.match(await rows.first().textContent(), /crowd07@example\.com/);
    // The row links to the contact's conversation.
    await rows.first().getByRole("link").click();
    await page.waitForURL(/\/contacts\/[0-9a-f-]{36}#timeline$/);

    await page.goto("/messages?kind=note");
    await page.getByText("No messages here.").waitFor();
    assert.equal(await page.getByLabel("Sent as").inputValue(), "note", "the filter shows as chosen");
    const bad = await page.goto("/messages?status=lost");
    assert.equal(bad.status(), 422);
    await page.getByText("status must be one of").waitFor();
    await snap(page, "messages-bad-filter");
    await page.goto("/messages");
    await snap(page, "messages");
  });

browserTest("every other create and change redirects: a reload posts nothing and creates nothing twice", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("reloader@example.com", { name: "Rey Loader" });
    const page = await open();
    await stack.login(page, "reloader@example.com");
    const posts = [];
    page.on("request", (request) => {
      if (request.method() === "POST" && request.isNavigationRequest()) posts.push(new URL(request.url()).pathname);
    });
    /** Submits with `button`, then reloads: the reload is a GET answered 200, and nothing is posted again. */
    async function submitThenReload(button) {
      const before = posts.length;
      await Promise.all([page.waitForEvent("load"), button.click()]);
      assert.equal(posts.length, before + 1, "the form was posted once");
      const reloaded = await page.reload();
      assert.equal(reloaded.request().method(), "GET", `the reload of ${page.url()} posts nothing`);
      assert.equal(reloaded.status(), 200);
      assert.equal(posts.length, before + 1);
    }
    const client = await stack.api(page);

    await page.goto("/contacts/new");
    await page.getByLabel("Name", { exact: true }).fill("Once Only");
    await page.getByLabel("Email").fill("once@example.com");
    await submitThenReload(page.getByRole("button", { name: "Create contact" }));
    assert.equal((await client.get("/contacts?q=once")).contacts.length, 1);

    await page.goto("/notes");
    await page.getByLabel("Title").fill("Single");
    await page.getByLabel("Text").fill("Just one.");
    await submitThenReload(page.getByRole("button", { name: "Save note" }));
    assert.equal((await client.get("/notes")).notes.length, 1);

    // A new API token: shown once after the redirect, gone on reload, and only one made.
    await page.goto("/account");
    await page.getByLabel("Token name").fill("laptop");
    await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: "Create token" }).click()]);
    const secret = (await page.locator("#new-token").textContent()).trim();
    assert.ok(secret.length > 20, "the secret is shown");
    const reloaded = await page.reload();
    assert.equal(reloaded.request().method(), "GET");
    assert.equal(await page.locator("#new-token").count(), 0, "shown once");
    assert.equal(await page.locator("table").getByRole("button", { name: "Revoke" }).count(), 1, "one token");

    await page.getByLabel("Current password").fill(PASSWORD);
    await page.getByLabel("New password (10 to 128 characters)").fill("a brand new passphrase");
    await submitThenReload(page.getByRole("button", { name: "Change password" }));
    await page.getByRole("status").filter({ hasText: "Password changed" }).waitFor();

    // Sign-up: the answer page reloads without signing up again.
    const visitor = await open();
    const visits = [];
    visitor.on("request", (request) => {
      if (request.method() === "POST" && request.isNavigationRequest()) visits.push(request.url());
    });
    await visitor.goto("/register");
    await visitor.getByLabel("Email").fill("newcomer@example.com");
    await visitor.getByLabel("Your name").fill("New Comer");
    await visitor.getByLabel("Password (10 to 128 characters)").fill("a long enough password");
    await Promise.all([visitor.waitForEvent("load"), visitor.getByRole("button", { name: "Sign up" }).click()]);
    await visitor.getByRole("heading", { name: "Check your inbox" }).waitFor();
    const again = await visitor.reload();
    assert.equal(again.request().method(), "GET");
    await visitor.getByRole("heading", { name: "Check your inbox" }).waitFor();
    assert.equal(visits.length, 1);
  });

browserTest("a reminder form with three wrong fields shows the three errors at once", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("planner@example.com", { name: "Pia Planner" });
    const page = await open();
    await stack.login(page, "planner@example.com");
    await page.goto("/reminders");
    await page.getByLabel("Name (lowercase letters, digits and dashes)").fill("weekly");
    await page.getByLabel("Text").fill("Our call.");
    await page.getByLabel("When").selectOption("custom");
    await page.getByLabel("Custom schedule: minute hour day-of-month month day-of-week").fill("61 * * * *");
    await page.getByLabel("Time zone (IANA, e.g. Europe/Berlin)").fill("Mars/Olympus");
    // No subject, no recipients, a minute that does not exist, a zone that does not exist.
    await page.getByRole("button", { name: "Create reminder" }).click();
    for (const field of ["subject", "contacts", "schedule", "time_zone"]) {
      await page.locator(`#${field}-error`).waitFor();
    }
    assert.match(await page.locator("#contacts-error").textContent(), /choose the contacts to remind/);
    assert.equal(await page.getByLabel("Text").inputValue(), "Our call.", "what was typed stays");
    await snap(page, "reminder-four-errors");
  });
