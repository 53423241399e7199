// (8) Issue #16's defects of the live pages, each with its timing forced through Playwright's
//     WebSocket routing rather than hoped for:
//     - a message sent from a contact's page before the page's socket connected shows "sent" once
//       the socket connects (its snapshot makes the timeline read again), without a reload;
//     - creating a reminder or a broadcast redirects (POST/redirect/GET): reloading the list posts
//       nothing again;
//     - a note's progress read that the server answered before the send finished, but that reaches
//       the page after the live "done" event, does not turn "done" back into "running";
//     - the bell counts a notification once when the snapshot and a live event both carry it;
//     - the home page shows what needs attention (first steps for a new user; sends in progress,
//       moving live; the next reminders; unread notifications);
//     - each notification links to what it is about, and "Mark all read" clears the bell;
//     - a reminder's recipients are checked when it is saved (words that are no contacts are
//       refused there, not at run time) and picked from the user's contacts and tags.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before } from "node:test";

import { browserTest, snap, startStack, waitUntil } from "./harness.mjs";

const api = (page) => stack.api(page);

let stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack?.close(); });

/** The live socket, `/ws` and `/ws?after=…` (a reconnect). */
const liveSocket = (url) => url.pathname === "/ws";


/** A promise with its resolve function. */
function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

browserTest("a message sent before the page's socket connects shows 'sent' once it connects", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("writer@example.com", { name: "Wes Writer" });
    const page = await open();
    await stack.login(page, "writer@example.com");
    const { id } = await (await api(page)).post("/contacts", { name: "Tess Timeline", email: "tess@example.com" }, 201);

    // Every /ws of this page connects to the server at once, except while `hold` is set: that
    // socket stays CONNECTING in the page until the test releases it.
    let hold = null;
    await page.routeWebSocket(liveSocket, async (ws) => {
      const gate = hold;
      if (gate) {
        gate.arrived.resolve(ws.url());
        await gate.released.promise;
      }
      ws.connectToServer();
    });
    await page.goto(`/contacts/${id}`);
    await page.locator('body[data-live="1"]').waitFor();

    // Send, holding the next page's socket. The SMTP server is paused meanwhile, so the page after
    // the redirect cannot render the message as sent already: it renders it waiting.
    hold = { arrived: deferred(), released: deferred() };
    const badge = page.locator("#timeline li[data-task] .badge");
    let shown;
    const smtp = stack.mail.proc.child;
    smtp.kill("SIGSTOP");
    try {
      await page.getByLabel("Subject").fill("Our meeting");
      await page.getByLabel("Message", { exact: true }).fill("See you on Tuesday.");
      await page.getByRole("button", { name: "Send" }).click();
      await page.waitForURL(/\?sent=1#timeline$/);
      await hold.arrived.promise;
      shown = (await badge.textContent()).trim();
      assert.match(shown, /^(queued|sending)$/, "the page after the redirect shows the message waiting");
    } finally {
      smtp.kill("SIGCONT");
    }
    assert.notEqual(await page.locator("body").getAttribute("data-live"), "1", "the page's socket is held");
    await page.evaluate(() => { window.sameDocument = true; });

    // The mail goes out while the page has no socket: its progress events reach no one.
    await waitUntil("the message to be sent", async () => {
      const { messages } = await (await api(page)).get(`/contacts/${id}/messages`);
      return messages.length === 1 && messages[0].status === "sent";
    }, 30000);
    assert.equal((await badge.textContent()).trim(), shown, "nothing told the page yet");

    // The socket connects now: its snapshot alone must bring the timeline up to date.
    const released = Date.now();
    hold.released.resolve();
    await page.locator('body[data-live="1"]').waitFor();
    await waitUntil("the timeline to show the message sent", async () =>
      (await badge.textContent()).trim() === "sent", 10000);
    t.diagnostic(`rendered "${shown}"; "sent" ${Date.now() - released} ms after the socket was let through`);
    assert.equal(await page.locator("#timeline li[data-task]").count(), 1);
    assert.equal(await page.evaluate(() => window.sameDocument), true, "the page was not reloaded");
    await snap(page, "contact-sent-live");
  });

