// (7) Issue #14's consent flow: a note with merge fields is previewed as one contact receives it
// (and a wrong field is named in the preview), sent to a tag, and the recipient — not logged in —
// unsubscribes through the link of the mail they received; the contact's page then says so.

import assert from "node:assert/strict";
import { after, before } from "node:test";

import { browserTest, snap, startStack, waitUntil } from "./harness.mjs";

let stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack?.close(); });

const ADA = { name: "Ada Lovelace", email: "ada@example.com" };
const GRACE = { name: "Grace Hopper", email: "grace@example.com" };
const TAG = "q4";
const TITLE = "Hello {{ contact.first_name }}";
const BODY = 'Dear {{ contact.first_name | default("friend") }},\n\nOur plans for the fourth quarter are ready.\n';

/** Creates contacts through the JSON API with the page's session; returns their ids by email. */
async function seedContacts(page, contacts, tag) {
  const session = await (await page.request.get("/api/v1/auth/session")).json();
  const headers = { "X-CSRF-Token": session.csrf_token, Origin: stack.baseUrl };
  const ids = {};
  for (const contact of contacts) {
    const response = await page.request.post("/api/v1/contacts", { headers, data: { ...contact, tags: [tag] } });
    assert.equal(response.status(), 201, `${contact.email}: ${await response.text()}`);
    ids[contact.email] = (await response.json()).id;
  }
  return ids;
}

/** A header of a raw message (the header block only, folded lines joined). */
function header(source, name) {
  const head = source.split(/\r?\n\r?\n/, 1)[0].replace(/\r?\n[ \t]+/g, " ");
  const line = head.split(/\r?\n/).find((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`));
  return line?.slice(name.length + 1).trim();
}

browserTest("a previewed note is sent, and its recipient unsubscribes through the mail's link", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("owner@example.com", { name: "Olive Owner" });
    const page = await open();
    await stack.login(page, "owner@example.com");
    const ids = await seedContacts(page, [ADA, GRACE], TAG);

    // Write the note.
    await page.goto("/notes");
    await page.getByLabel("Title").fill(TITLE);
    await page.getByLabel("Text", { exact: true }).fill(BODY);
    await page.getByRole("button", { name: "Save note" }).click();
    await page.waitForURL(/\/notes\/[0-9a-f-]{36}$/);

    // Preview it as Ada receives it: type, then pick her suggestion.
    const search = page.getByLabel("As received by");
    await search.waitFor();
    await search.pressSequentially("Ada");
    const label = `${ADA.name} <${ADA.email}>`;
    await page.locator(`#preview-contacts option[value="${label}"]`).waitFor({ state: "attached" });
    // Choosing a suggestion replaces the value with the option's and fires one input event (the
    // datalist's popup is the browser's own, out of a headless page's reach): fill() does that.
    await search.fill(label);

    const subject = page.locator("[data-preview] .preview-subject");
    const text = page.locator("[data-preview] .preview-text");
    const problem = page.locator("[data-preview] .preview-error");
    await waitUntil("the preview as Ada", async () =>
      (await subject.textContent()) === "Hello Ada" && (await text.textContent()).startsWith("Dear Ada,"));
    assert.ok(await problem.isHidden(), "no preview error");
    await snap(page, "note-preview");

    // A field that does not exist is named in the preview; fixing it brings the preview back.
    const body = page.getByLabel("Text", { exact: true });
    await body.fill(`${BODY}{{ contact.nope }}\n`);
    await problem.waitFor({ state: "visible" });
    await waitUntil("the preview to name contact.nope", async () => (await problem.textContent()).includes("contact.nope"));
    assert.ok(await page.locator("[data-preview] .preview-output").isHidden(), "no stale preview beside the error");
    await body.fill(BODY);
    await problem.waitFor({ state: "hidden" });
    await waitUntil("the preview as Ada again", async () => (await text.textContent()).startsWith("Dear Ada,"));

    // Saving redirects to the same URL: wait for the new page's load, not for the URL.
    await Promise.all([page.waitForEvent("load"), page.getByRole("button", { name: "Save", exact: true }).click()]);
    assert.equal(await page.getByLabel("Title").inputValue(), TITLE);

    // Send it to the tag and wait for the result.
    await page.getByLabel("Every contact with the tag").fill(TAG);
    await page.getByRole("button", { name: "Send by email" }).click();
    await page.getByRole("button", { name: "Send to 2 contacts" }).click();
    await page.waitForURL(/\?task=/);
    await page.locator('#progress-card[data-state="done"]').waitFor({ timeout: 30000 });
    assert.equal(await page.locator("#task-text").textContent(), "2 sent, 0 failed");

    // Each contact's mail, read back from the SMTP server: one each, personalised.
    const list = await stack.mail.messages();
    const to = (email) => list.filter((m) => m.recipients.includes(email));
    assert.deepEqual(to(ADA.email).map((m) => m.subject), ["Hello Ada"], JSON.stringify(list.map((m) => [m.recipients, m.subject])));
    assert.deepEqual(to(GRACE.email).map((m) => m.subject), ["Hello Grace"]);
    const { plain, source } = to(ADA.email)[0];
    assert.ok(plain.startsWith("Dear Ada,"), plain);
    const link = plain.match(/unsubscribe: (\S+)/)?.[1];
    assert.ok(link?.startsWith(`${stack.baseUrl}/unsubscribe/`), `an unsubscribe link in the text: ${plain}`);
    assert.equal(header(source, "List-Unsubscribe"), `<${link}>`);
    assert.equal(header(source, "List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");

    // The recipient opens the link in their own browser: no session.
    const recipient = await open();
    await recipient.goto(link);
    await recipient.getByRole("heading", { level: 1, name: "Unsubscribe?" }).waitFor();
    await recipient.getByRole("button", { name: "Unsubscribe", exact: true }).click();
    await recipient.getByRole("heading", { level: 1, name: "You are unsubscribed" }).waitFor();
    await snap(recipient, "unsubscribed");

    // Back as the user: Ada is marked, Grace is not.
    await page.goto(`/contacts/${ids[ADA.email]}`);
    const box = page.locator("#suppression");
    await box.waitFor();
    assert.match(await box.textContent(), /Unsubscribed\s+since .*\(unsubscribe link\)/s);
    await page.getByRole("button", { name: "Email again" }).waitFor();
    await snap(page, "contact-unsubscribed");

    await page.goto(`/contacts/${ids[GRACE.email]}`);
    await page.getByRole("button", { name: "Stop emailing this contact" }).waitFor();
    assert.equal(await page.locator("#suppression").count(), 0, "Grace is still emailed");
  });
