// End-to-end test of the web demo in a real browser: Debian's chromium driven by playwright-core,
// against the real server binary (tests/server.mjs). Two browser contexts are two people: alice
// on a desktop viewport, bob on a phone viewport. Run with `npm test` (after
// scripts/setup-e2e.sh and a `cargo build -p confab-server`).
//
// The steps share one server and one browser and run in order; each names what it proves.
// Screenshots of the main states go to web-demo/test-output/ (ignored by git); `npm run
// screenshots` writes them to web-demo/screenshots/ instead, to refresh the committed ones.

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { Server } from "./server.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
// Never the committed folder unless asked: a test run must not rewrite tracked files.
const SHOTS = path.resolve(here, "..", process.env.CONFAB_SCREENSHOTS_DIR || "test-output");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-quic",
  "--no-first-run",
  "--disable-component-update",
  "--disable-sync",
];
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
/** How long any single expectation may take. */
const WAIT = 10_000;
const HISTORY_SIZE = 500;

let server;
let browser;
const people = {};
/** Console errors of every page, with the time they were logged. */
const consoleErrors = [];
/** While the test itself cuts the network, the browser reports the failed connections. */
const outage = { from: Infinity, to: Infinity };
const started = Date.now();

async function openPerson(name, viewport, { phone = false } = {}) {
  // Reduced motion: no transitions half-way through a screenshot. A phone has touch and no
  // hover.
  const context = await browser.newContext({
    viewport,
    deviceScaleFactor: 1,
    reducedMotion: "reduce",
    isMobile: phone,
    hasTouch: phone,
  });
  const page = await context.newPage();
  page.on("console", (msg) => {
    if (msg.type() === "error") consoleErrors.push({ who: name, at: Date.now(), text: msg.text() });
  });
  page.on("pageerror", (err) => consoleErrors.push({ who: name, at: Date.now(), text: `uncaught: ${err.message}` }));
  return { name, context, page };
}

async function shot(page, file) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.mouse.move(0, 0); // no hover highlight
  await page.locator("#toasts .toast").first().waitFor({ state: "detached", timeout: WAIT });
  await page.screenshot({ path: path.join(SHOTS, file) });
}

