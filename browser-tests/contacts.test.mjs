// (2) A user creates three contacts through the form, types two letters in the search box and
// picks a suggestion from the autocomplete with the keyboard: the contact's page opens. Then a CSV
// file is imported through the import page.

import assert from "node:assert/strict";
import { after, before } from "node:test";

import { browserTest, snap, startStack } from "./harness.mjs";

let stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack?.close(); });

const CONTACTS = [
  { name: "Ada Lovelace", email: "ada@example.com", company: "Analytical Engines" },
  { name: "Adam Smith", email: "adam@example.com", company: "" },
  { name: "Grace Hopper", email: "grace@example.com", company: "US Navy" },
];

browserTest("create three contacts, pick one from the autocomplete with the keyboard", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("keeper@example.com", { name: "Kim Keeper" });
    const page = await open();
    await stack.login(page, "keeper@example.com");

    for (const [i, contact] of CONTACTS.entries()) {
      await page.goto("/contacts/new");
      await page.getByLabel("Name", { exact: true }).fill(contact.name);
      await page.getByLabel("Email").fill(contact.email);
      if (contact.company) await page.getByLabel("Company").fill(contact.company);
      if (i === 0) await snap(page, "contact-new");
      await page.getByRole("button", { name: "Create contact" }).click();
      await page.waitForURL(/\/contacts\/[0-9a-f-]{36}\?saved=1$/);
      await page.getByRole("heading", { level: 1, name: contact.name }).waitFor();
      if (i === 0) await snap(page, "contact");
    }

    await page.goto("/contacts");
    for (const contact of CONTACTS) await page.getByRole("link", { name: contact.name }).waitFor();
    await snap(page, "contacts");

    const box = page.getByRole("combobox", { name: "Search" });
    await box.click();
    await box.pressSequentially("Ad", { delay: 60 });
    const listbox = page.getByRole("listbox", { name: "Suggested contacts" });
    await listbox.waitFor();
    const options = listbox.getByRole("option");
    await assert.doesNotReject(options.filter({ hasText: "Adam Smith" }).waitFor());
    assert.deepEqual(
      await options.locator("span").allTextContents(),
      ["Ada Lovelace", "Adam Smith"],
      "the two contacts whose name starts with 'Ad', in name order",
    );
    assert.equal(await box.getAttribute("aria-expanded"), "true");

    await page.keyboard.press("ArrowDown");
    const chosen = options.first();
    assert.equal(await chosen.getAttribute("aria-selected"), "true");
    assert.equal(await box.getAttribute("aria-activedescendant"), await chosen.getAttribute("id"));
    await snap(page, "contacts-autocomplete");

    await page.keyboard.press("Enter");
    await page.waitForURL(/\/contacts\/[0-9a-f-]{36}$/);
    await page.getByRole("heading", { level: 1, name: "Ada Lovelace" }).waitFor();

    // CSV import: the page's script sends the file with the CSRF header; the report replaces the form.
    await page.goto("/contacts/import");
    await page.getByLabel("CSV file").setInputFiles({
      name: "people.csv",
      mimeType: "text/csv",
      buffer: Buffer.from("name,email,tags\nLinus Torvalds,linus@example.com,kernel;vip\nNo Email,,\n"),
    });
    await page.getByRole("button", { name: "Import" }).click();
    await page.getByRole("heading", { level: 1, name: "Import finished" }).waitFor();
    const counts = await page.getByRole("status").filter({ hasText: "created" }).textContent();
    assert.match(counts, /1 created · 0 updated · 1 rejected/);
    await snap(page, "contacts-import");

    // The list at phone width, for the screenshot review.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto("/contacts");
    await snap(page, "contacts-mobile");
  });
