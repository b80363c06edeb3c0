// The composer's attachments. Files picked with the paperclip, dropped on the conversation or
// pasted into the input go up at once (confab.js's `uploadFile`: one request, or a resumable
// upload for big files) and wait in a tray above the input, each with a progress bar, then a
// "ready" mark or the server's refusal; the next message sent carries the uploaded ones. Each
// conversation has its own tray, so switching conversations loses nothing.

import { hasThumbnail } from "./confab.js";
import { describeError, h, humanSize } from "./util.js";

/** The server takes at most this many attachments per message. */
export const MAX_ATTACHMENTS = 16;
/** Picked images get a local preview up to this size (decoding them is the browser's work). */
const PREVIEW_MAX_BYTES = 20 * 1024 * 1024;

let nextKey = 1;

/** Failures that another try may not meet (the others are refusals of this very file). */
const TRANSIENT = new Set(["network", "timeout", "internal", "unavailable", "rate_limited", "checksum_mismatch", "conflict"]);

/** What to tell the user about a refused or failed upload (the server's reason when it has one). */
export function uploadErrorText(err) {
  const leads = {
    too_large: "Too large",
    unsupported_media_type: "Not accepted",
    quota_exceeded: "No room left",
    checksum_mismatch: "Damaged on the way",
  };
  const lead = err && leads[err.code];
  if (!lead || !err.message || err.message === err.code) return describeError(err);
  // "the file is larger than 104857600 bytes" reads better as "… than 105 MB".
  const reason = err.message.replace(/(\d{4,}) bytes/g, (_, n) => humanSize(Number(n)));
  return `${lead}: ${reason.replace(/\.?$/, ".")}`;
}

export class UploadTray {
  /**
   * @param {object} o
   * @param {HTMLElement} o.list the tray (`<ul>`), hidden while empty
   * @param {import("./confab.js").ConfabApi} o.api
   * @param {() => void} o.onChange called when an upload starts, ends or is removed
   * @param {(text: string) => void} o.notify shows a short notice
   */
  constructor({ list, api, onChange, notify }) {
    this.list = list;
    this.api = api;
    this.onChange = onChange;
    this.notify = notify;
    /** conversation → items: {key, file, conversation, state, phase, loaded, info, error, …} */
    this.trays = new Map();
    this.active = null;
  }

  /** Shows the tray of `conversation` (null: none). */
  show(conversation) {
    this.active = conversation;
    this.render();
    this.onChange();
  }