browserTest("a note's progress read answered after the live 'done' event does not turn it back", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("noter@example.com", { name: "Nell Noter" });
    const page = await open();
    await stack.login(page, "noter@example.com");
    const client = await api(page);
    await client.post("/contacts", { name: "Rhea Reader", email: "rhea@example.com", tags: ["readers"] }, 201);
    const note = await client.post("/notes", { title: "News", body: "Hello {{ contact.first_name }}." }, 201);

    // The read the page makes when its socket connects is answered by the server at once, while
    // the SMTP server is paused (so it says "running"), and handed to the page only after the
    // live "done" event: the order a fast send and a slow response give.
    const held = deferred();
    const release = deferred();
    await page.route((url) => url.pathname.startsWith("/api/v1/tasks/"), async (route) => {
      const response = await route.fetch();
      const body = await response.json();
      held.resolve({ request: route.request(), body });
      await release.promise;
      await route.fulfill({ response, json: body });
    });

    const smtp = stack.mail.proc.child;
    smtp.kill("SIGSTOP");
    let task;
    let stale;
    try {
      task = await client.post(`/notes/${note.id}/send`, { tag: "readers" }, 202);
      await page.goto(`/notes/${note.id}?task=${task.task_id}`);
      stale = await held.promise;
      assert.notEqual(stale.body.status, "done", "the read was answered while the mail was held");
    } finally {
      smtp.kill("SIGCONT");
    }
    const card = page.locator("#progress-card");
    await page.locator('#progress-card[data-state="done"]').waitFor({ timeout: 30000 });

    const finished = page.waitForEvent("requestfinished", (request) => request === stale.request);
    release.resolve();
    await finished;
    // Let the page's promise callbacks for that response run.
    await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 50)));
    assert.equal(await card.getAttribute("data-state"), "done", "the late 'running' answer was not applied");
    assert.equal(await page.locator("#task-text").textContent(), "1 sent, 0 failed");
  });

browserTest("creating a reminder or a broadcast redirects, and reloading the list posts nothing", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("boss@example.com", { name: "Bo Boss", admin: true });
    const page = await open();
    await stack.login(page, "boss@example.com");
    await (await api(page)).post("/contacts", { name: "Team Mate", email: "mate@example.com", tags: ["team"] }, 201);
    const posts = [];
    page.on("request", (request) => {
      if (request.method() === "POST" && request.isNavigationRequest()) posts.push(request.url());
    });

    /** After a create: the list with the notice; a reload is a GET of it, with no error, and one row. */
    async function createdThenReload(path, name, notice) {
      await page.waitForURL(`${stack.baseUrl}${path}?created=${name}`);
      await page.getByRole("status").filter({ hasText: notice }).waitFor();
      assert.equal(posts.length, 1, "the form was posted once");
      const row = page.locator(`tr[data-name="${name}"]`);
      assert.equal(await row.count(), 1);

      const reloaded = await page.reload();
      assert.equal(reloaded.request().method(), "GET", "the reload does not post the form again");
      assert.equal(reloaded.status(), 200);
      assert.equal(posts.length, 1, "no second POST");
      assert.equal(page.url(), `${stack.baseUrl}${path}?created=${name}`);
      assert.equal(await page.getByRole("alert").count(), 0, "no error on the page");
      assert.equal(await page.getByText(/already/i).count(), 0, "no 'exists already'");
      await page.getByRole("status").filter({ hasText: notice }).waitFor();
      assert.equal(await row.count(), 1, `still exactly one ${name}`);
      posts.length = 0;
    }

    await page.goto("/reminders");
    await page.getByLabel("Name (lowercase letters, digits and dashes)").fill("monday-report");
    await page.getByLabel("Subject").fill("Monday report");
    await page.getByLabel("Text").fill("The report is due today.");
    await page.getByLabel("and every contact with the tag").selectOption("team");
    await page.getByLabel("When").selectOption("0 9 * * 1");
    await page.getByLabel("Time zone (IANA, e.g. Europe/Berlin)").fill("Europe/Berlin");
    await page.getByRole("button", { name: "Create reminder" }).click();
    await createdThenReload("/reminders", "monday-report", "Reminder monday-report created.");

    await page.goto("/admin/broadcasts");
    await page.getByLabel("Name (lowercase letters, digits and dashes)").fill("window-cleaning");
    await page.getByLabel("Title", { exact: true }).fill("Window cleaning");
    await page.getByLabel("Message", { exact: true }).fill("The windows are cleaned on Thursday.");
    // The administrators only: the other tests' users get no notification from it.
    await page.getByLabel("The administrators").check();
    await page.getByRole("button", { name: "Send broadcast" }).click();
    await createdThenReload("/admin/broadcasts", "window-cleaning", "Broadcast window-cleaning created.");
  });

