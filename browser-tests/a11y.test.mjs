// (10) Issue #16's accessibility check: axe-core (from npm, injected into the page) runs on every
// main page, in light and in dark (`prefers-color-scheme`), and finds no serious or critical
// violation; each page is also kept as a screenshot at desktop and phone width in both schemes.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before } from "node:test";

import { SCREENSHOTS, browserTest, startStack } from "./harness.mjs";

const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
const SIZES = { desktop: { width: 1280, height: 800 }, phone: { width: 375, height: 812 } };

let stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack?.close(); });

/** The serious and critical violations axe finds on the page as it is now. */
async function violations(page) {
  await page.addScriptTag({ path: AXE });
  const found = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const result = await axe.run(document, { resultTypes: ["violations"] });
    return result.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")),
    }));
  });
  checked.rules += 1;
  checked.minor += found.filter((v) => v.impact === "minor" || v.impact === "moderate").length;
  return found.filter((v) => v.impact === "serious" || v.impact === "critical");
}

/** How many pages axe checked, and the minor or moderate findings it reported (not failures). */
const checked = { rules: 0, minor: 0 };

/** The page's background: the dark scheme's must be dark, or the dark check would check nothing. */
const BACKGROUND = { light: "rgb(244, 245, 247)", dark: "rgb(15, 20, 26)" };

browserTest("every main page has no serious or critical accessibility violation, light and dark", () => stack,
  async (t, { page: open }) => {
    await stack.createUser("ally@example.com", { name: "Ally Admin", admin: true });
    // axe is injected as a script, which the pages' Content-Security-Policy would refuse.
    const page = await open({ bypassCSP: true });
    await stack.login(page, "ally@example.com");
    const client = await stack.api(page);
    const ada = await client.post("/contacts", { name: "Ada Lovelace", email: "ada.a@example.com", company: "Analytical Engines", tags: ["vip"] }, 201);
    await client.post("/contacts", { name: "Grace Hopper", email: "grace.a@example.com", tags: ["vip"] }, 201);
    const note = await client.post("/notes", { title: "Quarterly update", body: "Dear {{ contact.first_name }}, the numbers are in." }, 201);
    await client.post(`/notes/${note.id}/send`, { tag: "vip" }, 202);
    await client.post("/reminders", {
      name: "weekly-call",
      spec: { recipients: { tag: "vip" }, subject: "Weekly call", body: "Tomorrow at ten.", schedule: "0 9 * * 1", timeZone: "Europe/Paris" },
    }, 201);
    await client.post("/admin/broadcasts", {
      name: "maintenance",
      spec: { title: "Maintenance", message: "Read-only tonight.", severity: "warning", at: new Date(Date.now() + 86400000).toISOString() },
    }, 201);

    const pages = [
      "/", "/contacts", `/contacts/${ada.id}`, "/contacts/new", "/contacts/import", "/messages", "/notes", `/notes/${note.id}`,
      "/reminders", "/notifications", "/account", "/admin/broadcasts", "/admin/users",
    ];
    const problems = [];
    for (const scheme of ["light", "dark"]) {
      await page.emulateMedia({ colorScheme: scheme });
      for (const path of pages) {
        for (const [size, viewport] of Object.entries(SIZES)) {
          await page.setViewportSize(viewport);
          await page.goto(path);
          await page.waitForLoadState("load");
          assert.equal(await page.evaluate(() => getComputedStyle(document.body).backgroundColor), BACKGROUND[scheme], `${scheme} ${path}`);
          const name = `${scheme}-${size}${path === "/" ? "-home" : path.replace(/\/[0-9a-f-]{36}/g, "-one").replaceAll("/", "-")}`;
          await page.screenshot({ path: `${SCREENSHOTS}/a11y-${name}.png`, fullPage: true });
          for (const v of await violations(page)) problems.push(`${scheme} ${size} ${path}: ${v.impact} ${v.id} (${v.help}) at ${v.nodes.join(", ")}`);
        }
      }
    }
    // Signed out: the login and sign-up pages.
    const visitor = await open({ bypassCSP: true });
    for (const scheme of ["light", "dark"]) {
      await visitor.emulateMedia({ colorScheme: scheme });
      for (const path of ["/login", "/register", "/forgot"]) {
        await visitor.goto(path);
        for (const v of await violations(visitor)) problems.push(`${scheme} ${path}: ${v.impact} ${v.id} (${v.help}) at ${v.nodes.join(", ")}`);
      }
    }
    t.diagnostic(`axe-core checked ${checked.rules} page views (${pages.length} signed-in pages × 2 widths and 3 signed-out pages, light and dark); ${checked.minor} minor or moderate findings`);
    assert.deepEqual(problems, []);
  });
