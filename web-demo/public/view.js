// The message list of the open conversation: keyed rendering (an element per message, rebuilt
// only when that message, its grouping or its receipts change), scroll anchoring while older
// pages are prepended, infinite scroll back, and the per-message actions (reply, react, edit,
// delete) reachable by mouse and keyboard.

import { hasThumbnail } from "./confab.js";
import { avatar, clockTime, fullTime, h, humanSize, icon, joinNames, messagePreview } from "./util.js";

/** The reactions offered by the picker. */
export const QUICK_REACTIONS = ["👍", "❤️", "😂", "🎉", "😮", "🙏"];
/** Consecutive messages of one author within this window share one header. */
const GROUP_WINDOW_MS = 5 * 60 * 1000;
/** Start loading the previous page this close to the top. */
const LOAD_MARGIN_PX = 400;

const ICONS = {
  reply: "M10 9V5l-7 7 7 7v-4.1c5 0 8.5 1.6 11 5.1-1-5-4-10-11-11z",
  react: "M12 21a9 9 0 1 1 0-18 9 9 0 0 1 0 18zM8.5 14.5s1.3 2 3.5 2 3.5-2 3.5-2M9 9.5h.01M15 9.5h.01",
  edit: "M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4",
  del: "M5 7h14M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3",
  file: "M14 3H6v18h12V7l-4-4zM14 3v4h4M9 13h6M9 17h6",
};

export class MessageView {
  /**
   * @param {object} o
   * @param {HTMLElement} o.scroller the scrolling container
   * @param {HTMLElement} o.list the `<ol>` of messages
   * @param {HTMLElement} o.edge the element above the list (loading / beginning notice)
   * @param {string} o.me the signed-in user
   * @param {object} o.actions callbacks: reply(msg), toggleReaction(msg, emoji), edit(msg,
   *   body), remove(msg), retry(pending), loadOlder(), replyTarget(id) → message or null;
   *   for attachments: mediaLink(id) → Promise<{url, expiresAt}> (a signed link),
   *   cachedMediaLink(id) → that link if still good or null, thumbnail(id) → Promise<blob URL>.
   */
  constructor({ scroller, list, edge, me, actions }) {
    this.scroller = scroller;
    this.list = list;
    this.edge = edge;
    this.me = me;
    this.actions = actions;
    this.thread = null;
    /** key → {node, hash} */
    this.nodes = new Map();
    this.editing = null;
    this.picker = null;
    this.loadingOlder = false;
    this.jump = h(
      "button",
      { type: "button", class: "jump-btn", hidden: true, onclick: () => this.scrollToBottom(true) },
      "New messages ↓",
    );
    scroller.parentElement.insertBefore(this.jump, scroller.nextSibling);
    scroller.addEventListener("scroll", () => this.#onScroll(), { passive: true });
    /** Whether the reader was at the newest message when last seen (kept there on resizes). */
    this.stuck = true;
    // The list gets shorter when the upload tray, a reply preview or a phone keyboard appears:
    // a reader who was at the bottom stays there.
    new ResizeObserver(() => {
      if (this.stuck && !this.atBottom()) this.scrollToBottom();
    }).observe(scroller);
    document.addEventListener("pointerdown", (e) => {
      if (this.picker && !this.picker.contains(e.target) && !e.target.closest(".react-btn")) {
        this.closePicker();
      }
    });
  }

  /** Shows another thread (or the same one again) scrolled to its newest message. */
  show(thread) {
    this.thread = thread;
    this.editing = null;
    this.closePicker();
    this.list.replaceChildren();
    this.nodes.clear();
    this.render({ stickToBottom: true });
  }

  atBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 48;
  }

  scrollToBottom(smooth = false) {
    this.scroller.scrollTo({ top: this.scroller.scrollHeight, behavior: smooth ? "smooth" : "auto" });
    this.jump.hidden = true;
  }

  setLoadingOlder(loading) {
    this.loadingOlder = loading;
    this.#renderEdge();
  }

