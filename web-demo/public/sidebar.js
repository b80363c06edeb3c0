// The conversation list: names, last message, time and unread badge per conversation.

import { avatar, h, joinNames, messagePreview, shortTime } from "./util.js";

const $ = (id) => document.getElementById(id);

/** A conversation's title, or its other members for an untitled one. */
export function conversationName(state, summary) {
  if (summary.title) return summary.title;
  const thread = state.threads.get(summary.id);
  const others = thread ? [...thread.members.keys()].filter((u) => u !== state.me).sort() : [];
  if (others.length) return joinNames(others);
  return summary.kind === "direct" ? "Direct message" : "Untitled conversation";
}

function activity(summary) {
  return summary.last_message ? summary.last_message.ts : summary.created_at;
}

/**
 * Renders the list, most recently active first, keeping keyboard focus on the same entry.
 * @param {object} state the page state (conversations, threads, me, activeId)
 * @param {(id: string) => void} onOpen called when an entry is chosen
 */
export function renderConversationList(state, onOpen) {
  const list = $("conversation-list");
  const focused = list.contains(document.activeElement) ? document.activeElement.dataset.id : null;
  const sorted = [...state.conversations.values()].sort((a, b) => activity(b) - activity(a));
  $("conversation-empty").hidden = sorted.length > 0;
  list.replaceChildren(
    ...sorted.map((summary) => {
      const name = conversationName(state, summary);
      const last = summary.last_message;
      const snippet = last
        ? last.deleted
          ? "Message deleted"
          : `${last.author === state.me ? "You" : last.author}: ${messagePreview(last)}`
        : "No messages yet";
      const active = summary.id === state.activeId;
      const unread = active ? 0 : summary.unread;
      const label = `${name}${unread ? `, ${unread} unread` : ""}`;
      return h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: `conversation${active ? " conversation-active" : ""}${unread ? " conversation-unread" : ""}`,
            "aria-current": active ? "true" : false,
            "aria-label": label,
            dataset: { id: summary.id },
            onclick: () => onOpen(summary.id),
          },
          avatar(name, "avatar-md"),
          h(
            "span",
            { class: "conversation-text" },
            h(
              "span",
              { class: "conversation-top" },
              h("span", { class: "conversation-name" }, name),
              h("time", { class: "conversation-time" }, shortTime(activity(summary))),
            ),
            h(
              "span",
              { class: "conversation-bottom" },
              h("span", { class: "conversation-snippet" }, snippet),
              unread ? h("span", { class: "badge", "aria-hidden": "true" }, unread > 99 ? "99+" : String(unread)) : null,
            ),
          ),
        ),
      );
    }),
  );
  if (focused) {
    const again = list.querySelector(`[data-id="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}
