// Search in the top bar: a combobox whose panel lists the messages that match what is typed
// (debounced, stale requests aborted), with "Load more", an empty and an error state, and the
// server's completions when it has them. Choosing a hit hands it to `onOpen`; the page opens the
// conversation and brings the message into view.
//
// Snippets come from the server HTML-escaped with `<mark>` around matches. They are never
// inserted as HTML: `snippetParts` turns one into plain text runs (entities decoded) and marked
// runs, which become text nodes and `<mark>` elements, so nothing but `<mark>` can appear.

import { describeError, fullTime, h, icon } from "./util.js";

/** Wait this long after the last keystroke before searching. */
export const DEBOUNCE_MS = 250;
/** Shorter queries are not sent. */
export const MIN_QUERY = 2;
const PAGE_SIZE = 20;
const MAX_SUGGESTIONS = 5;

const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

/** `&lt;` → `<`, `&#39;` → `'`, …; an unknown or malformed entity stays as it is. */
function decodeEntities(text) {
  return text.replace(/&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]+);/g, (whole, name) => {
    if (name[0] !== "#") return Object.hasOwn(ENTITIES, name) ? ENTITIES[name] : whole;
    const code = name[1] === "x" || name[1] === "X" ? Number.parseInt(name.slice(2), 16) : Number.parseInt(name.slice(1), 10);
    return code > 0 && code <= 0x10ffff && !(code >= 0xd800 && code <= 0xdfff) ? String.fromCodePoint(code) : whole;
  });
}

/**
 * A server snippet as runs of text: `[{text, mark}]`, where `text` is plain text (entities
 * decoded once) and `mark` says whether it matched. Exactly `<mark>` and `</mark>` are markup;
 * any other tag-like text (`<b>`, `<mark class=x>`, `<script>`) is kept as literal text. A
 * stray `</mark>` is dropped, a `<mark>` inside a mark ignored, an unclosed one runs to the end.
 */
export function snippetParts(snippet) {
  const parts = [];
  let marked = false;
  const push = (raw) => {
    const text = decodeEntities(raw);
    if (!text) return;
    const last = parts[parts.length - 1];
    if (last && last.mark === marked) last.text += text;
    else parts.push({ text, mark: marked });
  };
  for (const piece of String(snippet ?? "").split(/(<\/?mark>)/)) {
    if (piece === "<mark>") marked = true;
    else if (piece === "</mark>") marked = false;
    else push(piece);
  }
  return parts;
}

/** The snippet as DOM: text nodes and `<mark>` elements only. */
export function renderSnippet(snippet) {
  const fragment = document.createDocumentFragment();
  for (const part of snippetParts(snippet)) {
    fragment.append(part.mark ? h("mark", {}, part.text) : document.createTextNode(part.text));
  }
  return fragment;
}

/** Completions from `GET /v1/search/suggestions`: strings, or objects with a `text`/`value`/`query`. */
export function suggestionTexts(answer) {
  const list = Array.isArray(answer) ? answer : (answer && answer.suggestions) || [];
  const texts = [];
  for (const item of list) {
    const text = typeof item === "string" ? item : item && (item.text ?? item.value ?? item.query);
    if (typeof text === "string" && text.trim() && !texts.includes(text)) texts.push(text);
  }
  return texts;
}

/** "just now", "5 minutes ago", "yesterday", "3 days ago", then the date. */
export function relativeTime(ts, now = Date.now(), locales = undefined) {
  const seconds = Math.round((now - ts) / 1000);
  if (seconds < 45) return "just now";
  const format = new Intl.RelativeTimeFormat(locales, { numeric: "auto" });
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return format.format(-minutes, "minute");
  const hours = Math.round(minutes / 60);
  if (hours < 24) return format.format(-hours, "hour");
  const days = Math.round(hours / 24);
  if (days < 7) return format.format(-days, "day");
  const sameYear = new Date(ts).getFullYear() === new Date(now).getFullYear();
  return new Intl.DateTimeFormat(locales, { month: "short", day: "numeric", year: sameYear ? undefined : "numeric" }).format(new Date(ts));
}