  #onScroll() {
    this.stuck = this.atBottom();
    if (this.stuck) this.jump.hidden = true;
    this.#maybeLoadOlder();
  }

  #maybeLoadOlder() {
    const t = this.thread;
    if (!t || !t.loaded || !t.hasMoreBefore || this.loadingOlder) return;
    if (this.scroller.scrollTop < LOAD_MARGIN_PX) this.actions.loadOlder();
  }

  #renderEdge() {
    const t = this.thread;
    this.edge.replaceChildren();
    if (!t) return;
    if (!t.loaded || this.loadingOlder) {
      this.edge.append(h("div", { class: "loading", role: "status" }, h("span", { class: "spinner" }), "Loading history…"));
    } else if (!t.hasMoreBefore) {
      this.edge.append(h("div", { class: "beginning" }, "This is the beginning of the conversation."));
    }
  }

  /**
   * Brings the DOM in line with the thread. Keeps the reader's place: stays at the bottom when
   * they were there (or `stickToBottom`), and keeps the view still when older messages are
   * prepended above.
   */
  render({ stickToBottom = false } = {}) {
    const t = this.thread;
    if (!t) return;
    const wasAtBottom = stickToBottom || this.atBottom();
    const anchor = wasAtBottom ? null : this.#visibleAnchor();
    const lastKeyBefore = this.list.lastElementChild && this.list.lastElementChild.dataset.key;

    const desired = this.#items();
    const keep = new Set(desired.map((d) => d.key));
    for (const [key, entry] of this.nodes) {
      if (!keep.has(key)) {
        entry.node.remove();
        this.nodes.delete(key);
      }
    }
    let cursor = this.list.firstElementChild;
    for (const item of desired) {
      let entry = this.nodes.get(item.key);
      if (!entry || entry.hash !== item.hash) {
        const node = item.build();
        node.dataset.key = item.key;
        if (entry) {
          if (entry.node.contains(document.activeElement)) {
            this.#restoreFocus = { key: item.key, fk: document.activeElement.dataset.fk };
          }
          entry.node.replaceWith(node);
          // An open reaction picker stays open on the rebuilt message.
          if (this.picker && entry.node.contains(this.picker)) {
            node.append(this.picker);
            node.classList.add("msg-picking");
          }
          if (cursor === entry.node) cursor = node;
        }
        entry = { node, hash: item.hash };
        this.nodes.set(item.key, entry);
      }
      if (entry.node !== cursor) this.list.insertBefore(entry.node, cursor);
      else cursor = cursor.nextElementSibling;
    }
    this.#renderEdge();
    if (this.#restoreFocus) {
      // The focused message was rebuilt: focus the same control in the new element.
      const { key, fk } = this.#restoreFocus;
      this.#restoreFocus = null;
      const node = this.nodes.get(key)?.node;
      const target =
        node &&
        (node.querySelector(".msg-editor textarea") ||
          (fk && node.querySelector(`[data-fk="${CSS.escape(fk)}"]`)) ||
          node);
      if (target) target.focus({ preventScroll: true });
    }

    const lastKeyAfter = this.list.lastElementChild && this.list.lastElementChild.dataset.key;
    if (wasAtBottom) {
      this.scrollToBottom();
    } else if (anchor) {
      // Keep the message the reader was looking at where it was (older pages go in above it;
      // it may itself have been rebuilt, so it is found again by key).
      const again = this.nodes.get(anchor.key);
      const shift = again ? again.node.getBoundingClientRect().top - anchor.top : 0;
      if (shift) this.scroller.scrollTop += shift;
      if (lastKeyAfter !== lastKeyBefore) this.jump.hidden = false;
    }
    // A first page shorter than the screen cannot be scrolled: keep loading.
    if (this.scroller.scrollHeight <= this.scroller.clientHeight + LOAD_MARGIN_PX) {
      this.#maybeLoadOlder();
    }
  }

  #restoreFocus = null;

  /** The first message at least partly on screen: its key and where it is. */
  #visibleAnchor() {
    const top = this.scroller.getBoundingClientRect().top;
    for (const node of this.list.children) {
      const rect = node.getBoundingClientRect();
      if (rect.bottom > top) return { key: node.dataset.key, top: rect.top };
    }
    return null;
  }

  /** What the list should show: messages (oldest first), then own unacknowledged ones. */
  #items() {
    const t = this.thread;
    const items = [];
    const receipts = t.receipts(this.me);
    let previous = null;
    for (const message of t.sorted()) {
      const compact =
        previous &&
        !message.replyTo &&
        previous.author === message.author &&
        !previous.deleted &&
        message.ts - previous.ts < GROUP_WINDOW_MS;
      const seenBy = receipts.get(message.id) || [];
      const target = message.replyTo ? this.actions.replyTarget(message.replyTo) : null;
      const editing = this.editing === message.id;
      const hash = [
        message.version,
        compact ? 1 : 0,
        seenBy.join(","),
        target ? `${target.id}:${target.version}` : "",
        editing ? 1 : 0,
      ].join("|");
      items.push({
        key: `m:${message.id}`,
        hash,
        build: () => this.#messageNode(message, { compact, seenBy, target, editing }),
      });
      previous = message;
    }
    for (const pending of t.pending.values()) {
      items.push({
        key: `p:${pending.clientMsgId}`,
        hash: pending.failed ? "failed" : "pending",
        build: () => this.#pendingNode(pending),
      });
    }
    return items;
  }

  #messageNode(m, { compact, seenBy, target, editing }) {
    const own = m.author === this.me;
    const classes = ["msg"];
    if (own) classes.push("msg-own");
    if (compact) classes.push("msg-compact");
    if (m.deleted) classes.push("msg-deleted");
    const node = h("li", {
      class: classes.join(" "),
      id: `msg-${m.id}`,
      tabindex: "-1",
      dataset: { id: m.id, seq: String(m.seq), author: m.author },
    });
    const gutter = compact
      ? h("time", { class: "msg-gutter-time", datetime: new Date(m.ts).toISOString() }, clockTime(m.ts))
      : avatar(m.author);
    const head = compact
      ? null
      : h(
          "div",
          { class: "msg-head" },
          h("span", { class: "msg-author" }, m.author),
          h("time", { datetime: new Date(m.ts).toISOString(), title: fullTime(m.ts) }, clockTime(m.ts)),
        );
    const content = h("div", { class: "msg-content" }, head);
    if (m.replyTo) content.append(this.#replyQuote(m.replyTo, target));
    if (m.deleted) {
      content.append(h("div", { class: "msg-body msg-body-deleted" }, "This message was deleted."));
    } else if (editing) {
      content.append(this.#editor(m));
    } else if (m.body || m.editedAt || !m.attachments.length) {
      const body = h("div", { class: "msg-body", dir: "auto" }, m.body);
      if (m.editedAt) body.append(" ", h("span", { class: "msg-edited", title: `Edited ${fullTime(m.editedAt)}` }, "(edited)"));
      content.append(body);
    }
    if (!m.deleted && m.attachments.length) content.append(this.#attachments(m.attachments));
    if (!m.deleted && m.reactions.size) content.append(this.#reactions(m));
    if (seenBy.length) {
      content.append(h("div", { class: "msg-receipts", "aria-label": `Seen by ${joinNames(seenBy)}` }, `Seen by ${joinNames(seenBy)}`));
    }
    node.append(h("div", { class: "msg-gutter" }, gutter), content);
    if (!m.deleted && !editing) node.append(this.#toolbar(m, own));
    return node;
  }

  /**
   * A message's files: images as a thumbnail that opens the full image, other files as a
   * download link with their size. Both point at signed links (no token in the URL).
   */
  #attachments(files) {
    const box = h("div", { class: "msg-attachments" });
    for (const file of files) box.append(hasThumbnail(file.mime) ? this.#imageAttachment(file) : this.#fileAttachment(file));
    return box;
  }

  #imageAttachment(file) {
    // No alt text until it loads: an empty <img> would show it as a broken image.
    const img = h("img", { class: "att-thumb", alt: "", decoding: "async", draggable: "false" });
    const link = h(
      "a",
      {
        class: "att-image",
        target: "_blank",
        rel: "noopener",
        title: `${file.name} · ${humanSize(file.size)}`,
        "aria-label": `${file.name}, image, ${humanSize(file.size)}: open the full image`,
        dataset: { media: file.id, fk: `att:${file.id}` },
      },
      img,
    );
    this.#signedHref(link, file.id);
    img.addEventListener("load", () => {
      img.alt = file.name;
      link.classList.add("att-loaded");
    }, { once: true });
    this.actions.thumbnail(file.id).then(
      (url) => {
        img.src = url;
      },
      // No preview (a damaged image, or it was deleted): a plain download link instead.
      () => link.replaceWith(this.#fileAttachment(file)),
    );
    return link;
  }

  #fileAttachment(file) {
    const link = h(
      "a",
      {
        class: "att-file",
        target: "_blank",
        rel: "noopener",
        title: `Download ${file.name}`,
        dataset: { media: file.id, fk: `att:${file.id}` },
      },
      icon(ICONS.file),
      h("span", { class: "att-name" }, file.name),
      h("span", { class: "att-size" }, ` · ${humanSize(file.size)}`),
    );
    this.#signedHref(link, file.id);
    return link;
  }

  /**
   * Points `link` at the file's signed link: at once when one is cached, else when it arrives.
   * A link that went stale while the page stayed open is replaced on hover, focus or click.
   */
  #signedHref(link, id) {
    const apply = (signed) => {
      link.href = signed.url;
    };
    const cached = this.actions.cachedMediaLink(id);
    if (cached) apply(cached);
    else this.actions.mediaLink(id).then(apply, () => {});
    const refresh = () => {
      if (!this.actions.cachedMediaLink(id)) this.actions.mediaLink(id).then(apply, () => {});
    };
    link.addEventListener("pointerenter", refresh);
    link.addEventListener("focus", refresh);
    link.addEventListener("click", (event) => {
      const current = this.actions.cachedMediaLink(id);
      if (current) {
        apply(current); // the browser follows it
        return;
      }
      event.preventDefault();
      // Opened after a round trip, a new tab may be taken for a pop-up; still worth a try.
      this.actions.mediaLink(id).then((signed) => {
        apply(signed);
        window.open(signed.url, "_blank", "noopener");
      }, () => {});
    });
  }

  #replyQuote(replyTo, target) {
    const preview = target ? messagePreview(target) : "";
    const label = target
      ? target.deleted
        ? "deleted message"
        : preview.length > 90
          ? `${preview.slice(0, 90)}…`
          : preview
      : "an earlier message";
    return h(
      "button",
      {
        type: "button",
        class: "msg-quote",
        onclick: () => this.jumpTo(replyTo),
        "aria-label": `In reply to ${target ? target.author : "an earlier message"}: ${label}`,
      },
      h("span", { class: "msg-quote-author" }, target ? target.author : "Reply"),
      h("span", { class: "msg-quote-text" }, label),
    );
  }

  /** Scrolls to a loaded message and flashes it. */
  jumpTo(id) {
    const entry = this.nodes.get(`m:${id}`);
    if (!entry) return;
    entry.node.scrollIntoView({ block: "center", behavior: "smooth" });
    entry.node.classList.remove("msg-flash");
    void entry.node.offsetWidth; // restart the animation
    entry.node.classList.add("msg-flash");
    entry.node.focus({ preventScroll: true });
  }

  #reactions(m) {
    const box = h("div", { class: "msg-reactions" });
    for (const [emoji, users] of m.reactions) {
      const mine = users.has(this.me);
      const who = joinNames([...users].sort());
      box.append(
        h(
          "button",
          {
            type: "button",
            class: `chip${mine ? " chip-mine" : ""}`,
            dataset: { fk: `chip:${emoji}` },
            "aria-pressed": mine ? "true" : "false",
            title: `${who} reacted with ${emoji}`,
            "aria-label": `${emoji} ${users.size}, ${mine ? "remove your reaction" : "react"} (${who})`,
            onclick: () => this.actions.toggleReaction(m, emoji),
          },
          h("span", { class: "chip-emoji" }, emoji),
          h("span", { class: "chip-count" }, String(users.size)),
        ),
      );
    }
    return box;
  }

  #toolbar(m, own) {
    const bar = h("div", { class: "msg-actions", role: "toolbar", "aria-label": "Message actions" });
    const button = (name, label, onclick, extra = "") =>
      h(
        "button",
        { type: "button", class: `icon-btn ${extra}`.trim(), "aria-label": label, title: label, dataset: { fk: `act:${name}` }, onclick },
        icon(ICONS[name]),
      );
    bar.append(button("reply", "Reply", () => this.actions.reply(m)));
    bar.append(button("react", "Add reaction", (e) => this.openPicker(m, e.currentTarget), "react-btn"));
    if (own) bar.append(button("edit", "Edit", () => this.startEdit(m)));
    if (own) bar.append(button("del", "Delete", () => this.actions.remove(m), "danger"));
    return bar;
  }

  openPicker(m, anchor) {
    this.closePicker();
    const picker = h("div", { class: "picker", role: "menu", "aria-label": "Pick a reaction" });
    for (const emoji of QUICK_REACTIONS) {
      const mine = (m.reactions.get(emoji) || new Set()).has(this.me);
      picker.append(
        h(
          "button",
          {
            type: "button",
            role: "menuitem",
            class: `picker-item${mine ? " picker-item-mine" : ""}`,
            dataset: { fk: `pick:${emoji}` },
            "aria-label": `${mine ? "Remove" : "React with"} ${emoji}`,
            onclick: () => {
              this.closePicker();
              this.actions.toggleReaction(m, emoji);
            },
          },
          emoji,
        ),
      );
    }
    picker.addEventListener("keydown", (e) => {
      const items = [...picker.querySelectorAll("button")];
      const index = items.indexOf(document.activeElement);
      if (e.key === "Escape") {
        e.preventDefault();
        this.closePicker();
        anchor.focus();
      } else if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
        e.preventDefault();
        const step = e.key === "ArrowRight" ? 1 : -1;
        items[(index + step + items.length) % items.length].focus();
      }
    });
    const row = anchor.closest(".msg");
    row.append(picker);
    row.classList.add("msg-picking");
    this.picker = picker;
    picker.querySelector("button").focus();
  }

  closePicker() {
    if (!this.picker) return;
    const row = this.picker.closest(".msg");
    if (row) row.classList.remove("msg-picking");
    this.picker.remove();
    this.picker = null;
  }

  startEdit(m) {
    this.editing = m.id;
    this.render();
    const entry = this.nodes.get(`m:${m.id}`);
    const input = entry && entry.node.querySelector(".msg-editor textarea");
    if (input) {
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
    }
  }

  stopEdit() {
    const id = this.editing;
    this.editing = null;
    this.render();
    const entry = id && this.nodes.get(`m:${id}`);
    if (entry) entry.node.focus({ preventScroll: true });
  }

  #editor(m) {
    const input = h("textarea", { class: "input", rows: "2", "aria-label": "Edit message" });
    input.value = m.body;
    const save = () => {
      const body = input.value.trim();
      if (!body || body === m.body) {
        this.stopEdit();
        return;
      }
      this.actions.edit(m, body);
      this.stopEdit();
    };
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        save();
      } else if (e.key === "Escape") {
        e.preventDefault();
        this.stopEdit();
      }
    });
    return h(
      "div",
      { class: "msg-editor" },
      input,
      h(
        "div",
        { class: "msg-editor-actions" },
        h("span", { class: "muted" }, "Enter to save · Esc to cancel"),
        h("button", { type: "button", class: "btn btn-ghost btn-sm", onclick: () => this.stopEdit() }, "Cancel"),
        h("button", { type: "button", class: "btn btn-primary btn-sm", onclick: save }, "Save"),
      ),
    );
  }

  #pendingNode(p) {
    const status = p.failed
      ? h(
          "div",
          { class: "msg-status msg-status-failed", role: "alert" },
          `Not sent${p.reason ? `: ${p.reason}` : ""}. `,
          h("button", { type: "button", class: "link-btn", onclick: () => this.actions.retry(p) }, "Retry"),
          " · ",
          h("button", { type: "button", class: "link-btn", onclick: () => this.actions.discard(p) }, "Discard"),
        )
      : h("div", { class: "msg-status" }, h("span", { class: "spinner spinner-sm" }), "Sending…");
    const target = p.replyTo ? this.actions.replyTarget(p.replyTo) : null;
    return h(
      "li",
      { class: `msg msg-own msg-pending${p.failed ? " msg-failed" : ""}`, dataset: { clientMsgId: p.clientMsgId } },
      h("div", { class: "msg-gutter" }, avatar(this.me)),
      h(
        "div",
        { class: "msg-content" },
        h("div", { class: "msg-head" }, h("span", { class: "msg-author" }, this.me), h("time", {}, clockTime(p.ts))),
        p.replyTo ? this.#replyQuote(p.replyTo, target) : null,
        p.body || !(p.attachments && p.attachments.length) ? h("div", { class: "msg-body", dir: "auto" }, p.body) : null,
        p.attachments && p.attachments.length
          ? h(
              "div",
              { class: "msg-attachments msg-attachments-pending" },
              p.attachments.map((file) =>
                h("span", { class: "att-file" }, icon(ICONS.file), h("span", { class: "att-name" }, file.name), h("span", { class: "att-size" }, ` · ${humanSize(file.size)}`)),
              ),
            )
          : null,
        status,
      ),
    );
  }
}
