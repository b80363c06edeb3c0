// Unit tests of the search box's pure parts: the snippet sanitiser (server snippets are
// HTML-escaped text with `<mark>`; nothing else may ever become markup), the completions
// parser, relative times and the error line of a refused search.

import assert from "node:assert/strict";
import { test } from "node:test";

import { ConfabApi, ConfabError } from "../../clients/js/src/confab.js";
import { relativeTime, searchErrorText, snippetParts, suggestionTexts } from "../public/search.js";

const text = (t) => ({ text: t, mark: false });
const mark = (t) => ({ text: t, mark: true });

test("a snippet's marks become marked runs and its entities plain text", () => {
  assert.deepEqual(snippetParts("the <mark>deployment</mark> is <mark>tomorrow</mark>"), [
    text("the "),
    mark("deployment"),
    text(" is "),
    mark("tomorrow"),
  ]);
  assert.deepEqual(snippetParts("Hello &lt;b&gt;<mark>x</mark>&lt;/b&gt; &amp; &quot;you&quot; &#39;n&#x27; &apos;"), [
    text("Hello <b>"),
    mark("x"),
    text(`</b> & "you" 'n' '`),
  ]);
  assert.deepEqual(snippetParts(""), []);
  assert.deepEqual(snippetParts(undefined), []);
});

test("entities are decoded once: an escaped entity stays an entity, as text", () => {
  assert.deepEqual(snippetParts("&amp;lt;mark&amp;gt; &amp;amp;"), [text("&lt;mark&gt; &amp;")]);
  // Unknown, malformed or out-of-range entities are left as they are.
  assert.deepEqual(snippetParts("&nbsp; &bogus; & x &#0; &#xD800; &#x110000; &#65;"), [
    text("&nbsp; &bogus; & x &#0; &#xD800; &#x110000; A"),
  ]);
});

test("only exactly <mark> and </mark> are markup; every other tag stays text", () => {
  assert.deepEqual(snippetParts("<b>bold</b> <script>alert(1)</script>"), [text("<b>bold</b> <script>alert(1)</script>")]);
  // Look-alikes are text; the one real `</mark>` closes nothing and is dropped.
  assert.deepEqual(snippetParts('<mark class="x">a</mark> <MARK>b</MARK> <mark >c'), [
    text('<mark class="x">a <MARK>b</MARK> <mark >c'),
  ]);
  assert.deepEqual(snippetParts('<img src=x onerror="alert(1)"><mark>hit</mark>'), [
    text('<img src=x onerror="alert(1)">'),
    mark("hit"),
  ]);
  // An escaped <mark> in the message itself is text, not a mark.
  assert.deepEqual(snippetParts("&lt;mark&gt;not a hit&lt;/mark&gt;"), [text("<mark>not a hit</mark>")]);
});

test("unbalanced marks: stray closers dropped, nested openers ignored, unclosed runs to the end", () => {
  assert.deepEqual(snippetParts("a</mark>b"), [text("ab")]);
  assert.deepEqual(snippetParts("<mark>a<mark>b</mark>c"), [mark("ab"), text("c")]);
  assert.deepEqual(snippetParts("x <mark>open"), [text("x "), mark("open")]);
  assert.deepEqual(snippetParts("<mark></mark>"), []);
  assert.deepEqual(snippetParts("<mark>a</mark><mark>b</mark>"), [mark("ab")]);
});

test("completions are read from strings or objects, deduplicated", () => {
  assert.deepEqual(suggestionTexts({ suggestions: ["deploy", "deployment", "deploy", " "] }), ["deploy", "deployment"]);
  assert.deepEqual(suggestionTexts({ suggestions: [{ text: "alpha" }, { value: "beta" }, { query: "gamma" }, { other: 1 }, null] }), [
    "alpha",
    "beta",
    "gamma",
  ]);
  assert.deepEqual(suggestionTexts(["one"]), ["one"]);
  assert.deepEqual(suggestionTexts(null), []);
  assert.deepEqual(suggestionTexts({}), []);
});

test("hit times read relative to now", () => {
  const now = Date.UTC(2026, 11, 5, 12, 0, 0);
  assert.equal(relativeTime(now - 10_000, now, "en"), "just now");
  assert.equal(relativeTime(now - 5 * 60_000, now, "en"), "5 minutes ago");
  assert.equal(relativeTime(now - 3 * 3600_000, now, "en"), "3 hours ago");
  assert.equal(relativeTime(now - 24 * 3600_000, now, "en"), "yesterday");
  assert.equal(relativeTime(now - 3 * 24 * 3600_000, now, "en"), "3 days ago");
  assert.equal(relativeTime(Date.UTC(2026, 10, 20, 12), now, "en"), "Nov 20");
  assert.equal(relativeTime(Date.UTC(2025, 10, 20, 12), now, "en"), "Nov 20, 2025");
});

test("a refused search says how long to wait", () => {
  const limited = new ConfabError("rate_limited", "more than 60 searches per minute", 429);
  limited.retryAfter = 7;
  assert.equal(searchErrorText(limited), "Too many searches, try again in 7 s");
  assert.equal(searchErrorText(new ConfabError("rate_limited", "slow down", 429)), "Too many searches, try again in 1 s");
  assert.equal(searchErrorText(new ConfabError("network", "the server cannot be reached", 0)), "Search failed: The server cannot be reached.");
});

test("searchMessages sends the query's parameters and reads Retry-After off a 429", async (t) => {
  const seen = [];
  const answers = [
    new Response(JSON.stringify({ hits: [], next_cursor: "c2", indexed_seq: {} }), { status: 200 }),
    new Response(JSON.stringify({ error: { code: "rate_limited", message: "more than 60 searches per minute" } }), {
      status: 429,
      headers: { "retry-after": "12" },
    }),
  ];
  t.mock.method(globalThis, "fetch", async (url, init) => {
    seen.push({ url: new URL(url), init });
    return answers.shift();
  });
  const api = new ConfabApi({ baseUrl: "http://chat.test", token: "tkn" });
  const page = await api.searchMessages('helo "big day" from:bob', { limit: 20, cursor: "c1", waitFor: "conv:7" });
  assert.equal(page.next_cursor, "c2");
  assert.equal(seen[0].url.pathname, "/v1/search/messages");
  assert.equal(seen[0].url.searchParams.get("q"), 'helo "big day" from:bob');
  assert.equal(seen[0].url.searchParams.get("limit"), "20");
  assert.equal(seen[0].url.searchParams.get("cursor"), "c1");
  assert.equal(seen[0].url.searchParams.get("wait_for"), "conv:7");
  assert.equal(seen[0].init.headers.authorization, "Bearer tkn");
  await assert.rejects(api.searchMessages("again"), (err) => err.code === "rate_limited" && err.status === 429 && err.retryAfter === 12);
});