/** Retries `check` (which throws or returns false) until it passes or `timeout` elapses. */
async function eventually(check, { timeout = WAIT, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    try {
      if ((await check()) !== false) return;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

/** The message whose own text (not a quote of it) contains `text`. */
const messageRow = (page, text) =>
  page.locator("#message-list > li.msg").filter({ has: page.locator(".msg-body", { hasText: text }) });

async function waitStatus(page, status) {
  await page.locator(`#status[data-status="${status}"]`).waitFor({ timeout: WAIT });
}

async function signIn(person, displayName) {
  const { page } = person;
  await page.goto(server.baseUrl);
  await page.getByLabel("Your name").fill(displayName);
  await page.getByRole("button", { name: "Sign in" }).click();
  await waitStatus(page, "online");
}

async function sendMessage(page, text) {
  const input = page.getByLabel("Message", { exact: true });
  await input.fill(text);
  await input.press("Enter");
}

async function openConversation(page, title) {
  const entry = page.locator("#conversation-list .conversation", { hasText: title });
  await entry.waitFor({ timeout: WAIT });
  await entry.click();
  await page.locator("#chat-title", { hasText: title }).waitFor({ timeout: WAIT });
}

/** The rendered messages: every id once, seqs strictly increasing. */
async function assertNoDuplicates(page) {
  const rows = await page.$$eval("#message-list > li.msg[data-id]", (els) =>
    els.map((e) => ({ id: e.dataset.id, seq: Number(e.dataset.seq) })),
  );
  const ids = new Set(rows.map((r) => r.id));
  assert.equal(ids.size, rows.length, "a message is shown twice");
  for (let i = 1; i < rows.length; i += 1) {
    assert.ok(rows[i].seq > rows[i - 1].seq, `messages out of order at ${i}`);
  }
  return rows.length;
}

async function countWithText(page, text) {
  return messageRow(page, text).count();
}

before(async () => {
  server = await Server.start();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
  people.alice = await openPerson("alice", DESKTOP);
  people.bob = await openPerson("bob", PHONE, { phone: true });
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

describe("web demo in chromium", { timeout: 120_000 }, () => {
  test("the server serves the page and its assets with types and caching headers", async () => {
    for (const [file, type] of [
      ["/", "text/html"],
      ["/app.js", "text/javascript"],
      ["/confab.js", "text/javascript"],
      ["/style.css", "text/css"],
    ]) {
      const response = await fetch(`${server.baseUrl}${file}`);
      assert.equal(response.status, 200, file);
      assert.ok(response.headers.get("content-type").startsWith(type), `${file}: ${response.headers.get("content-type")}`);
      assert.equal(response.headers.get("cache-control"), "no-cache");
      const etag = response.headers.get("etag");
      const again = await fetch(`${server.baseUrl}${file}`, { headers: { "if-none-match": etag } });
      assert.equal(again.status, 304, `${file} revalidates`);
    }
    const missing = await fetch(`${server.baseUrl}/nope.js`);
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).error.code, "not_found");
  });

  test("both people sign in with the development sign-in", async () => {
    await people.alice.page.goto(server.baseUrl);
    await people.alice.page.getByLabel("Your name").waitFor();
    await shot(people.alice.page, "signin-desktop.png");
    await signIn(people.alice, "Alice");
    await signIn(people.bob, "Bob");
    assert.equal(await people.alice.page.locator("#me-name").textContent(), "Alice");
  });

  test("alice creates a conversation; bob sees it with an unread count", async () => {
    const { page } = people.alice;
    await page.getByRole("button", { name: "New", exact: true }).click();
    await page.getByLabel("Title").fill("Launch plan");
    await page.getByLabel("Members").fill("bob");
    await page.getByRole("button", { name: "Create" }).click();
    await page.locator("#chat-title", { hasText: "Launch plan" }).waitFor();
    await sendMessage(page, "Hi Bob! Are we ready for the launch?");
    await messageRow(page, "ready for the launch").waitFor();
    await eventually(async () => (await page.locator("#message-list .msg-pending").count()) === 0, {
      what: "alice's message to be acknowledged",
    });

    const bob = people.bob.page;
    const entry = bob.locator("#conversation-list .conversation", { hasText: "Launch plan" });
    await entry.waitFor({ timeout: WAIT });
    await entry.locator(".badge", { hasText: "1" }).waitFor({ timeout: WAIT });
    await shot(bob, "conversations-phone.png");
    await openConversation(bob, "Launch plan");
    await messageRow(bob, "ready for the launch").waitFor();
    await eventually(async () => (await entry.locator(".badge").count()) === 0, { what: "unread to clear" });
  });

  test("alice adds a member; both see the member list change", async () => {
    const alice = people.alice.page;
    await alice.getByRole("button", { name: "Add member" }).click();
    await alice.getByLabel("User id").fill("carol");
    await alice.getByRole("dialog").getByRole("button", { name: "Add" }).click();
    for (const page of [alice, people.bob.page]) {
      await page.locator("#chat-members", { hasText: "3 members: alice, bob and carol" }).waitFor({ timeout: WAIT });
    }
  });

  test("typing shows live, and messages go both ways", async () => {
    const alice = people.alice.page;
    const bob = people.bob.page;
    const input = bob.getByLabel("Message", { exact: true });
    await input.pressSequentially("Yes! Shipping today", { delay: 20 });
    await alice.locator("#typing", { hasText: "bob is typing" }).waitFor({ timeout: WAIT });
    await input.press("Enter");
    await messageRow(alice, "Shipping today").waitFor();
    await eventually(async () => (await alice.locator("#typing").textContent()) === "", {
      what: "the typing notice to go once bob's message arrived",
    });
  });

  test("reactions are added and removed by click, with live counts", async () => {
    const alice = people.alice.page;
    const bob = people.bob.page;
    const onAlice = messageRow(alice, "Shipping today");
    await onAlice.hover();
    await onAlice.getByRole("button", { name: "Add reaction" }).click();
    await alice.getByRole("menuitem", { name: "React with 👍" }).click();

    const chipOnBob = messageRow(bob, "Shipping today").locator(".chip", { hasText: "👍" });
    await chipOnBob.locator(".chip-count", { hasText: "1" }).waitFor({ timeout: WAIT });
    assert.equal(await chipOnBob.getAttribute("aria-pressed"), "false");
    await chipOnBob.click();
    const chipOnAlice = onAlice.locator(".chip", { hasText: "👍" });
    await chipOnAlice.locator(".chip-count", { hasText: "2" }).waitFor({ timeout: WAIT });
    assert.equal(await chipOnAlice.getAttribute("aria-pressed"), "true");

    // Keyboard: bob removes his reaction with Enter on the focused chip.
    await bob.locator(".chip[aria-pressed=true]").focus();
    await bob.keyboard.press("Enter");
    await chipOnAlice.locator(".chip-count", { hasText: "1" }).waitFor({ timeout: WAIT });

    // A second emoji from the picker.
    await onAlice.hover();
    await onAlice.getByRole("button", { name: "Add reaction" }).click();
    await alice.getByRole("menuitem", { name: "React with 🎉" }).click();
    await messageRow(bob, "Shipping today").locator(".chip", { hasText: "🎉" }).waitFor({ timeout: WAIT });
  });

  test("bob replies to a message; alice edits and deletes hers", async () => {
    const alice = people.alice.page;
    const bob = people.bob.page;
    const original = messageRow(bob, "ready for the launch");
    await original.click(); // phones have no hover: a tap shows the actions
    await original.getByRole("button", { name: "Reply" }).click();
    await bob.locator("#reply-preview", { hasText: "alice" }).waitFor();
    await sendMessage(bob, "Checklist is done");
    const reply = messageRow(alice, "Checklist is done");
    await reply.locator(".msg-quote", { hasText: "alice" }).waitFor({ timeout: WAIT });

    const mine = messageRow(alice, "ready for the launch");
    await mine.hover();
    await mine.getByRole("button", { name: "Edit" }).click();
    const editor = alice.getByLabel("Edit message");
    await editor.fill("Hi Bob! Are we ready for the launch on Friday?");
    await editor.press("Enter");
    const edited = messageRow(bob, "launch on Friday?");
    await edited.locator(".msg-edited").waitFor({ timeout: WAIT });
    // The reply's quote follows the edit too.
    await messageRow(bob, "Checklist is done").locator(".msg-quote", { hasText: "on Friday" }).waitFor({ timeout: WAIT });

    await sendMessage(alice, "Oops, wrong window");
    await messageRow(bob, "Oops, wrong window").waitFor({ timeout: WAIT });
    const oops = messageRow(alice, "Oops, wrong window");
    await oops.hover();
    await oops.getByRole("button", { name: "Delete" }).click();
    await alice.getByRole("dialog").getByRole("button", { name: "Delete" }).click();
    await bob.locator("#message-list .msg-deleted", { hasText: "This message was deleted." }).waitFor({ timeout: WAIT });
    assert.equal(await countWithText(bob, "Oops, wrong window"), 0);
  });

  test("read receipts show who has seen what", async () => {
    const alice = people.alice.page;
    await sendMessage(people.bob.page, "See you at the stand-up");
    await messageRow(alice, "See you at the stand-up").waitFor({ timeout: WAIT });
    await sendMessage(alice, "Great, thanks!");
    await messageRow(alice, "Great, thanks!").locator(".msg-receipts", { hasText: "Seen by bob" }).waitFor({ timeout: WAIT });
    await shot(alice, "chat-desktop.png");
    await shot(people.bob.page, "chat-phone.png");
    // On a phone the list and the conversation are two screens.
    const bob = people.bob.page;
    assert.equal(await bob.locator("#conversation-list").isVisible(), false);
    await bob.getByRole("button", { name: "Back to conversations" }).click();
    await bob.locator("#conversation-list").waitFor();
    assert.equal(await bob.locator("#chat-main").isVisible(), false);
    await openConversation(bob, "Launch plan");
  });

  test(`history: ${HISTORY_SIZE} messages paged back by infinite scroll`, async (t) => {
    const bobToken = await server.token("bob", "Bob");
    const conversation = await server.rest(bobToken, "POST", "/v1/conversations", {
      kind: "group",
      title: "Release history",
      members: ["alice"],
    });
    const seedStarted = Date.now();
    // One after the other, so that message n has seq n + 1 and the order can be checked.
    for (let n = 1; n <= HISTORY_SIZE; n += 1) {
      await server.rest(bobToken, "POST", `/v1/conversations/${conversation.id}/messages`, {
        client_msg_id: `seed-${n}`,
        body: `History message ${n}`,
      });
    }
    t.diagnostic(`seeded ${HISTORY_SIZE} messages in ${Date.now() - seedStarted} ms`);

    const alice = people.alice.page;
    const pagingStarted = Date.now();
    await openConversation(alice, "Release history");
    await alice.locator("#message-list > li.msg").first().waitFor();
    const beginning = alice.locator("#history-edge .beginning");
    while (!(await beginning.isVisible())) {
      const before = await alice.locator("#message-list > li.msg").count();
      await alice.locator("#messages").evaluate((el) => el.scrollTo({ top: 0 }));
      await eventually(
        async () => (await alice.locator("#message-list > li.msg").count()) > before || (await beginning.isVisible()),
        { what: `a page before the ${before} loaded messages` },
      );
    }
    t.diagnostic(`paged back through ${HISTORY_SIZE} messages in ${Date.now() - pagingStarted} ms`);
    assert.equal(await assertNoDuplicates(alice), HISTORY_SIZE);
    const bodies = await alice.$$eval("#message-list .msg-body", (els) => els.map((e) => e.textContent));
    const expected = Array.from({ length: HISTORY_SIZE }, (_, i) => `History message ${i + 1}`);
    assert.deepEqual(bodies, expected);
    await alice.locator("#messages").evaluate((el) => el.scrollTo({ top: 0 }));
    await shot(alice, "history-desktop.png");
  });

  test("after a server restart, missed messages arrive once and offline sends are delivered", async () => {
    const alice = people.alice.page;
    const bob = people.bob.page;
    await openConversation(alice, "Launch plan");
    await messageRow(alice, "Great, thanks!").waitFor();

    // Cut alice off: the restart drops both sockets, and alice cannot come back until the
    // network returns, so everything bob sends meanwhile is missed by her.
    outage.from = Date.now();
    await people.alice.context.setOffline(true);
    await server.restart();
    await waitStatus(alice, "reconnecting");
    await waitStatus(bob, "online");

    const missed = ["Missed one", "Missed two", "Missed three"];
    for (const text of missed) await sendMessage(bob, text);
    await eventually(async () => (await bob.locator("#message-list .msg-pending").count()) === 0, {
      what: "bob's messages to be acknowledged by the restarted server",
    });
    await sendMessage(alice, "Written while offline");
    await messageRow(alice, "Written while offline").locator(".msg-status", { hasText: "Sending" }).waitFor();
    assert.equal(await countWithText(alice, "Missed one"), 0);
    await shot(alice, "reconnecting-desktop.png");

    await people.alice.context.setOffline(false);
    await waitStatus(alice, "online");
    for (const text of missed) await messageRow(alice, text).waitFor({ timeout: WAIT });
    await messageRow(bob, "Written while offline").waitFor({ timeout: WAIT });
    await eventually(async () => (await alice.locator("#message-list .msg-pending").count()) === 0, {
      what: "alice's offline message to be acknowledged",
    });
    outage.to = Date.now();

    // Give any duplicate a moment to show up, then count.
    await new Promise((r) => setTimeout(r, 500));
    for (const page of [alice, bob]) {
      for (const text of [...missed, "Written while offline"]) {
        assert.equal(await countWithText(page, text), 1, `"${text}" shown once`);
      }
      await assertNoDuplicates(page);
    }
  });

  test("no console errors (besides the connections the test cut on purpose)", () => {
    const expected = /WebSocket connection to .* failed|Failed to load resource: net::ERR_/;
    const unexpected = consoleErrors.filter(
      (e) => !(e.at >= outage.from && e.at <= outage.to && expected.test(e.text)),
    );
    assert.deepEqual(unexpected, []);
  });

  test("the whole run stays within its time budget", (t) => {
    const elapsed = Date.now() - started;
    t.diagnostic(`e2e took ${(elapsed / 1000).toFixed(1)} s`);
    assert.ok(elapsed < 120_000, `e2e took ${elapsed} ms`);
  });
});