browserTest("the bell counts a notification once when the snapshot and a live event both carry it", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("reader@example.com", { name: "Rae Reader" });
    const page = await open();
    await stack.login(page, "reader@example.com");

    // A real completion notification, without mail: a message to a contact whose address is on the
    // suppression list is done as soon as it is queued.
    const client = await api(page);
    const contact = await client.post("/contacts", { name: "Sid Suppressed", email: "sid@example.com" }, 201);
    await client.post("/suppressions", { email: "sid@example.com", detail: "asked us to stop" }, 201);
    await client.post("/messages", { contact_ids: [contact.id], subject: "Hello", body: "Hello Sid." }, 202);
    await waitUntil("the completion notification", async () => (await client.get("/notifications")).unread === 1);

    // The page talks to the real server; every frame the server sends is kept and passed on, and
    // the test can send frames of its own to the page.
    const frames = [];
    let toPage;
    await page.routeWebSocket(liveSocket, (ws) => {
      toPage = ws;
      const server = ws.connectToServer();
      server.onMessage((message) => {
        frames.push(JSON.parse(message));
        ws.send(message);
      });
    });
    await page.goto("/contacts");
    await waitUntil("the snapshot", async () => frames.some((f) => f.type === "snapshot"));
    const snapshot = frames.find((f) => f.type === "snapshot");
    const unread = snapshot.unread;
    assert.ok(unread >= 1, "the snapshot counts the notification");
    const known = snapshot.notifications[0];
    assert.ok(known?.id, "the snapshot lists it");
    const bell = page.locator("#bell-count");
    await waitUntil(`the bell to show ${unread}`, async () => (await bell.textContent()) === String(unread));

    // What the page did with each event: app.js dispatches `borcelle:event` before it acts on the
    // event, so the bell is read in a microtask, once app.js is done with that event.
    await page.evaluate(() => {
      window.handled = [];
      const count = document.getElementById("bell-count");
      document.addEventListener("borcelle:event", (e) => {
        const event = e.detail || {};
        queueMicrotask(() => window.handled.push({
          type: event.type, id: event.notification ? event.notification.id : null, bell: count.textContent,
        }));
      });
    });
    /** Sends a `notification` event to the page; the bell's count once the page has handled it. */
    async function inject(notification) {
      const from = await page.evaluate(() => window.handled.length);
      toPage.send(JSON.stringify({ type: "notification", notification }));
      let entry;
      await waitUntil(`the page to handle notification ${notification.id}`, async () => {
        entry = await page.evaluate(({ from, id }) =>
          window.handled.slice(from).find((h) => h.type === "notification" && h.id === id), { from, id: notification.id });
        return Boolean(entry);
      });
      return entry.bell;
    }

    // The notification the snapshot counted arrives again as a live event (as after a reconnect).
    assert.equal(await inject(known), String(unread), "a notification the snapshot counted is not counted again");
    assert.equal(await page.locator(".toast", { hasText: known.title }).count(), 0, "nor shown again");

    // A new one counts.
    const fresh = { ...known, id: randomUUID(), title: "Message sent to 3 contacts", created_at: new Date().toISOString() };
    assert.equal(await inject(fresh), String(unread + 1), "a new notification counts");
    await page.locator(".toast", { hasText: fresh.title }).waitFor();
    // And the same new one once more does not.
    assert.equal(await inject(fresh), String(unread + 1), "a live event repeated is counted once");
  });