/** What a failed search says: the wait after a 429, else the usual plain-language error. */
export function searchErrorText(err) {
  if (err && err.code === "rate_limited") {
    const seconds = Number.isFinite(err.retryAfter) ? Math.max(1, err.retryAfter) : 1;
    return `Too many searches, try again in ${seconds} s`;
  }
  return `Search failed: ${describeError(err)}`;
}

const SEARCH_ICON = "M11 18a7 7 0 1 1 0-14 7 7 0 0 1 0 14zM16.5 16.5L21 21";

export class SearchBox {
  /**
   * @param {object} o
   * @param {HTMLElement} o.slot where the box goes (`#search-slot`)
   * @param {import("./confab.js").ConfabApi} o.api
   * @param {(id: string) => string} o.conversationName a conversation's title for a hit
   * @param {(hit: object) => void} o.onOpen called with the chosen hit
   */
  constructor({ slot, api, conversationName, onOpen }) {
    this.slot = slot;
    this.api = api;
    this.conversationName = conversationName;
    this.onOpen = onOpen;
    /** The query of the hits shown. */
    this.query = "";
    this.hits = [];
    this.nextCursor = null;
    this.suggestions = [];
    /** false once the server said it has no suggestions (404) */
    this.suggestionsAvailable = true;
    /** idle | loading | more | done | error */
    this.phase = "idle";
    this.error = "";
    /** index into `this.options()`, or -1 */
    this.active = -1;
    this.timer = null;
    this.controller = null;
    this.build();
  }

  build() {
    this.input = h("input", {
      id: "search-input",
      class: "search-input",
      type: "search",
      role: "combobox",
      placeholder: "Search messages",
      autocomplete: "off",
      autocapitalize: "none",
      spellcheck: "false",
      enterkeyhint: "search",
      maxlength: "500",
      "aria-label": "Search messages",
      "aria-autocomplete": "list",
      "aria-expanded": "false",
      "aria-controls": "search-listbox",
      oninput: () => this.onInput(),
      onkeydown: (e) => this.onKey(e),
      onfocus: () => this.showPanel(),
    });
    this.status = h("p", { class: "search-status muted", id: "search-status", role: "status", "aria-live": "polite" });
    this.listbox = h("div", { class: "search-listbox", id: "search-listbox", role: "listbox", "aria-label": "Search results" });
    this.more = h(
      "button",
      { type: "button", class: "btn btn-ghost btn-sm search-more", hidden: true, onclick: () => this.loadMore() },
      "Load more",
    );
    this.panel = h("div", { class: "search-panel", id: "search-panel", hidden: true }, this.status, this.listbox, this.more);
    // Clicks in the panel must not take the focus away from the input (it would close the panel).
    this.panel.addEventListener("mousedown", (e) => e.preventDefault());
    this.toggle = h(
      "button",
      { type: "button", class: "icon-btn search-toggle", "aria-label": "Search", "aria-expanded": "false", onclick: () => this.expand() },
      icon(SEARCH_ICON),
    );
    this.cancel = h("button", { type: "button", class: "btn btn-ghost btn-sm search-cancel", onclick: () => this.collapse() }, "Cancel");
    this.root = h(
      "div",
      { class: "search", role: "search" },
      this.toggle,
      h("div", { class: "search-field" }, icon(SEARCH_ICON), this.input, this.cancel),
      this.panel,
    );
    this.root.addEventListener("focusout", (e) => {
      if (e.relatedTarget && !this.root.contains(e.relatedTarget)) this.closePanel();
    });
    document.addEventListener("pointerdown", (e) => {
      if (!this.root.contains(e.target)) this.closePanel();
    });
    this.slot.replaceChildren(this.root);
  }

  /** Phones: the toggle opens the field over the top bar. */
  expand() {
    this.slot.classList.add("search-expanded");
    this.toggle.setAttribute("aria-expanded", "true");
    this.input.focus();
  }

