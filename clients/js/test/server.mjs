// Runs the real `confab` binary for the end-to-end tests (this package's, and the web demo's in
// Chromium): a free loopback port, a temporary data dir (so the server generates its development
// key and the dev sign-in exists), no message rate limit. `restart()` kills it and starts it
// again on the same port and data dir.

import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "../../..");

/** The server binary: $CONFAB_BIN, or target/debug/confab as `cargo test` builds it. */
export function serverBinary() {
  if (process.env.CONFAB_BIN) return path.resolve(process.env.CONFAB_BIN);
  const targetDir = process.env.CARGO_TARGET_DIR
    ? path.resolve(repoRoot, process.env.CARGO_TARGET_DIR)
    : path.join(repoRoot, "target");
  return path.join(targetDir, "debug", "confab");
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Server {
  static async start() {
    const bin = serverBinary();
    if (!fs.existsSync(bin)) {
      throw new Error(
        `server binary ${bin} not found: build it with \`cargo build -p confab-server\` ` +
          "(scripts/test does, through cargo test) or set CONFAB_BIN",
      );
    }
    const server = new Server(bin, await freePort(), fs.mkdtempSync(path.join(os.tmpdir(), "confab-e2e-")));
    await server.#spawn();
    return server;
  }

  constructor(bin, port, dataDir) {
    this.bin = bin;
    this.port = port;
    this.dataDir = dataDir;
    this.baseUrl = `http://127.0.0.1:${port}`;
    this.logPath = path.join(dataDir, "server.log");
    this.child = null;
  }

  async #spawn() {
    // A CONFAB_* variable from the caller's shell (a JWT secret, say) would change the server.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CONFAB_")));
    env.CONFAB_LOG = "warn";
    const log = fs.openSync(this.logPath, "a");
    const args = [
      "serve",
      "--listen", `127.0.0.1:${this.port}`,
      "--data-dir", this.dataDir,
      "--message-rate-per-minute", "0",
    ];
    const child = spawn(this.bin, args, { env, stdio: ["ignore", log, log] });
    fs.closeSync(log);
    this.child = child;
    this.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    const deadline = Date.now() + 20_000;
    let early = null;
    this.exited.then((status) => {
      early = status;
    });
    while (Date.now() < deadline) {
      if (early) throw new Error(`server exited early (${JSON.stringify(early)}):\n${this.log()}`);
      try {
        const response = await fetch(`${this.baseUrl}/ready`);
        if (response.ok) return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`server not ready within 20 s:\n${this.log()}`);
  }

  log() {
    try {
      return fs.readFileSync(this.logPath, "utf8");
    } catch {
      return "";
    }
  }

  async #kill(signal) {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill(signal);
    await this.exited;
  }

  /** Kills the server (-9, like a crash) and starts it again on the same port and data dir. */
  async restart() {
    await this.#kill("SIGKILL");
    await this.#spawn();
  }

  async stop({ keepData = false } = {}) {
    await this.#kill("SIGTERM");
    if (!keepData) fs.rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** A development token from the server's own sign-in endpoint. */
  async token(user, name) {
    const response = await fetch(`${this.baseUrl}/v1/dev/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user, name }),
    });
    if (!response.ok) throw new Error(`dev token: HTTP ${response.status} ${await response.text()}`);
    return (await response.json()).token;
  }

  /** A token from `confab token`, signed with the key of the server's data dir. */
  cliToken(user, tenant) {
    const args = ["token", "--user", user, "--tenant", tenant, "--data-dir", this.dataDir];
    return execFileSync(this.bin, args, { encoding: "utf8" }).trim();
  }

  /** A REST call with a token; returns the parsed JSON body. */
  async rest(token, method, urlPath, body) {
    const response = await fetch(`${this.baseUrl}${urlPath}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${urlPath}: HTTP ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }
}