browserTest("a reminder's recipients are checked on save and picked from contacts and tags", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("picker@example.com", { name: "Pia Picker" });
    const page = await open();
    await stack.login(page, "picker@example.com");
    const client = await api(page);
    await client.post("/contacts", { name: "Ada Lovelace", email: "ada@example.com", tags: ["vip"] }, 201);
    await client.post("/contacts", { name: "Grace Hopper", email: "grace@example.com", tags: [] }, 201);

    await page.goto("/reminders");
    const fillRest = async (name) => {
      await page.getByLabel("Name (lowercase letters, digits and dashes)").fill(name);
      await page.getByLabel("Subject").fill("Renewal");
      await page.getByLabel("Text").fill("Your plan renews next week.");
      await page.getByLabel("When").selectOption("0 9 * * 1");
    };

    // What was accepted as "2 email(s)" and failed at run time is refused on save, by name.
    await fillRest("renewal");
    const contacts = page.getByLabel("Contacts", { exact: true });
    await contacts.fill("hello world");
    await page.getByRole("button", { name: "Create reminder" }).click();
    const error = page.locator("#contacts-error");
    await error.waitFor();
    assert.match(await error.textContent(), /"hello": enter a valid email address/);
    assert.equal(await contacts.getAttribute("aria-invalid"), "true");
    assert.equal(await contacts.inputValue(), "hello world", "what was typed is kept");
    assert.equal(await page.locator('tr[data-name="renewal"]').count(), 0, "nothing was saved");

    // The tag picker offers the user's tags, and only those.
    const tags = await page.getByLabel("and every contact with the tag").locator("option").allTextContents();
    assert.deepEqual(tags, ["No tag", "vip"]);

    // Pick Grace from the suggestions of what is typed, and the tag vip.
    await contacts.fill("");
    await contacts.pressSequentially("Gra");
    const suggestion = page.locator('#contact-suggestions option[value="Grace Hopper <grace@example.com>, "]');
    await suggestion.waitFor({ state: "attached" });
    // Choosing a suggestion sets the field to the option's value (the datalist popup is the
    // browser's own, out of a headless page's reach): fill() does the same.
    await contacts.fill(await suggestion.getAttribute("value"));
    await page.getByLabel("and every contact with the tag").selectOption("vip");
    await page.getByRole("button", { name: "Create reminder" }).click();
    await page.waitForURL(/\/reminders\?created=renewal$/);
    const row = page.locator('tr[data-name="renewal"]');
    assert.match(await row.textContent(), /every contact tagged vip, grace@example\.com/);
    const saved = await client.get("/reminders/renewal");
    assert.deepEqual(saved.spec.recipients, { contactIds: [], emails: ["grace@example.com"], tag: "vip" });
    await snap(page, "reminders-picked");
  });

