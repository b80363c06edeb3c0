#!/usr/bin/env python3
"""A Confab bot in Python, written from docs/protocol.md alone: it answers `!ping` with `pong`.

It shows what every long-lived Confab client needs:
- reconnect with exponential backoff and jitter, back to the start once welcomed;
- resume: each conversation is joined with `since` = the last seq seen there (kept in a state
  file, so a restarted bot resumes too); when the gap is over the replay cap
  (`joined.recovered` false) the missed messages are paged through REST;
- idempotent sends: a reply's `client_msg_id` is derived from the message it answers, and
  every unacknowledged send is sent again after a reconnect, so no reply is lost or doubled;
- retry hints: `rate_limited` errors are retried after `retry_after_ms`.

    pip install 'websockets>=14'
    TOKEN=$(confab token --user ping-bot --tenant acme --data-dir ./data)
    python3 examples/python/confab_bot.py http://127.0.0.1:8080 "$TOKEN" --state bot.json

It serves every conversation it is a member of at (re)connection time.
"""

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import urllib.error
import urllib.parse
import urllib.request

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

log = logging.getLogger("confab_bot")

BACKOFF_START = 0.2
BACKOFF_MAX = 10.0


class Unauthorized(Exception):
    """The token was refused: reconnecting with it cannot help."""


