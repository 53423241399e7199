// (1) A visitor signs up in the browser, opens the verification link mailed through a real SMTP
// server, verifies with the page's button, logs in and sees the home page.

import assert from "node:assert/strict";
import { after, before } from "node:test";

import { PASSWORD, browserTest, snap, startStack } from "./harness.mjs";

let stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack?.close(); });

browserTest("sign up, verify by the mailed link, log in, see home", () => stack, async (t, { page: open }) => {
  const page = await open();
  const email = "newcomer@example.com";

  await page.goto("/register");
  await snap(page, "register");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Your name").fill("Nia Newcomer");
  await page.getByLabel("Password (10 to 128 characters)").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign up" }).click();
  await page.getByRole("heading", { name: "Check your inbox" }).waitFor();

  // The mail went through SMTP to mailtutan; its text part holds the link.
  const text = await stack.mail.textTo(email);
  const link = text.split(/\s+/).find((word) => word.startsWith(stack.url("/verify?token=")));
  assert.ok(link, `a verification link in the mail:\n${text}`);

  // Opening the link consumes nothing: the page's button POSTs the token.
  const opened = await page.goto(link);
  assert.equal(opened.status(), 200);
  await page.getByRole("heading", { name: "Verify your email" }).waitFor();
  await snap(page, "verify");
  await page.getByRole("button", { name: "Verify my email" }).click();
  await page.getByRole("heading", { name: "Email verified" }).waitFor();

  await page.getByRole("link", { name: "Log in" }).first().click();
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(stack.url("/"));
  await page.getByRole("heading", { name: "Welcome, Nia Newcomer" }).waitFor();
  await snap(page, "home");
});
