// (9) Replies come home (issue #15): a message sent from a contact's page carries a reply address
//     of its own; the test's SMTP client answers it; the answer appears on the open contact page,
//     under the message it answers, without a reload — with its quoted history folded and a toast.

import assert from "node:assert/strict";
import { after, before } from "node:test";

import { INBOUND_DOMAIN, browserTest, snap, startStack, waitUntil } from "./harness.mjs";

let stack;
before(async () => { stack = await startStack({ inbound: true }); });
after(async () => { await stack?.close(); });

/** A header's value in a raw message (first occurrence, unfolded). */
function header(source, name) {
  const match = source.match(new RegExp(`^${name}:[ \\t]*(.*(?:\\r?\\n[ \\t].*)*)`, "mi"));
  return match ? match[1].replace(/\r?\n[ \t]+/g, " ").trim() : null;
}

browserTest("an answer to a sent message appears on the open contact page without a reload", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("seller@example.com", { name: "Sam Seller" });
    const page = await open();
    await stack.login(page, "seller@example.com");
    await page.goto("/contacts/new");
    await page.getByLabel("Name", { exact: true }).fill("Jane Doe");
    await page.getByLabel("Email").fill("jane@example.com");
    await page.getByRole("button", { name: "Create contact" }).click();
    await page.waitForURL(/\/contacts\/[0-9a-f-]{36}\?saved=1$/);

    await page.getByLabel("Subject").fill("Quarterly update");
    await page.getByLabel("Message", { exact: true }).fill("The numbers are in.");
    await page.getByRole("button", { name: "Send" }).click();
    await page.waitForURL(/\?sent=1#timeline$/);
    const timeline = page.locator("#timeline");
    await timeline.locator("li.status-sent").waitFor({ timeout: 30000 });

    // The mail as the contact received it: its own reply address, and a VERP envelope sender.
    let sent;
    await waitUntil("the mail to Jane", async () => {
      sent = (await stack.mail.messages()).find((m) => m.recipients.includes("jane@example.com"));
      return Boolean(sent);
    });
    const replyTo = header(sent.source, "Reply-To");
    assert.match(replyTo, new RegExp(`reply\\+[a-z2-7]{42}@${INBOUND_DOMAIN.replace(/\./g, "\\.")}`), replyTo);
    const address = replyTo.match(/reply\+[a-z2-7]+@[a-z.]+/)[0];
    assert.match(sent.sender, new RegExp(`^bounces\\+[a-z2-7]{42}@${INBOUND_DOMAIN.replace(/\./g, "\\.")}$`));
    const messageId = header(sent.source, "Message-ID");

    // The page stays as it is: a marker set now must still be there when the reply shows.
    await page.evaluate(() => { window.stillTheSamePage = true; });
    const answer = [
      "From: Jane Doe <jane@example.com>",
      `To: ${address}`,
      "Subject: Re: Quarterly update",
      `In-Reply-To: ${messageId}`,
      `References: ${messageId}`,
      "Message-ID: <answer-1@example.com>",
      "MIME-Version: 1.0",
      "Content-Type: text/plain; charset=utf-8",
      "",
      "Great news, thank you!",
      "",
      "On Fri, 4 Dec 2026, Sam Seller wrote:",
      "> The numbers are in.",
      "",
    ].join("\r\n");
    await stack.answer("jane@example.com", address, answer);

    const reply = timeline.locator("li.status-sent li.inbound");
    await reply.waitFor({ timeout: 15000 });
    assert.match(await reply.textContent(), /Great news, thank you!/);
    assert.match(await reply.locator(".badge.inbound-badge").textContent(), /Reply/);
    // The quoted history is folded until asked for.
    const quoted = reply.locator("details.quoted");
    assert.equal(await quoted.getAttribute("open"), null);
    assert.equal(await quoted.locator(".reply-text").isVisible(), false);
    await quoted.locator("summary").click();
    assert.match(await quoted.locator(".reply-text").textContent(), /The numbers are in\./);
    assert.equal(await page.evaluate(() => window.stillTheSamePage), true, "no reload happened");
    // The owner is told: a toast names who replied to what.
    await page.getByText("Jane Doe replied to “Quarterly update”").first().waitFor();
    await snap(page, "contact-reply");

    // The contacts table says who replied last.
    await page.goto("/contacts");
    const row = page.locator("tr", { hasText: "jane@example.com" });
    assert.equal(await row.locator("time").count(), 3, "updated, last emailed, last reply");
  });
