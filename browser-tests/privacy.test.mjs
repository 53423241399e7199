// (6) User B opening user A's contact URL gets the not-found page: status 404 and its heading,
// and nothing of A's contact.

import assert from "node:assert/strict";
import { after, before } from "node:test";

import { browserTest, snap, startStack } from "./harness.mjs";

let stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack?.close(); });

browserTest("another user's contact URL answers the not-found page", () => stack, async (t, { page: open }) => {
  await stack.createUser("alice@example.com", { name: "Alice" });
  await stack.createUser("bob@example.com", { name: "Bob" });

  const alice = await open();
  await stack.login(alice, "alice@example.com");
  await alice.goto("/contacts/new");
  await alice.getByLabel("Name", { exact: true }).fill("Secret Source");
  await alice.getByLabel("Email").fill("source@example.com");
  await alice.getByRole("button", { name: "Create contact" }).click();
  await alice.waitForURL(/\/contacts\/[0-9a-f-]{36}\?saved=1$/);
  const contactUrl = alice.url().replace(/\?.*$/, "");

  const bob = await open();
  await stack.login(bob, "bob@example.com");
  const response = await bob.goto(contactUrl);
  assert.equal(response.status(), 404);
  await bob.getByRole("heading", { level: 1, name: "Not found" }).waitFor();
  const body = await bob.textContent("main");
  assert.ok(!body.includes("Secret Source") && !body.includes("source@example.com"), `nothing of Alice's contact: ${body}`);
  await snap(bob, "not-found");

  // Alice still sees it.
  const again = await alice.goto(contactUrl);
  assert.equal(again.status(), 200);
});
