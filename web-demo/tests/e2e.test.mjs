// End-to-end test of the web demo in a real browser: Debian's chromium driven by playwright-core,
// against the real server binary (clients/js/test/server.mjs). Two browser contexts are two people: alice
// on a desktop viewport, bob on a phone viewport. They also share files: picked, dropped and
// pasted, small and chunked, refused, shown as thumbnails and downloaded through signed links.
// Run with `npm test` (after
// scripts/setup-e2e.sh and a `cargo build -p confab-server`).
//
// The steps share one server and one browser and run in order; each names what it proves.
// The browser gets the page from the server; when the server binary embeds an older
// web-demo/public/ than the working tree ($CONFAB_BIN built before the last edit), it gets the
// working tree's files instead, with the server's headers (its CSP included), and says so.
// Screenshots of the main states go to web-demo/test-output/ (ignored by git); `npm run
// screenshots` writes them to web-demo/screenshots/ instead, to refresh the committed ones.

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { Server } from "../../clients/js/test/server.mjs";

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
const PUBLIC = path.resolve(here, "..", "public");
/** The client library, which the server serves beside the page as /confab.js. */
const CLIENT_SRC = path.resolve(here, "..", "..", "clients", "js", "src");

/** The working tree's copy of a served file name. */
function sourceOf(name) {
  const inPublic = path.join(PUBLIC, name);
  return fs.existsSync(inPublic) ? inPublic : path.join(CLIENT_SRC, name);
}
const CONTENT_TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml" };

let server;
let browser;
/** Files of web-demo/public/ that the server serves differently (an older binary), or none. */
let staleFiles = [];
const people = {};
/** Console errors of every page, with the time they were logged. */
const consoleErrors = [];
/** Errors the test causes on purpose (a cut network, a refused upload): `{pattern, from, to}`. */
const expectedErrors = [];

/** From now until the returned function is called, console errors matching `pattern` are fine. */
function expectConsoleErrors(pattern) {
  const window = { pattern, from: Date.now(), to: Infinity };
  expectedErrors.push(window);
  return () => {
    window.to = Date.now();
  };
}
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
  if (staleFiles.length) await context.route((url) => url.origin === server.baseUrl && publicFile(url.pathname), servePublicFile);
  page.on("console", (msg) => {
    // The URL too: "Failed to load resource" does not name the resource in its text.
    if (msg.type() === "error") consoleErrors.push({ who: name, at: Date.now(), text: `${msg.text()} ${msg.location().url || ""}`.trim() });
  });
  page.on("pageerror", (err) => consoleErrors.push({ who: name, at: Date.now(), text: `uncaught: ${err.message}` }));
  return { name, context, page };
}

/** The file of web-demo/public/ (or the client library) that a page path names, or null. */
function publicFile(pathname) {
  const name = pathname === "/" ? "index.html" : decodeURIComponent(pathname.slice(1));
  if (name.includes("/") || !fs.existsSync(sourceOf(name))) return null;
  return name;
}

/** The files the server serves otherwise than the working tree has them. */
async function findStaleFiles() {
  const stale = [];
  for (const name of [...fs.readdirSync(PUBLIC), ...fs.readdirSync(CLIENT_SRC)]) {
    const response = await fetch(`${server.baseUrl}/${name}`);
    const served = Buffer.from(await response.arrayBuffer());
    if (response.status !== 200 || !served.equals(fs.readFileSync(sourceOf(name)))) stale.push(name);
  }
  return stale;
}