  #items(conversation = this.active) {
    if (!conversation) return [];
    let items = this.trays.get(conversation);
    if (!items) {
      items = [];
      this.trays.set(conversation, items);
    }
    return items;
  }

  /** Starts uploading `files` (a FileList or an array) to the open conversation. */
  add(files) {
    if (!this.active) return;
    const items = this.#items();
    for (const file of files) {
      if (items.length >= MAX_ATTACHMENTS) {
        this.notify(`A message can carry at most ${MAX_ATTACHMENTS} files.`);
        break;
      }
      const item = {
        key: `u${nextKey++}`,
        file,
        conversation: this.active,
        state: "uploading",
        phase: "uploading",
        loaded: 0,
        info: null,
        error: null,
        retryable: false,
        controller: null,
        preview: hasThumbnail(file.type) && file.size <= PREVIEW_MAX_BYTES ? URL.createObjectURL(file) : null,
        node: null,
      };
      items.push(item);
      this.#start(item);
    }
    this.render();
    this.onChange();
  }

  async #start(item) {
    const controller = new AbortController();
    Object.assign(item, { state: "uploading", phase: "uploading", loaded: 0, error: null, controller });
    this.#update(item);
    try {
      const info = await this.api.uploadFile(item.file, {
        conversation: item.conversation,
        signal: controller.signal,
        onProgress: ({ phase, loaded }) => {
          item.phase = phase;
          item.loaded = loaded;
          this.#update(item);
        },
      });
      if (controller.signal.aborted) {
        // Removed just as it finished: the file will never be sent.
        this.api.deleteMedia(info.id).catch(() => {});
        return;
      }
      item.info = info;
      item.state = "done";
    } catch (err) {
      if (controller.signal.aborted) return; // removed meanwhile
      item.state = "failed";
      item.error = uploadErrorText(err);
      item.retryable = TRANSIENT.has(err && err.code);
    }
    item.controller = null;
    this.#update(item);
    this.onChange();
  }

  /** Takes a file out of the tray: its upload stops, or the uploaded file is deleted. */
  remove(item) {
    if (item.controller) item.controller.abort();
    // Uploaded but never sent: nobody will see it, so it should not take room.
    if (item.state === "done" && item.info) this.api.deleteMedia(item.info.id).catch(() => {});
    this.#forget(item);
    this.render();
    this.onChange();
  }

  #forget(item) {
    if (item.preview) URL.revokeObjectURL(item.preview);
    const items = this.trays.get(item.conversation) || [];
    const index = items.indexOf(item);
    if (index >= 0) items.splice(index, 1);
  }

  /** Drops a conversation's tray (the user left it): uploads stop, unsent files are deleted. */
  discard(conversation) {
    for (const item of [...(this.trays.get(conversation) || [])]) this.remove(item);
    this.trays.delete(conversation);
  }

  /** Whether the open conversation has uploads still going. */
  busy() {
    return this.#items().some((item) => item.state === "uploading");
  }

  /** The open conversation's uploaded files, as a message's attachments `{id, name, mime, size}`. */
  ready() {
    return this.#items()
      .filter((item) => item.state === "done")
      .map(({ info }) => ({ id: info.id, name: info.name, mime: info.content_type, size: info.size }));
  }

  /** The uploaded files were sent: they leave the tray (refused ones stay, with their reason). */
  sent() {
    for (const item of this.#items().filter((i) => i.state === "done")) this.#forget(item);
    this.render();
    this.onChange();
  }

  render() {
    const items = this.#items();
    this.list.hidden = items.length === 0;
    const focused = this.list.contains(document.activeElement) ? document.activeElement.dataset.fk : null;
    this.list.replaceChildren(...items.map((item) => this.#node(item)));
    if (focused) this.list.querySelector(`[data-fk="${CSS.escape(focused)}"]`)?.focus();
  }

  /** Brings an item's element up to date: the bar and its text, or a new element when its state changed. */
  #update(item) {
    const node = item.node;
    if (!node || !node.isConnected) return;
    if (node.dataset.state !== item.state) {
      const focused = node.contains(document.activeElement);
      node.replaceWith(this.#node(item));
      if (focused) item.node.querySelector("button")?.focus();
      return;
    }
    const bar = node.querySelector("progress");
    if (bar) bar.value = item.loaded;
    node.querySelector(".upload-meta").textContent = this.#meta(item);
  }

  #meta(item) {
    const size = humanSize(item.file.size);
    if (item.state === "done") return `${size} · Ready`;
    if (item.state === "failed") return size;
    if (item.phase === "hashing") return `${size} · Preparing…`;
    const percent = item.file.size ? Math.floor((item.loaded / item.file.size) * 100) : 100;
    return `${size} · Uploading ${percent}%`;
  }

  #node(item) {
    const name = item.file.name || "file";
    const thumb = item.preview
      ? h("img", { class: "upload-preview", src: item.preview, alt: "" })
      : h("span", { class: "upload-icon", "aria-hidden": "true" }, fileIcon());
    const text = h(
      "div",
      { class: "upload-text" },
      h("span", { class: "upload-name", title: name }, name),
      h("span", { class: "upload-meta" }, this.#meta(item)),
    );
    if (item.state === "uploading") {
      text.append(h("progress", { max: String(item.file.size || 1), value: String(item.loaded), "aria-label": `Uploading ${name}` }));
    } else if (item.state === "failed") {
      text.append(h("span", { class: "upload-error", role: "alert" }, item.error));
    }
    const actions = h("div", { class: "upload-actions" });
    if (item.state === "failed" && item.retryable) {
      actions.append(
        h("button", { type: "button", class: "link-btn", dataset: { fk: `retry:${item.key}` }, onclick: () => this.#retry(item) }, "Retry"),
      );
    }
    actions.append(
      h(
        "button",
        {
          type: "button",
          class: "icon-btn",
          "aria-label": `${item.state === "uploading" ? "Cancel" : "Remove"} ${name}`,
          title: item.state === "uploading" ? "Cancel the upload" : "Remove",
          dataset: { fk: `remove:${item.key}` },
          onclick: () => this.remove(item),
        },
        closeIcon(),
      ),
    );
    item.node = h("li", { class: "upload", dataset: { state: item.state, key: item.key } }, thumb, text, actions);
    return item.node;
  }

  #retry(item) {
    this.#start(item);
    this.onChange();
  }
}

function svg(d) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  el.setAttribute("viewBox", "0 0 24 24");
  el.setAttribute("aria-hidden", "true");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", d);
  el.append(path);
  return el;
}

const fileIcon = () => svg("M14 3H6v18h12V7l-4-4zM14 3v4h4M9 13h6M9 17h6");
const closeIcon = () => svg("M6 6l12 12M18 6L6 18");