class Bot:
    def __init__(self, base_url, token, state_path=None, replay_all=False):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.state_path = state_path
        self.user = None
        # conversation id -> last seq seen (the `since` of the next join)
        self.since = {} if replay_all else self._load_state()
        self.replay_from_start = replay_all
        # client_msg_id -> send frame, until acknowledged
        self.pending = {}
        self.ws = None

    # --- state -------------------------------------------------------------------------

    def _load_state(self):
        if not self.state_path or not os.path.exists(self.state_path):
            return {}
        with open(self.state_path, encoding="utf-8") as f:
            return {k: int(v) for k, v in json.load(f).get("since", {}).items()}

    def _save_state(self):
        if not self.state_path:
            return
        tmp = self.state_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"since": self.since}, f)
        os.replace(tmp, self.state_path)

    # --- REST --------------------------------------------------------------------------

    def _get(self, path):
        request = urllib.request.Request(
            self.base_url + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            if e.code == 401:
                raise Unauthorized(e.read().decode(errors="replace")) from e
            raise

    def conversations(self):
        """Every conversation the bot is a member of (all pages)."""
        found, cursor = [], None
        while True:
            query = {"limit": "500"}
            if cursor:
                query["cursor"] = cursor
            page = self._get("/v1/conversations?" + urllib.parse.urlencode(query))
            found += [c["id"] for c in page["conversations"]]
            cursor = page.get("next_cursor")
            if not cursor:
                return found

    def messages_after(self, conversation, seq):
        """Messages with seq > `seq`, oldest first, through REST (for a gap over the cap)."""
        while True:
            query = urllib.parse.urlencode({"after": seq, "limit": 200})
            page = self._get(f"/v1/conversations/{conversation}/messages?{query}")
            for message in page["messages"]:
                seq = max(seq, message["seq"])
                yield message
            if not page["has_more"] or not page["messages"]:
                return

    # --- WebSocket ---------------------------------------------------------------------

    async def run(self):
        backoff = BACKOFF_START
        ws_url = self.base_url.replace("http", "ws", 1) + "/v1/ws"
        while True:
            try:
                async with connect(
                    ws_url,
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    open_timeout=10,
                ) as ws:
                    welcome = json.loads(await ws.recv())
                    if welcome.get("type") != "welcome":
                        raise RuntimeError(f"expected welcome, got {welcome}")
                    self.user = welcome["user"]
                    backoff = BACKOFF_START
                    log.info("connected as %s", self.user)
                    self.ws = ws
                    await self.start_session()
                    async for raw in ws:
                        await self.handle(json.loads(raw))
                    code = ws.close_code
            except InvalidStatus as e:
                if e.response.status_code == 401:
                    raise Unauthorized("the server refused the token") from e
                code = None
                log.warning("upgrade refused: %s", e)
            except ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else None
            except (OSError, asyncio.TimeoutError) as e:
                code = None
                log.warning("connection failed: %s", e)
            finally:
                self.ws = None
            if code == 4001:
                raise Unauthorized("closed with 4001: get a new token")
            delay = backoff * random.uniform(0.5, 1.5)
            log.info("disconnected (close %s); reconnecting in %.2fs", code, delay)
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def start_session(self):
        """After each welcome: join everything with `since`, resend what was not acked."""
        for conversation in await asyncio.to_thread(self.conversations):
            frame = {"type": "join", "ref": f"join:{conversation}", "conversation": conversation}
            if conversation in self.since:
                frame["since"] = self.since[conversation]
            elif self.replay_from_start:
                frame["since"] = 0
            await self.ws.send(json.dumps(frame))
        for frame in list(self.pending.values()):
            await self.ws.send(json.dumps(frame))

    async def handle(self, frame):
        kind = frame.get("type")
        if kind == "joined":
            await self.joined(frame)
        elif kind == "message":
            await self.on_message(frame)
        elif kind == "ack":
            self.pending.pop(frame["client_msg_id"], None)
            log.info("ack %s seq=%s duplicate=%s", frame["client_msg_id"], frame["seq"],
                     frame["duplicate"])
        elif kind == "error":
            await self.on_error(frame)
        elif kind in ("message_edited", "message_deleted", "reaction_added", "reaction_removed",
                      "member_added", "member_removed", "member_role_changed",
                      "conversation_updated"):
            self.seen(frame["conversation"], frame["seq"])

    async def joined(self, frame):
        conversation = frame["conversation"]
        since = self.since.get(conversation, 0 if self.replay_from_start else None)
        if since is not None and not frame["recovered"]:
            # Too far behind for a replay: page through REST, then go on live.
            messages = await asyncio.to_thread(
                lambda: list(self.messages_after(conversation, since))
            )
            for message in messages:
                await self.on_message({"conversation": conversation, **message})
            since = None
        if since is None:
            # Live from here (nothing to replay, or the gap was paged through REST).
            self.seen(conversation, frame["last_seq"])
        log.info("joined %s at seq %s", conversation, frame["last_seq"])

    def seen(self, conversation, seq):
        if seq > self.since.get(conversation, -1):
            self.since[conversation] = seq
            self._save_state()

    async def on_message(self, message):
        conversation, seq = message["conversation"], message["seq"]
        if seq <= self.since.get(conversation, -1):
            return  # already handled (a live event the replay covered)
        if message.get("author") != self.user and message.get("body", "").strip() == "!ping":
            # Derived from the message answered: a resend after a reconnect, or the same ping
            # answered again after a restart, is recognised by the server (`duplicate`).
            await self.send(conversation, f"pong:{message['id']}", "pong", reply_to=message["id"])
        self.seen(conversation, seq)

    async def send(self, conversation, client_msg_id, body, reply_to=None):
        frame = {"type": "send", "ref": client_msg_id, "conversation": conversation,
                 "client_msg_id": client_msg_id, "body": body}
        if reply_to:
            frame["reply_to"] = reply_to
        self.pending[client_msg_id] = frame
        if self.ws is not None:
            await self.ws.send(json.dumps(frame))

    async def on_error(self, frame):
        ref = frame.get("ref") or ""
        if frame["code"] == "rate_limited" and ref in self.pending:
            await asyncio.sleep(frame.get("retry_after_ms", 1000) / 1000)
            if self.ws is not None and ref in self.pending:
                await self.ws.send(json.dumps(self.pending[ref]))
            return
        if frame["code"] in ("unavailable", "internal") and ref in self.pending:
            return  # stays pending: resent after the next reconnect
        self.pending.pop(ref, None)
        log.warning("error %s: %s", frame["code"], frame.get("message"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url", help="e.g. http://127.0.0.1:8080")
    parser.add_argument("token", help="a token for the bot's user")
    parser.add_argument("--state", help="file keeping the last seq seen per conversation")
    parser.add_argument("--replay-all", action="store_true",
                        help="answer every ping from the start of each conversation")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    bot = Bot(args.base_url, args.token, args.state, args.replay_all)
    try:
        asyncio.run(bot.run())
    except Unauthorized as e:
        log.error("%s", e)
        sys.exit(1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
