// Small DOM and formatting helpers shared by the page's modules. Everything user-provided is
// inserted as text (never as HTML).

/**
 * Creates an element: `h("button", {class: "btn", onclick: fn, "aria-label": "Send"}, "Send")`.
 * Attributes starting with `on` become listeners, `style` takes an object of properties,
 * `dataset` an object of data attributes; `false`/`null`/`undefined` ones are skipped;
 * children may be strings, nodes, arrays or nullish.
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (key === "style") {
      // CSSOM, not the style attribute: the page's CSP forbids inline style attributes.
      for (const [prop, v] of Object.entries(value)) node.style.setProperty(prop, String(v));
    } else if (value === true) {
      node.setAttribute(key, "");
    } else {
      node.setAttribute(key, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

/** Two letters standing for a user id. */
export function initials(user) {
  const parts = String(user).split(/[\s._-]+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[1][0] : String(user).slice(0, 2);
  return letters.toUpperCase();
}

/** A stable hue per user, so each person keeps one avatar colour. */
export function hueFor(user) {
  let hash = 0;
  for (const ch of String(user)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 360;
}

/** An avatar element (initials on a per-user colour). */
export function avatar(user, size = "") {
  return h(
    "span",
    {
      class: `avatar ${size}`.trim(),
      style: { "--hue": hueFor(user) },
      "aria-hidden": "true",
    },
    initials(user),
  );
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** `14:05` today, `Nov 28` otherwise. */
export function shortTime(ts) {
  const date = new Date(ts);
  const today = new Date();
  return date.toDateString() === today.toDateString()
    ? timeFormat.format(date)
    : dateFormat.format(date);
}

export function clockTime(ts) {
  return timeFormat.format(new Date(ts));
}

export function fullTime(ts) {
  return fullFormat.format(new Date(ts));
}

/** A size for people: "512 B", "48 kB", "1.2 MB" (powers of 1000, as file managers show). */
export function humanSize(bytes) {
  const n = Number(bytes) || 0;
  if (n < 1000) return `${n} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = n;
  let unit = -1;
  do {
    value /= 1000;
    unit += 1;
  } while (value >= 999.5 && unit < units.length - 1);
  const digits = value < 9.95 ? 1 : 0;
  return `${value.toFixed(digits)} ${units[unit]}`;
}

/** A one-line stand-in for a message: its body, or its attachments' names for an empty one. */
export function messagePreview(message) {
  if (message.body) return message.body;
  const files = message.attachments || [];
  if (!files.length) return "";
  return `📎 ${files.map((f) => f.name).join(", ")}`;
}

/** A user id from a display name: lower case, spaces to dashes, only [a-z0-9._-]. */
export function userIdFrom(name) {
  return String(name)
    .trim()
    .toLowerCase()
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/\s+/g, "-")
    .replace(/[^a-z0-9._-]/g, "")
    .slice(0, 64);
}

/** Splits "bob, carol  dave" into user ids. */
export function parseUserList(text) {
  return [...new Set(String(text).split(/[\s,;]+/).map(userIdFrom).filter(Boolean))];
}

/** "alice", "alice and bob", "alice, bob and 2 others". */
export function joinNames(names, max = 3) {
  if (names.length <= 1) return names.join("");
  if (names.length <= max) return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
  const rest = names.length - (max - 1);
  return `${names.slice(0, max - 1).join(", ")} and ${rest} others`;
}

/** A transient notice in the corner. */
export function toast(text, kind = "info") {
  const box = document.getElementById("toasts");
  if (!box) return;
  const item = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" }, text);
  box.append(item);
  setTimeout(() => item.classList.add("toast-out"), 3500);
  setTimeout(() => item.remove(), 4000);
}

/** Shows or hides a form's error line. */
export function setError(node, text) {
  node.textContent = text || "";
  node.hidden = !text;
}

/** Plain-language text for a ConfabError (or anything thrown). */
export function describeError(err) {
  if (!err) return "Something went wrong.";
  const messages = {
    network: "The server cannot be reached.",
    unauthorized: "Your session has expired. Sign in again.",
    forbidden: "You are not allowed to do that.",
    not_member: "You are not a member of this conversation.",
    not_found: "Not found.",
    rate_limited: "Too many messages; slow down a little.",
    too_large: "That is too long.",
    unsupported_media_type: "This type of file is not accepted.",
    quota_exceeded: "There is no room left for files.",
    checksum_mismatch: "The file changed or was damaged on the way; try again.",
    conflict: "That conflicts with the current state.",
    unavailable: "The server is restarting or busy; try again in a moment.",
    timeout: "The connection is too slow; try again.",
  };
  if (err.code === "invalid" || err.code === "conflict" || err.code === "not_found") {
    return err.message ? capitalize(err.message) : messages[err.code];
  }
  return messages[err.code] || err.message || "Something went wrong.";
}

function capitalize(text) {
  return text.charAt(0).toUpperCase() + text.slice(1).replace(/([^.])$/, "$1.");
}

/** A 24×24 outline icon of one SVG path, hidden from screen readers. */
export function icon(path) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const p = document.createElementNS("http://www.w3.org/2000/svg", "path");
  p.setAttribute("d", path);
  svg.append(p);
  return svg;
}