  collapse() {
    this.closePanel();
    this.slot.classList.remove("search-expanded");
    this.toggle.setAttribute("aria-expanded", "false");
  }

  onInput() {
    clearTimeout(this.timer);
    const q = this.input.value.trim();
    if (q.length < MIN_QUERY) {
      this.abort();
      this.reset();
      this.render();
      return;
    }
    this.timer = setTimeout(() => this.search(q), DEBOUNCE_MS);
  }

  abort() {
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  reset() {
    this.query = "";
    this.hits = [];
    this.nextCursor = null;
    this.suggestions = [];
    this.phase = "idle";
    this.error = "";
    this.active = -1;
  }

  /** A new query: its first page of hits and, if the server has them, completions. */
  async search(q) {
    clearTimeout(this.timer);
    this.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.query = q;
    this.hits = [];
    this.nextCursor = null;
    this.active = -1;
    this.phase = "loading";
    this.showPanel();
    this.render();
    const suggestions = this.fetchSuggestions(q, controller.signal);
    try {
      const page = await this.api.searchMessages(q, { limit: PAGE_SIZE, signal: controller.signal });
      if (controller.signal.aborted) return;
      this.hits = page.hits || [];
      this.nextCursor = page.next_cursor || null;
      this.phase = "done";
    } catch (err) {
      if (controller.signal.aborted || (err && err.name === "AbortError")) return;
      this.phase = "error";
      this.error = searchErrorText(err);
    }
    this.suggestions = await suggestions;
    if (controller.signal.aborted) return;
    this.controller = null;
    this.render();
  }

  async fetchSuggestions(prefix, signal) {
    if (!this.suggestionsAvailable) return [];
    try {
      const texts = suggestionTexts(await this.api.searchSuggestions(prefix, { signal }));
      return texts.filter((text) => text.toLowerCase() !== prefix.toLowerCase()).slice(0, MAX_SUGGESTIONS);
    } catch (err) {
      // A server without suggestions answers 404: stop asking for the rest of the session.
      if (err && err.status === 404) this.suggestionsAvailable = false;
      return [];
    }
  }

  async loadMore() {
    if (!this.nextCursor || this.controller) return;
    const controller = new AbortController();
    this.controller = controller;
    this.phase = "more";
    this.render();
    try {
      const page = await this.api.searchMessages(this.query, { limit: PAGE_SIZE, cursor: this.nextCursor, signal: controller.signal });
      if (controller.signal.aborted) return;
      const known = new Set(this.hits.map((hit) => hit.id));
      this.hits.push(...(page.hits || []).filter((hit) => !known.has(hit.id)));
      this.nextCursor = page.next_cursor || null;
      this.phase = "done";
    } catch (err) {
      if (controller.signal.aborted || (err && err.name === "AbortError")) return;
      this.phase = "error";
      this.error = searchErrorText(err);
    }
    this.controller = null;
    this.render();
  }

  /** Suggestions first, then hits: what the arrow keys move through. */
  options() {
    return [...this.listbox.querySelectorAll('[role="option"]')];
  }

  onKey(e) {
    if (e.isComposing) return;
    const options = this.options();
    switch (e.key) {
      case "ArrowDown":
      case "ArrowUp": {
        e.preventDefault();
        this.showPanel();
        if (!options.length) return;
        const step = e.key === "ArrowDown" ? 1 : -1;
        const from = this.active < 0 && step < 0 ? options.length : this.active;
        this.setActive((from + step + options.length) % options.length);
        return;
      }
      case "Enter": {
        e.preventDefault();
        const option = options[this.active];
        if (option) {
          this.choose(option);
          return;
        }
        const q = this.input.value.trim();
        if (q.length >= MIN_QUERY) this.search(q);
        return;
      }
      case "Escape":
        e.preventDefault();
        if (!this.panel.hidden) this.closePanel();
        else if (this.slot.classList.contains("search-expanded")) this.collapse();
        else if (this.input.value) {
          this.input.value = "";
          this.onInput();
        }
        return;
      default:
        return;
    }
  }

  setActive(index) {
    const options = this.options();
    this.active = index;
    options.forEach((option, i) => option.setAttribute("aria-selected", i === index ? "true" : "false"));
    const option = options[index];
    if (option) {
      this.input.setAttribute("aria-activedescendant", option.id);
      option.scrollIntoView({ block: "nearest" });
    } else {
      this.input.removeAttribute("aria-activedescendant");
    }
  }

  choose(option) {
    if (option.dataset.suggestion !== undefined) {
      this.input.value = option.dataset.suggestion;
      this.search(option.dataset.suggestion);
      return;
    }
    const hit = this.hits[Number(option.dataset.index)];
    if (!hit) return;
    this.closePanel();
    this.slot.classList.remove("search-expanded");
    this.toggle.setAttribute("aria-expanded", "false");
    this.input.blur();
    this.onOpen(hit);
  }

  /** Opens the panel when there is something to show. */
  showPanel() {
    if (this.phase === "idle" && !this.suggestions.length) return;
    this.panel.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
  }

  closePanel() {
    this.panel.hidden = true;
    this.input.setAttribute("aria-expanded", "false");
    this.setActive(-1);
  }

  render() {
    const items = [];
    if (this.suggestions.length) {
      items.push(
        h(
          "div",
          { role: "group", class: "search-group search-suggestions", "aria-label": "Suggestions" },
          this.suggestions.map((text, i) => this.suggestionNode(text, i)),
        ),
      );
    }
    if (this.hits.length) {
      items.push(
        h(
          "div",
          { role: "group", class: "search-group search-hits", "aria-label": "Messages" },
          this.hits.map((hit, i) => this.hitNode(hit, i)),
        ),
      );
    }
    this.listbox.replaceChildren(...items);
    this.listbox.hidden = items.length === 0;
    this.active = -1;
    this.input.removeAttribute("aria-activedescendant");

    const statuses = {
      idle: "",
      loading: "Searching…",
      more: "Loading more…",
      done: this.hits.length ? `${this.hits.length}${this.nextCursor ? "+" : ""} message${this.hits.length === 1 ? "" : "s"}` : "No messages match",
      error: this.error,
    };
    this.status.textContent = statuses[this.phase];
    this.status.className = `search-status${this.phase === "error" ? " search-error" : this.phase === "done" && !this.hits.length ? " search-empty" : " muted"}`;
    this.more.hidden = !this.nextCursor || this.phase === "loading";
    this.more.disabled = this.phase === "more";
    if (this.phase === "idle" && !this.suggestions.length) this.closePanel();
    else if (document.activeElement === this.input) this.showPanel();
  }

  suggestionNode(text, index) {
    return h(
      "div",
      {
        role: "option",
        id: `search-suggestion-${index}`,
        class: "search-option search-suggestion",
        "aria-selected": "false",
        dataset: { suggestion: text },
        onclick: (e) => this.choose(e.currentTarget),
      },
      icon(SEARCH_ICON),
      h("span", {}, text),
    );
  }

  hitNode(hit, index) {
    const title = this.conversationName(hit.conversation);
    const when = relativeTime(hit.ts);
    const snippet = h("div", { class: "search-hit-snippet" }, renderSnippet(hit.snippet));
    return h(
      "div",
      {
        role: "option",
        id: `search-hit-${index}`,
        class: "search-option search-hit",
        "aria-selected": "false",
        dataset: { index: String(index), id: hit.id, conversation: hit.conversation },
        onclick: (e) => this.choose(e.currentTarget),
      },
      h(
        "div",
        { class: "search-hit-head" },
        h("span", { class: "search-hit-conversation" }, title),
        h("span", { class: "search-hit-author" }, hit.author),
        h("time", { class: "search-hit-time", datetime: new Date(hit.ts).toISOString(), title: fullTime(hit.ts) }, when),
      ),
      snippet,
    );
  }
}