browserTest("each notification links to what it is about, and 'Mark all read' clears them", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("rita@example.com", { name: "Rita Reader" });
    const page = await open();
    await stack.login(page, "rita@example.com");
    const client = await api(page);
    const ada = await client.post("/contacts", { name: "Ada Lovelace", email: "ada.r@example.com", tags: ["club"] }, 201);
    await client.post("/contacts", { name: "Grace Hopper", email: "grace.r@example.com", tags: ["club"] }, 201);
    const note = await client.post("/notes", { title: "Club news", body: "The club meets on Friday." }, 201);
    const noteTask = await client.post(`/notes/${note.id}/send`, { tag: "club" }, 202);
    const messageTask = await client.post("/messages", { contact_ids: [ada.id], subject: "Hello Ada", body: "How are you?" }, 202);
    await waitUntil("both sends to be done", async () => {
      const list = await client.get("/notifications?unread=true");
      return list.unread === 2;
    }, 20000);

    await page.goto("/notifications");
    const items = page.locator(".notification");
    assert.equal(await items.count(), 2);
    const noteLink = items.filter({ hasText: "Note sent to 2 contacts" }).getByRole("link", { name: "Open the note" });
    assert.equal(await noteLink.getAttribute("href"), `/notes/${note.id}?task=${noteTask.task_id}`);
    const messageLink = items.filter({ hasText: "Message sent to 1 contact" }).getByRole("link", { name: "Open the conversation" });
    assert.equal(await messageLink.getAttribute("href"), `/contacts/${ada.id}#timeline`);
    assert.equal(messageTask.total, 1);
    await page.locator('body[data-live="1"]').waitFor();
    await waitUntil("the bell to count 2", async () => (await page.locator("#bell-count").textContent()).trim() === "2");
    await snap(page, "notifications");

    await page.getByRole("button", { name: "Mark all read" }).click();
    await page.getByRole("status").filter({ hasText: "2 notifications marked read." }).waitFor();
    assert.equal(await page.locator(".notification.unread").count(), 0);
    assert.equal(await page.getByRole("button", { name: "Mark all read" }).count(), 0, "nothing left to mark");
    await page.locator('body[data-live="1"]').waitFor();
    await waitUntil("the bell to be cleared", async () => {
      const bell = page.locator("#bell-count");
      return (await bell.isHidden()) || (await bell.textContent()).trim() === "0";
    });
    assert.equal((await client.get("/notifications?unread=true")).unread, 0);

    // The note's link opens the note with its send's result.
    await page.goto(`/notes/${note.id}?task=${noteTask.task_id}`);
    await page.locator('#progress-card[data-state="done"]').waitFor();
  });

browserTest("the home page shows what needs attention and a send's progress live", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("homer@example.com", { name: "Homer Home" });
    const page = await open();
    await stack.login(page, "homer@example.com");
    // A new user is guided to the first steps.
    await page.locator("#first-steps").getByRole("link", { name: "Add your first contact" }).waitFor();
    assert.match(await page.locator("#running").textContent(), /Nothing is being sent/);
    await snap(page, "home-new");

    const client = await api(page);
    const ada = await client.post("/contacts", { name: "Ada Lovelace", email: "ada.h@example.com", tags: ["home"] }, 201);
    await client.post("/reminders", {
      name: "weekly-call",
      spec: { recipients: { tag: "home" }, subject: "Weekly call", body: "Tomorrow at ten.", schedule: "0 9 * * 1", timeZone: "Europe/Paris" },
    }, 201);

    // A send held at the SMTP server stays "Sending now" until the server answers.
    const smtp = stack.mail.proc.child;
    smtp.kill("SIGSTOP");
    let task;
    try {
      task = await client.post("/messages", { contact_ids: [ada.id], subject: "Contract draft", body: "Attached soon." }, 202);
      await page.goto("/");
      assert.equal(await page.locator("#first-steps").count(), 0, "no first steps once there are contacts");
      const item = page.locator(`#running li[data-task="${task.task_id}"]`);
      await item.waitFor();
      assert.match(await item.textContent(), /Contract draft/);
      assert.match(await item.locator(".task-text").textContent(), /0 of 1 done/);
      const upcoming = page.locator('#upcoming li[data-name="weekly-call"]');
      assert.match(await upcoming.textContent(), /Weekly call/);
      assert.match(await upcoming.locator("time").textContent(), /Mon/);
      await page.locator('body[data-live="1"]').waitFor();
      await page.evaluate(() => { window.sameDocument = true; });
      await snap(page, "home");
    } finally {
      smtp.kill("SIGCONT");
    }
    // Once sent, the item says so without a reload, and the notification is listed as unread.
    await waitUntil("the send to show done", async () =>
      /Done: 1 sent, 0 failed/.test(await page.locator(`#running li[data-task="${task.task_id}"] .task-text`).textContent()), 15000);
    assert.equal(await page.evaluate(() => window.sameDocument), true, "the page was not reloaded");
    await page.reload();
    assert.match(await page.locator("#unread").textContent(), /Message sent to 1 contact/);
    assert.equal(await page.locator("#running li").count(), 0, "a finished send leaves 'Sending now'");
  });