/** Answers with the working tree's file and the server's headers for it (its own, if it has none). */
async function servePublicFile(route) {
  const name = publicFile(new URL(route.request().url()).pathname);
  let response;
  try {
    response = await route.fetch();
  } catch {
    // The server is down (the restart test): the browser sees what it would see without us.
    await route.abort("connectionreset").catch(() => {});
    return;
  }
  const headers = response.status() === 200 ? { ...response.headers() } : { "cache-control": "no-cache" };
  for (const header of ["etag", "content-length", "content-encoding"]) delete headers[header];
  headers["content-type"] = CONTENT_TYPES[path.extname(name)] || "application/octet-stream";
  await route.fulfill({ status: 200, headers, body: fs.readFileSync(sourceOf(name)) });
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

/** A real PNG from the browser's own encoder: a 480×270 launch banner in flat colours. */
async function drawBanner(page) {
  const dataUrl = await page.evaluate(async () => {
    const canvas = new OffscreenCanvas(480, 270);
    const g = canvas.getContext("2d");
    g.fillStyle = "#312e81";
    g.fillRect(0, 0, 480, 270);
    g.fillStyle = "#4338ca";
    g.fillRect(0, 190, 480, 80);
    g.fillStyle = "#e0e7ff";
    for (const [x, y] of [[40, 30], [120, 70], [210, 24], [300, 60], [90, 130], [250, 120], [440, 28]]) {
      g.fillRect(x, y, 3, 3);
    }
    g.fillStyle = "#f59e0b";
    g.beginPath();
    g.arc(390, 95, 46, 0, Math.PI * 2);
    g.fill();
    // The rocket: body, nose, fins and flame.
    g.fillStyle = "#f8fafc";
    g.fillRect(196, 92, 36, 86);
    g.fillStyle = "#ef4444";
    g.beginPath();
    g.moveTo(196, 92);
    g.lineTo(214, 52);
    g.lineTo(232, 92);
    g.fill();
    g.beginPath();
    g.moveTo(196, 150);
    g.lineTo(178, 182);
    g.lineTo(196, 178);
    g.moveTo(232, 150);
    g.lineTo(250, 182);
    g.lineTo(232, 178);
    g.fill();
    g.fillStyle = "#fbbf24";
    g.beginPath();
    g.moveTo(202, 178);
    g.lineTo(214, 214);
    g.lineTo(226, 178);
    g.fill();
    g.fillStyle = "#ffffff";
    g.font = "bold 30px sans-serif";
    g.fillText("LAUNCH · FRIDAY", 24, 244);
    const blob = await canvas.convertToBlob({ type: "image/png" });
    return new Promise((resolve) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.readAsDataURL(blob);
    });
  });
  return Buffer.from(dataUrl.slice(dataUrl.indexOf(",") + 1), "base64");
}

/** The big file of the chunked upload: numbered text lines, 5.6 MB (two chunks of 5 MiB). */
function releaseLog() {
  return Array.from({ length: 200_000 }, (_, i) => `line ${String(i).padStart(6, "0")}: all systems go\n`).join("");
}

/** Waits for an element's `href` (set once its signed link arrives) and returns it. */
async function hrefOf(locator) {
  let href = "";
  await eventually(async () => {
    href = await locator.evaluate((a) => a.href);
    return href !== "";
  }, { what: "a signed link" });
  return href;
}

/** Whether an element is wholly inside the visible part of the message list. */
async function inView(locator) {
  return locator.evaluate((el) => {
    const box = el.getBoundingClientRect();
    const view = document.getElementById("messages").getBoundingClientRect();
    return box.top >= view.top - 1 && box.bottom <= view.bottom + 1;
  });
}

/** Whether an <img> has loaded a picture. */
async function imageLoaded(img) {
  return img.evaluate((el) => el.complete && el.naturalWidth > 0);
}

before(async () => {
  server = await Server.start();
  staleFiles = await findStaleFiles();
  // A page the test answers itself has no address space of its own, so Chromium's Local Network
  // Access checks would block its WebSocket to 127.0.0.1; a page the server sends needs no flag.
  const flags = staleFiles.length ? [...CHROMIUM_FLAGS, "--disable-features=LocalNetworkAccessChecks"] : CHROMIUM_FLAGS;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: flags });
  people.alice = await openPerson("alice", DESKTOP);
  people.bob = await openPerson("bob", PHONE, { phone: true });
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

