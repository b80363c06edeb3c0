#!/usr/bin/env python3
"""End-to-end test of confab_bot.py against a real Confab server (stdlib unittest).

Starts `confab serve` (CONFAB_BIN, default target/debug/confab) on a free loopback port with a
temporary data dir, and checks that the bot answers a ping; resumes after being killed (its
state file) and after the server is killed and restarted on the same port (reconnect with
backoff, join with `since`); and that a second bot answering every ping again posts nothing
twice (idempotent `client_msg_id`s, acked as duplicates).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONFAB = os.environ.get("CONFAB_BIN", os.path.join(ROOT, "target", "debug", "confab"))
BOT = "ping-bot"
TENANT = "acme"
DEADLINE = 20.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir, port):
        self.data_dir, self.port = data_dir, port
        self.base = f"http://127.0.0.1:{port}"
        self.process = None

    def start(self):
        with open(os.path.join(self.data_dir, "..", "server.log"), "ab") as log:
            self.process = self._spawn(log)
        wait(lambda: self.ready(), "the server to be ready")

    def _spawn(self, log):
        return subprocess.Popen(
            [CONFAB, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir,
             "--message-rate-per-minute", "0"],
            stdout=subprocess.DEVNULL, stderr=log,
            env={k: v for k, v in os.environ.items() if not k.startswith("CONFAB_")},
        )

    def ready(self):
        try:
            with urllib.request.urlopen(self.base + "/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def token(self, user):
        return subprocess.check_output(
            [CONFAB, "token", "--user", user, "--tenant", TENANT, "--data-dir", self.data_dir],
            text=True,
        ).strip()

    def call(self, method, path, token, body=None):
        request = urllib.request.Request(
            self.base + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.load(r)


class BotProcess:
    """confab_bot.py as a child process; its log lines are collected."""

    def __init__(self, base, token, *args):
        self.lines = []
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "confab_bot.py"), base, token, *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def count(self, text):
        return sum(text in line for line in list(self.lines))

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


def wait(condition, what, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class BotTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        data = os.path.join(self.dir.name, "data")
        os.mkdir(data)
        self.server = Server(data, free_port())
        self.server.start()
        self.alice = self.server.token("alice")
        self.bots = []

    def tearDown(self):
        for bot in self.bots:
            bot.kill()
        self.server.kill()
        if sys.exc_info()[0] is not None or os.environ.get("VERBOSE"):
            for bot in self.bots:
                print("\n".join(bot.lines[-40:]), file=sys.stderr)
        self.dir.cleanup()

    def bot(self, *args):
        bot = BotProcess(self.server.base, self.server.token(BOT), *args)
        self.bots.append(bot)
        return bot

    def ping(self, conversation):
        sent = self.server.call("POST", f"/v1/conversations/{conversation}/messages", self.alice,
                                {"client_msg_id": str(uuid.uuid4()), "body": "!ping"})
        return sent["id"]

    def pongs(self, conversation):
        """reply_to of every pong in the conversation's history."""
        page = self.server.call("GET", f"/v1/conversations/{conversation}/messages?limit=200",
                                self.alice)
        return [m.get("reply_to") for m in page["messages"]
                if m["author"] == BOT and m["body"] == "pong"]

    def test_answers_resumes_and_never_answers_twice(self):
        conversation = self.server.call(
            "POST", "/v1/conversations", self.alice,
            {"kind": "group", "title": "bots", "members": [BOT]})["id"]
        state = os.path.join(self.dir.name, "bot-state.json")

        bot = self.bot("--state", state)
        # "joined", not "connected": a ping sent between the welcome and the join would be
        # before the bot's starting point (it has no state yet, so it joins live).
        wait(lambda: bot.count(f"joined {conversation}") == 1, "the bot to join")
        first = self.ping(conversation)
        wait(lambda: self.pongs(conversation) == [first], "the first pong")

        # Killed, then started again: it resumes from its state file.
        bot.kill()
        second = self.ping(conversation)
        bot = self.bot("--state", state)
        wait(lambda: self.pongs(conversation) == [first, second], "the pong of the missed ping")

        # The server dies and comes back on the same port: the bot reconnects and resumes.
        self.server.kill()
        self.server.start()
        third = self.ping(conversation)
        wait(lambda: self.pongs(conversation) == [first, second, third],
             "the pong after the server's restart")
        self.assertGreaterEqual(bot.count("connected as ping-bot"), 2)

        # A second bot with no state answers every ping again: all three replies are acked as
        # duplicates, and nothing new is posted.
        again = self.bot("--replay-all")
        wait(lambda: again.count("duplicate=True") == 3, "three duplicate acks")
        time.sleep(0.5)
        self.assertEqual(self.pongs(conversation), [first, second, third])
        self.assertEqual(again.count("duplicate=False"), 0)


if __name__ == "__main__":
    unittest.main()
