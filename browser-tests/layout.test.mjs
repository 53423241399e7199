// (9) Issue #16's layout defects: at phone width (375×812) every table's rows and actions are on
// the screen without scrolling the page sideways (each row a block, each cell labelled with its
// column); an invalid phone number's field has the error's red border; on a desktop the
// broadcasts table fits its card.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before } from "node:test";
import { promisify } from "node:util";

import { browserTest, snap, startStack } from "./harness.mjs";

const run = promisify(execFile);
const PG = (process.env.BORCELLE_TEST_PG || "postgres://postgres@127.0.0.1:5432").replace(/\/$/, "");

let stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack?.close(); });

const PHONE = { width: 375, height: 812 };
const DESKTOP = { width: 1280, height: 800 };
const DANGER = "rgb(185, 28, 28)";


/** What does not fit a page at its viewport's width: the page's own sideways scroll, and every
 * table cell, button or link in a table that reaches past the right edge or is hidden. */
async function overflow(page) {
  return page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const problems = [];
    if (document.documentElement.scrollWidth > width) {
      problems.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} > ${width}`);
    }
    for (const node of document.querySelectorAll("table td, table button, table a")) {
      const box = node.getBoundingClientRect();
      if (box.width === 0 && box.height === 0) continue;
      // Inside a scrolled container a node can sit past the edge without widening the page.
      if (box.right > width + 0.5 || box.left < -0.5) {
        problems.push(`${node.tagName.toLowerCase()} "${node.textContent.trim().slice(0, 40)}" spans ${Math.round(box.left)}–${Math.round(box.right)} of ${width}`);
      }
    }
    return problems;
  });
}

browserTest("every table's rows and actions fit a phone's width, and fields show their errors", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("admin@example.com", { name: "Addie Admin", admin: true });
    const page = await open();
    await page.setViewportSize(PHONE);
    await stack.login(page, "admin@example.com");
    const client = await stack.api(page);
    const mate = await client.post("/contacts", {
      name: "Team Mate", email: "team.mate.with.a.long.address@subdomain.example.com", company: "Mates & Partners International",
      phone: "+44 20 7946 0958", tags: ["team", "quarterly-review"],
    }, 201);
    await client.post("/messages", { contact_ids: [mate.id], subject: "A rather long subject line to read on a phone", body: "x" }, 202);
    await client.post("/reminders", {
      name: "quarterly-business-review-with-the-whole-team",
      spec: {
        recipients: { tag: "team" }, subject: "Quarterly business review", body: "Agenda attached.",
        schedule: "30 8 1 */3 *", timeZone: "America/Argentina/Buenos_Aires",
      },
    }, 201);
    // Tomorrow: it stays on the list, with its Cancel action.
    await client.post("/admin/broadcasts", {
      name: "maintenance-window-saturday-night",
      spec: {
        title: "Maintenance on Saturday night", message: "The CRM is read-only from 22:00 to 23:00.",
        severity: "warning", at: new Date(Date.now() + 86400000).toISOString(),
      },
    }, 201);
    const longAddress = `someone.with.a.rather.long.address.${Date.now()}@subdomain.example.com`;
    await run("psql", [`${PG}/${stack.dbName}`, "-q", "-c",
      `INSERT INTO outbox (id, message_id, from_address, to_address, subject, text_body, html_body)
       VALUES (gen_random_uuid(), '<1@test>', 'noreply@example.com', '${longAddress}', 'Verify your email for Borcelle', 'x', '<p>x</p>')`]);

    const pages = [
      ["/contacts", null],
      ["/messages", null],
      ["/reminders", "Delete"],
      ["/admin/broadcasts", "Cancel"],
      ["/admin/users", null],
      ["/outbox", "Verify your email for Borcelle"],
    ];
    for (const [path, action] of pages) {
      await page.goto(path);
      await page.locator("table tbody tr").first().waitFor();
      assert.deepEqual(await overflow(page), [], `${path} at ${PHONE.width} px`);
      if (action) {
        const control = page.locator("table").getByRole(/Verify/.test(action) ? "link" : "button", { name: action }).first();
        assert.ok(await control.isVisible(), `${path}: ${action} is visible`);
        const box = await control.boundingBox();
        assert.ok(box && box.x >= 0 && box.x + box.width <= PHONE.width, `${path}: ${action} is on the screen: ${JSON.stringify(box)}`);
      }
      await snap(page, `phone${path.replaceAll("/", "-")}`);
    }
    // Each cell says which column it is, as the header row is not shown.
    await page.goto("/reminders");
    const next = page.locator('tr[data-name^="quarterly"] td.next');
    assert.equal(await next.getAttribute("data-label"), "Next run");

    // An invalid phone number: the field's border is the error's red, not grey.
    await page.goto("/contacts/new");
    await page.getByLabel("Name", { exact: true }).fill("Phil Phone");
    await page.getByLabel("Email").fill("phil@example.com");
    await page.getByLabel(/^Phone/).fill("12");
    await page.getByRole("button", { name: "Create contact" }).click();
    const phone = page.getByLabel(/^Phone/);
    await page.locator('[aria-invalid="true"]#phone').waitFor();
    assert.equal(await phone.evaluate((el) => getComputedStyle(el).borderTopColor), DANGER);
    await snap(page, "phone-invalid-phone");

    // On a desktop the broadcasts table fits its card: no column is cut off or scrolled.
    await page.setViewportSize(DESKTOP);
    await page.goto("/admin/broadcasts");
    const fits = await page.locator(".scroll").first().evaluate((el) => el.scrollWidth <= el.clientWidth);
    assert.ok(fits, "the broadcasts table is not clipped inside its card");
    assert.deepEqual(await overflow(page), []);
    await snap(page, "desktop-broadcasts");
  });