describe("web demo in chromium", { timeout: 120_000 }, () => {
  test("the server serves the page and its assets with types and caching headers", async (t) => {
    if (staleFiles.length) {
      t.diagnostic(`the server binary embeds an older page (${staleFiles.join(", ")}): the browser gets web-demo/public/ and clients/js/src/ from disk`);
    }
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

  test("a refused file shows the server's reason in the tray and is not sent", async () => {
    const bob = people.bob.page;
    const refusalShown = expectConsoleErrors(/Failed to load resource: the server responded with a status of 415/);
    // A paste with a file: the one way to attach on a phone without the file picker.
    await bob.getByLabel("Message", { exact: true }).evaluate((input) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File(["#!/bin/sh\necho deploying\n"], "deploy.sh", { type: "application/x-sh" }));
      input.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
    });
    const refused = bob.locator('#upload-tray .upload[data-state="failed"]');
    await refused.waitFor({ timeout: WAIT });
    refusalShown();
    assert.match(await refused.locator(".upload-error").textContent(), /^Not accepted: executable files \(text\/x-shellscript\) are not allowed/);
    await shot(bob, "upload-refused-phone.png");
    // Enter with nothing uploaded and no text sends nothing.
    await bob.getByLabel("Message", { exact: true }).press("Enter");
    await refused.getByRole("button", { name: "Remove deploy.sh" }).click();
    await bob.locator("#upload-tray").waitFor({ state: "hidden" });
    assert.equal(await bob.locator("#message-list .msg-pending").count(), 0);
  });

  test("alice attaches an image and a text file; bob sees the thumbnail and downloads the file", async () => {
    const alice = people.alice.page;
    const bob = people.bob.page;
    const banner = await drawBanner(alice);
    const checklist = Buffer.from("Launch checklist\n- staging is green\n- release notes\n- rollback plan\n");
    await alice.locator("#attach-input").setInputFiles([
      { name: "launch-banner.png", mimeType: "image/png", buffer: banner },
      { name: "checklist.txt", mimeType: "text/plain", buffer: checklist },
    ]);
    const tray = alice.locator("#upload-tray");
    await eventually(async () => (await tray.locator('.upload[data-state="done"]').count()) === 2, {
      what: "both uploads to finish",
    });
    await tray.locator(".upload", { hasText: "launch-banner.png" }).locator(".upload-meta", { hasText: "Ready" }).waitFor();
    await sendMessage(alice, "Banner and checklist for Friday");
    await tray.waitFor({ state: "hidden" });

    // Bob (another browser, another person) gets a thumbnail, not the file itself.
    const row = messageRow(bob, "Banner and checklist");
    await row.waitFor({ timeout: WAIT });
    const thumb = row.locator(".att-image img");
    await eventually(() => imageLoaded(thumb), { what: "bob's thumbnail to load" });
    const size = await thumb.evaluate((img) => [img.naturalWidth, img.naturalHeight]);
    assert.deepEqual(size, [320, 180], "a thumbnail of the 480×270 picture");
    const file = row.locator("a.att-file", { hasText: "checklist.txt" });
    assert.equal((await file.textContent()).trim(), `checklist.txt · ${checklist.length} B`);

    // Both links are signed: they work without a token, here from outside the browser.
    const fileHref = await hrefOf(file);
    assert.match(new URL(fileHref).pathname, /^\/v1\/signed\/media\//);
    const download = await fetch(fileHref);
    assert.equal(download.status, 200);
    assert.deepEqual(Buffer.from(await download.arrayBuffer()), checklist);
    const full = await fetch(await hrefOf(row.locator("a.att-image")));
    assert.equal(full.headers.get("content-type"), "image/png");
    assert.deepEqual(Buffer.from(await full.arrayBuffer()), banner);

    // Alice's own message shows it too; a click opens the full picture in a new tab.
    const own = messageRow(alice, "Banner and checklist");
    await eventually(() => imageLoaded(own.locator(".att-image img")), { what: "alice's thumbnail to load" });
    await hrefOf(own.locator("a.att-image"));
    const [tab] = await Promise.all([people.alice.context.waitForEvent("page"), own.locator("a.att-image").click()]);
    await tab.waitForLoadState();
    assert.match(new URL(tab.url()).pathname, /^\/v1\/signed\/media\//);
    assert.equal(await tab.evaluate(() => document.images[0] && document.images[0].naturalWidth), 480);
    await tab.close();
    await eventually(() => imageLoaded(messageRow(bob, "Banner and checklist").locator(".att-image img")));
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

  test("a file over 5 MiB, dropped on the conversation, goes up in chunks and resumes after a dropped connection", async () => {
    const alice = people.alice.page;
    const bob = people.bob.page;
    const log = releaseLog();
    const bytes = Buffer.from(log);
    assert.ok(bytes.length > 5 * 1024 * 1024 && bytes.length < 10 * 1024 * 1024);

    // The second chunk's first attempt is held, then its connection is reset.
    const chunks = [];
    let release;
    const held = new Promise((resolve) => {
      release = resolve;
    });
    const pattern = "**/v1/media/uploads/*/chunks/*";
    await people.alice.context.route(pattern, async (route) => {
      const n = Number(new URL(route.request().url()).pathname.split("/").pop());
      chunks.push(n);
      if (n === 1 && chunks.filter((c) => c === 1).length === 1) {
        await held;
        await route.abort("connectionreset");
        return;
      }
      await route.continue();
    });
    const resetOver = expectConsoleErrors(/Failed to load resource: net::ERR_/);

    const messages = alice.locator("#messages");
    await messages.evaluate((el) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File(["x"], "probe.txt"));
      el.dispatchEvent(new DragEvent("dragenter", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    });
    await alice.locator("#drop-hint").waitFor();
    await messages.evaluate((el, text) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File([text], "release-log.txt", { type: "text/plain" }));
      el.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }, log);
    await alice.locator("#drop-hint").waitFor({ state: "hidden" });

    const upload = alice.locator("#upload-tray .upload", { hasText: "release-log.txt" });
    await eventually(() => chunks.includes(1), { what: "the second chunk to be sent" });
    const bar = upload.locator("progress");
    await bar.waitFor();
    assert.ok(Number(await bar.getAttribute("max")) === bytes.length);
    assert.ok((await bar.evaluate((el) => el.value)) >= 5 * 1024 * 1024, "the first chunk counts as sent");
    assert.equal(await alice.locator("#send-btn").isDisabled(), true, "no sending while uploading");
    await shot(alice, "upload-progress-desktop.png");
    release();

    await upload.locator(".upload-meta", { hasText: "Ready" }).waitFor({ timeout: WAIT });
    resetOver();
    await people.alice.context.unroute(pattern);
    assert.deepEqual(chunks, [0, 1, 1], "after the reset only the missing chunk went again");

    await sendMessage(alice, "Release log attached");
    const link = messageRow(bob, "Release log attached").locator("a.att-file", { hasText: "release-log.txt" });
    await link.waitFor({ timeout: WAIT });
    assert.equal((await link.textContent()).trim(), "release-log.txt · 5.6 MB");
    const download = await fetch(await hrefOf(link));
    assert.deepEqual(Buffer.from(await download.arrayBuffer()), bytes);
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

  test("search: typos forgiven, matches marked, a hit opens at its message; markup stays text; only own conversations", async (t) => {
    const alice = people.alice.page;
    const bob = people.bob.page;
    // This server has no completions endpoint yet: the box asks once, gets a 404 and stops.
    const noSuggestions = expectConsoleErrors(/status of 404 \(Not Found\) \S*\/v1\/search\/suggestions\?/);
    const bobToken = await server.token("bob", "Bob");
    const aliceToken = await server.token("alice", "Alice");

    // Bob writes two messages in "Launch plan"; the test waits until search has them.
    assert.equal(await bob.locator("#chat-title").textContent(), "Launch plan");
    await sendMessage(bob, "The rollout playbook lives in the wiki");
    await sendMessage(bob, "Formatting stays literal: <b>x</b> is not bold");
    await eventually(async () => (await bob.locator("#message-list .msg-pending").count()) === 0, {
      what: "bob's messages to be acknowledged",
    });
    const launchPlan = decodeURIComponent(new URL(bob.url()).hash.replace(/^#\/c\//, ""));
    const lastSeq = await messageRow(bob, "Formatting stays literal").getAttribute("data-seq");
    await server.rest(bobToken, "GET", `/v1/search/messages?q=literal&wait_for=${encodeURIComponent(`${launchPlan}:${lastSeq}`)}`);
    // The tag is text in the conversation too.
    assert.equal(await messageRow(bob, "Formatting stays literal").locator(".msg-body b").count(), 0);

    // Alice, in another conversation, searches with a typo.
    assert.equal(await alice.locator("#chat-title").textContent(), "Release history");
    const box = alice.getByRole("combobox", { name: "Search messages" });
    await box.fill("playbok");
    const panel = alice.locator("#search-panel");
    const hits = alice.locator("#search-listbox .search-hit");
    const playbook = hits.filter({ hasText: "rollout" });
    await playbook.waitFor({ timeout: WAIT });
    assert.equal(await box.getAttribute("aria-expanded"), "true");
    assert.deepEqual(await playbook.locator("mark").allTextContents(), ["playbook"]);
    assert.equal(await playbook.locator(".search-hit-conversation").textContent(), "Launch plan");
    assert.equal(await playbook.locator(".search-hit-author").textContent(), "bob");
    assert.equal(await playbook.locator(".search-hit-time").textContent(), "just now");
    assert.equal(await alice.locator("#search-suggestions, .search-suggestion").count(), 0, "no completions without the endpoint");
    await shot(alice, "search-desktop.png");

    // Keyboard: down to the hit, Enter opens its conversation at the message, highlighted.
    await box.press("ArrowDown");
    const activeId = await box.getAttribute("aria-activedescendant");
    assert.equal(await alice.locator(`#${activeId}`).getAttribute("aria-selected"), "true");
    assert.equal(await alice.locator(`#${activeId}`).textContent(), await playbook.first().textContent());
    await box.press("Enter");
    await alice.locator("#chat-title", { hasText: "Launch plan" }).waitFor({ timeout: WAIT });
    await panel.waitFor({ state: "hidden" });
    const found = messageRow(alice, "rollout playbook");
    await found.and(alice.locator(".msg-found")).waitFor({ timeout: WAIT });
    await eventually(() => inView(found), { what: "the opened message to be in view" });

    // A message with markup: the snippet shows it as text, with only the match marked.
    await box.fill("literal");
    const literal = hits.filter({ hasText: "Formatting stays" });
    await literal.waitFor({ timeout: WAIT });
    const snippet = literal.locator(".search-hit-snippet");
    assert.equal(await snippet.locator("b").count(), 0, "<b> is not markup");
    assert.match(await snippet.textContent(), /<b>x<\/b> is not bold/);
    assert.deepEqual(await snippet.evaluate((el) => [...el.children].map((c) => c.tagName)), ["MARK"]);
    await box.press("Escape");
    await panel.waitFor({ state: "hidden" });
    assert.equal(await box.getAttribute("aria-expanded"), "false");

    // A message far older than what a fresh page loads: the history is paged back to it.
    await alice.reload();
    await waitStatus(alice, "online");
    // Completions come first when the server has them (faked here, this one answers 404);
    // choosing one searches for it.
    const completions = "**/v1/search/suggestions?*";
    await alice.route(completions, (route) =>
      route.fulfill({ status: 200, headers: { "content-type": "application/json" }, body: JSON.stringify({ suggestions: ['"History message 12"'] }) }),
    );
    await box.fill("History mes");
    await alice.locator("#search-listbox .search-suggestion", { hasText: '"History message 12"' }).waitFor({ timeout: WAIT });
    await box.press("ArrowDown");
    assert.equal(await box.getAttribute("aria-activedescendant"), "search-suggestion-0");
    await box.press("Enter");
    assert.equal(await box.inputValue(), '"History message 12"');
    const twelve = hits.filter({ hasText: "Release history" });
    await twelve.waitFor({ timeout: WAIT });
    await alice.unroute(completions);
    assert.equal(await hits.count(), 1);
    assert.equal(await alice.locator("#search-listbox .search-suggestion").count(), 0, "the chosen completion is not offered again");
    await twelve.click();
    await alice.locator("#chat-title", { hasText: "Release history" }).waitFor({ timeout: WAIT });
    const row = alice.locator("#message-list > li.msg").filter({ has: alice.locator(".msg-body", { hasText: /^History message 12$/ }) });
    await row.and(alice.locator(".msg-found")).waitFor({ timeout: WAIT });
    await eventually(() => inView(row), { what: "message 12 to be in view" });
    const loaded = await assertNoDuplicates(alice);
    t.diagnostic(`paged back to message 12: ${loaded} messages loaded`);
    assert.ok(loaded >= HISTORY_SIZE - 11 && loaded <= HISTORY_SIZE);

    // "Load more" follows next_cursor.
    await box.fill("History message");
    await eventually(async () => (await hits.count()) === 20, { what: "the first page of hits" });
    const more = alice.getByRole("button", { name: "Load more" });
    await more.click();
    await eventually(async () => (await hits.count()) === 40, { what: "the second page of hits" });
    const ids = await hits.evaluateAll((els) => els.map((e) => e.dataset.id));
    assert.equal(new Set(ids).size, 40, "no hit twice");
    await box.press("Escape");

    // Carol and alice have a conversation bob is not in: bob finds nothing of it.
    const carolToken = await server.token("carol", "Carol");
    const budget = await server.rest(carolToken, "POST", "/v1/conversations", { kind: "group", title: "Budget review", members: ["alice"] });
    const sent = await server.rest(carolToken, "POST", `/v1/conversations/${budget.id}/messages`, {
      client_msg_id: "budget-1",
      body: "The quarterly budget spreadsheet is final",
    });
    const forAlice = await server.rest(aliceToken, "GET", `/v1/search/messages?q=quarterly+budget&wait_for=${encodeURIComponent(`${budget.id}:${sent.seq}`)}`);
    assert.deepEqual(forAlice.hits.map((hit) => hit.id), [sent.id], "indexed, and found by a member");
    await bob.getByRole("button", { name: "Search", exact: true }).click();
    const bobBox = bob.getByRole("combobox", { name: "Search messages" });
    await bobBox.fill("quarterly budget");
    await bob.locator("#search-panel .search-empty", { hasText: "No messages match" }).waitFor({ timeout: WAIT });
    assert.equal(await bob.locator("#search-listbox .search-hit").count(), 0);
    // On a phone the results take the screen under the top bar.
    const size = await bob.locator("#search-panel").boundingBox();
    assert.ok(size.width >= PHONE.width - 1, `the panel is ${size.width} px wide`);
    await shot(bob, "search-phone.png");
    await bob.getByRole("button", { name: "Cancel" }).click();
    await bob.locator("#search-panel").waitFor({ state: "hidden" });
    assert.equal(await bobBox.isVisible(), false);
    noSuggestions();

    // Past the per-user limit the server answers 429 with Retry-After: the box says how long.
    const limited = expectConsoleErrors(/status of 429 \(Too Many Requests\) \S*\/v1\/search\/messages\?/);
    const pattern = "**/v1/search/messages?*";
    await alice.route(pattern, (route) =>
      route.fulfill({
        status: 429,
        headers: { "content-type": "application/json", "retry-after": "7" },
        body: JSON.stringify({ error: { code: "rate_limited", message: "more than 60 searches per minute" } }),
      }),
    );
    await box.fill("anything");
    await alice.locator("#search-panel .search-error", { hasText: "Too many searches, try again in 7 s" }).waitFor({ timeout: WAIT });
    await alice.unroute(pattern);
    limited();
    await box.press("Escape");
    await box.press("Escape");
    assert.equal(await box.inputValue(), "", "a second Escape clears the box");
  });

  test("after a server restart, missed messages arrive once and offline sends are delivered", async () => {
    const alice = people.alice.page;
    const bob = people.bob.page;
    await openConversation(alice, "Launch plan");
    await messageRow(alice, "Great, thanks!").waitFor();

    // Cut alice off: the restart drops both sockets, and alice cannot come back until the
    // network returns, so everything bob sends meanwhile is missed by her.
    const outageOver = expectConsoleErrors(/WebSocket connection to .* failed|Failed to load resource: net::ERR_/);
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
    outageOver();

    // Give any duplicate a moment to show up, then count.
    await new Promise((r) => setTimeout(r, 500));
    for (const page of [alice, bob]) {
      for (const text of [...missed, "Written while offline"]) {
        assert.equal(await countWithText(page, text), 1, `"${text}" shown once`);
      }
      await assertNoDuplicates(page);
    }
  });

  test("no console errors (besides the failures the test caused on purpose)", () => {
    const unexpected = consoleErrors.filter(
      (e) => !expectedErrors.some((w) => e.at >= w.from && e.at <= w.to && w.pattern.test(e.text)),
    );
    assert.deepEqual(unexpected, []);
  });

  test("the whole run stays within its time budget", (t) => {
    const elapsed = Date.now() - started;
    t.diagnostic(`e2e took ${(elapsed / 1000).toFixed(1)} s`);
    assert.ok(elapsed < 120_000, `e2e took ${elapsed} ms`);
  });
});
