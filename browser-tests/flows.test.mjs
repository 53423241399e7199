// (3) A note sent to 50 contacts: the progress bar, driven by the tab's WebSocket, reaches 100 %
//     and turns into the result.
// (4) An admin broadcast appears live in two logged-in browser contexts, and a third user who logs
//     in later finds it in the bell.
// (5) A reminder shows its next runs while it is being written, and its next run once created.

import assert from "node:assert/strict";
import { after, before } from "node:test";

import { browserTest, snap, startStack, waitUntil } from "./harness.mjs";

let stack;
before(async () => { stack = await startStack({ sink: true }); });
after(async () => { await stack?.close(); });

/** Creates contacts through the JSON API with the page's session (its cookie and CSRF token). */
async function seedContacts(page, count, tag) {
  const session = await (await page.request.get("/api/v1/auth/session")).json();
  const headers = { "X-CSRF-Token": session.csrf_token, Origin: stack.baseUrl };
  for (let i = 1; i <= count; i++) {
    const response = await page.request.post("/api/v1/contacts", {
      headers,
      data: { name: `Member ${i}`, email: `member${i}@example.com`, tags: [tag] },
    });
    assert.equal(response.status(), 201, `contact ${i}: ${await response.text()}`);
  }
}

/** Waits until the page's WebSocket is connected (app.js marks the body). */
async function live(page) {
  await page.locator('body[data-live="1"]').waitFor();
}

browserTest("a note sent to 50 contacts shows its progress live until the result", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("sender@example.com", { name: "Sam Sender" });
    const page = await open();
    await stack.login(page, "sender@example.com");
    await seedContacts(page, 50, "club");

    await page.goto("/notes");
    await page.getByLabel("Title").fill("Club meeting");
    await page.getByLabel("Text").fill("We meet on Friday at six.");
    await page.getByRole("button", { name: "Save note" }).click();
    await page.waitForURL(/\/notes\/[0-9a-f-]{36}$/);
    await snap(page, "note");

    await page.getByLabel("Every contact with the tag").fill("club");
    await page.getByRole("button", { name: "Send by email" }).click();
    // Nothing is queued before the confirmation, which names the count.
    await page.getByRole("heading", { level: 1, name: "Send “Club meeting” to 50 contacts?" }).waitFor();
    await snap(page, "note-send-confirm");
    await page.getByRole("button", { name: "Send to 50 contacts" }).click();
    await page.waitForURL(/\?task=/);
    await live(page);
    const navigations = await page.evaluate(() => performance.getEntriesByType("navigation").length);

    const text = page.locator("#task-text");
    await waitUntil("the progress to reach 50 of 50", async () =>
      (await text.textContent()).includes("50 sent, 0 failed"), 60000);
    const bar = page.locator("#task-progress");
    assert.equal(await bar.getAttribute("max"), "50");
    assert.equal(await bar.evaluate((node) => node.value), 50, "the bar is full");
    assert.equal(await page.locator("#progress-card").getAttribute("data-state"), "done");
    assert.ok(await page.locator("#retry-form").isHidden(), "no retry without failures");
    const after = await page.evaluate(() => performance.getEntriesByType("navigation").length);
    assert.equal(after, navigations, "the page was not reloaded: the WebSocket drove it");
    await snap(page, "note-sent");
  });

browserTest("an admin broadcast appears live in two sessions and later in a third user's bell", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("chief@example.com", { name: "Chief", admin: true });
    for (const who of ["ana", "ben", "cleo"]) await stack.createUser(`${who}@example.com`, { name: who });

    const ana = await open();
    await stack.login(ana, "ana@example.com");
    const ben = await open();
    await stack.login(ben, "ben@example.com");
    await ben.goto("/contacts");
    await Promise.all([live(ana), live(ben)]);

    const admin = await open();
    await stack.login(admin, "chief@example.com");
    await admin.goto("/admin/broadcasts");
    await admin.getByLabel("Name (lowercase letters, digits and dashes)").fill("maintenance");
    await admin.getByLabel("Title", { exact: true }).fill("Maintenance tonight");
    await admin.getByLabel("Message", { exact: true }).fill("Borcelle is read-only from 22:00 to 22:30.");
    await admin.getByLabel("Severity").selectOption("warning");
    await snap(admin, "broadcasts-compose");
    const sent = Date.now();
    await admin.getByRole("button", { name: "Send broadcast" }).click();
    await admin.getByText("Broadcast maintenance created.").waitFor();

    const arrivals = await Promise.all([ana, ben].map(async (page) => {
      await page.locator(".toast", { hasText: "Maintenance tonight" }).waitFor({ timeout: 5000 });
      return Date.now() - sent;
    }));
    t.diagnostic(`broadcast shown live after ${arrivals.join(" ms and ")} ms`);
    for (const page of [ana, ben]) {
      await waitUntil("the bell to count it", async () => (await page.locator("#bell-count").textContent()) !== "0");
    }
    await snap(ana, "broadcast-live");

    const cleo = await open();
    await stack.login(cleo, "cleo@example.com");
    await live(cleo);
    await waitUntil("cleo's bell to show one unread", async () =>
      (await cleo.locator("#bell-count").textContent()) === "1");
    await cleo.locator("#bell").click();
    await cleo.waitForURL(/\/notifications$/);
    await cleo.getByText("Maintenance tonight").waitFor();
    await snap(cleo, "notifications");

    await admin.goto("/admin/broadcasts");
    await waitUntil("the broadcast to be Delivered", async () => {
      await admin.reload();
      return (await admin.locator('tr[data-name="maintenance"] .phase').textContent()).includes("Delivered");
    });
    await snap(admin, "broadcasts");
  });

browserTest("a reminder previews its next runs and shows its next run once created", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("planner@example.com", { name: "Pat Planner" });
    const page = await open();
    await stack.login(page, "planner@example.com");
    await seedContacts(page, 2, "team");

    await page.goto("/reminders");
    await page.getByLabel("Name (lowercase letters, digits and dashes)").fill("weekly-sync");
    await page.getByLabel("Subject").fill("Weekly sync");
    await page.getByLabel("Text").fill("See you at the weekly sync.");
    await page.getByLabel("and every contact with the tag").selectOption("team");
    await page.getByLabel("When").selectOption("0 9 * * 1");
    await page.getByLabel("Time zone (IANA, e.g. Europe/Berlin)").fill("Europe/Berlin");
    const runs = page.locator("#preview li");
    await waitUntil("five next runs in the preview", async () =>
      (await runs.count()) === 5 && /Mon/.test(await runs.first().textContent()));
    await snap(page, "reminders-compose");

    await page.getByRole("button", { name: "Create reminder" }).click();
    await page.getByText("Reminder weekly-sync created.").waitFor();
    const next = page.locator('tr[data-name="weekly-sync"] .next time');
    await waitUntil("the reminder's next run", async () => /Mon/.test(await next.textContent()));
    await snap(page, "reminders");
  });

browserTest("a message with an attachment is composed on the contact's page", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("filer@example.com", { name: "Fay Filer" });
    const page = await open();
    await stack.login(page, "filer@example.com");
    await page.goto("/contacts/new");
    await page.getByLabel("Name", { exact: true }).fill("Olga Owner");
    await page.getByLabel("Email").fill("olga@example.com");
    await page.getByRole("button", { name: "Create contact" }).click();
    await page.waitForURL(/\/contacts\/[0-9a-f-]{36}\?saved=1$/);

    await page.getByLabel("Subject").fill("The contract");
    await page.getByLabel("Message", { exact: true }).fill("Attached, as promised.");
    await page.getByLabel("Attachments").setInputFiles({
      name: "contract.txt", mimeType: "text/plain", buffer: Buffer.from("Terms and conditions\n"),
    });
    await page.getByText("contract.txt (1 KB) attached").waitFor();
    await snap(page, "compose-attachment");
    await page.getByRole("button", { name: "Send" }).click();
    await page.waitForURL(/\?sent=1#timeline$/);
    await waitUntil("the message to be sent", async () => {
      await page.reload();
      return /sent/i.test(await page.locator("#timeline").textContent());
    }, 30000);
  });
