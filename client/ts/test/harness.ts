// Test harness: a real starlingd and the Go CLI, both built with `go build`
// from this checkout into a temp dir; embedded SQLite in a temp dir; a
// random loopback port. And a TCP proxy the tests can cut, to break streams
// the way a network does.

import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { StarlingClient, type Session, type SessionOptions } from "../src/index.js";
import type { SyncBatch } from "../gen/starling/v1/chat_pb.js";
import type { Message } from "../gen/starling/v1/types_pb.js";

const run = promisify(execFile);
// dist/test/harness.js → the repository root.
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");
export const password = "correct horse battery";

let binDir: string | undefined;

// Servers still running when the test process exits (a test that threw
// before its cleanup) are killed, so no starlingd outlives its test.
const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const p of running) p.kill("SIGKILL");
});

/**
 * Builds starlingd and starling once per test process, unless
 * STARLING_TS_BIN names a directory they were built into (npm test builds
 * them once for every test file: linking is most of a build's time).
 */
export async function buildBinaries(): Promise<string> {
  if (binDir) return binDir;
  if (process.env.STARLING_TS_BIN) {
    binDir = path.resolve(process.env.STARLING_TS_BIN);
    return binDir;
  }
  const dir = mkdtempSync(path.join(tmpdir(), "starling-ts-bin-"));
  await run("go", ["build", "-o", dir, "./cmd/starlingd", "./cmd/starling"], { cwd: repoRoot });
  binDir = dir;
  return dir;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Waits until cond() is true, or fails after timeoutMs. */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A starlingd on a random loopback port with its own SQLite dir. */
export class Server {
  proc: ChildProcess | undefined;
  readonly port: number;
  readonly dataDir: string;
  private log = "";

  private constructor(
    port: number,
    private readonly bin: string,
    private readonly flags: string[],
  ) {
    this.port = port;
    this.dataDir = mkdtempSync(path.join(tmpdir(), "starling-ts-data-"));
  }

  static async start(flags: string[] = []): Promise<Server> {
    const s = new Server(await freePort(), await buildBinaries(), flags);
    await s.startProcess();
    return s;
  }

  get target(): string {
    return `127.0.0.1:${this.port}`;
  }

  get url(): string {
    return `http://${this.target}`;
  }

  async startProcess(): Promise<void> {
    const args = [
      "--listen", this.target, "--data-dir", this.dataDir, "--node-id", "ts-test",
      "--bcrypt-cost", "4", "--login-rate", "0", "--register-rate", "0", "--send-rate", "0",
      "--log-level", "warn", ...this.flags,
    ];
    const p = spawn(path.join(this.bin, "starlingd"), args, { stdio: ["ignore", "ignore", "pipe"] });
    p.stderr!.on("data", (d) => (this.log += d));
    running.add(p);
    p.once("exit", () => running.delete(p));
    this.proc = p;
    // Up when it accepts TCP and answers a unary call.
    const probe = new StarlingClient({ baseUrl: this.url, timeoutMs: 1000 });
    try {
      await waitFor(`starlingd on ${this.target} (log: ${this.log})`, async () => {
        if (p.exitCode !== null) throw new Error(`starlingd exited ${p.exitCode}: ${this.log}`);
        try {
          await probe.listConversations();
          return true;
        } catch (e) {
          return String(e).includes("unauthenticated");
        }
      });
    } finally {
      probe.close();
    }
  }

  /** SIGTERM (a drain: every stream is told to reconnect) and wait for the exit. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGTERM");
    await exited;
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** A user of the TypeScript client: registered, logged in, with a session collecting what it receives. */
export class TsUser {
  readonly client: StarlingClient;
  session!: Session;
  readonly messages: Message[] = [];
  notifies = 0;
  readonly syncBatches: SyncBatch[] = [];
  userId = "";

  constructor(
    readonly name: string,
    baseUrl: string,
    client?: StarlingClient,
  ) {
    this.client = client ?? new StarlingClient({ baseUrl, timeoutMs: 10_000 });
  }

  static async create(name: string, baseUrl: string, register = true): Promise<TsUser> {
    const u = new TsUser(name, baseUrl);
    if (register) await u.client.register(name, password);
    const r = await u.client.login(name, password, "ts");
    u.userId = r.user!.userId;
    return u;
  }

  async connect(opts: SessionOptions = {}): Promise<Session> {
    this.session = await this.client.connect({ minBackoffMs: 50, maxBackoffMs: 500, ...opts });
    this.session.on("message", (m) => this.messages.push(m));
    this.session.on("notify", () => this.notifies++);
    this.session.on("sync", (b) => this.syncBatches.push(b));
    return this.session;
  }

  texts(conversationId?: string): string[] {
    return this.messages.filter((m) => !conversationId || m.conversationId === conversationId).map((m) => m.content?.text ?? "");
  }

  close(): void {
    this.client.close();
  }
}

/** A user of the Go CLI (cmd/starling) with its own config dir. */
export class GoUser {
  readonly dir: string;
  userId = "";
  listener: ChildProcess | undefined;
  readonly received: { conversation_id: string; seq: number; sender: string; text: string }[] = [];

  constructor(
    readonly name: string,
    private readonly server: Server,
  ) {
    this.dir = mkdtempSync(path.join(tmpdir(), `starling-ts-go-${name}-`));
  }

  private env() {
    return { ...process.env, STARLING_CONFIG_DIR: this.dir, STARLING_PASSWORD: password, STARLING_SERVER: this.server.target };
  }

  async cli(...args: string[]): Promise<string> {
    const bin = path.join(await buildBinaries(), "starling");
    const { stdout } = await run(bin, args, { env: this.env(), timeout: 30_000 });
    return stdout;
  }

  static async create(name: string, server: Server): Promise<GoUser> {
    const u = new GoUser(name, server);
    await u.cli("register", name);
    await u.cli("login", name, "--device", "go");
    u.userId = JSON.parse(await u.cli("whoami", "--json")).user_id;
    return u;
  }

  /** `starling listen --json`, collecting one message per line. */
  async listen(): Promise<void> {
    const bin = path.join(await buildBinaries(), "starling");
    const p = spawn(bin, ["listen", "--json"], { env: this.env(), stdio: ["ignore", "pipe", "pipe"] });
    running.add(p);
    p.once("exit", () => running.delete(p));
    createInterface({ input: p.stdout! }).on("line", (l) => {
      const j = JSON.parse(l);
      // Messages only: event lines (friend, group) carry an "event" key.
      if (j.event === undefined && j.seq !== undefined && j.text !== undefined) this.received.push(j);
    });
    this.listener = p;
  }

  async stopListening(): Promise<void> {
    const p = this.listener;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGINT");
    await exited;
  }
}

/** A TCP proxy in front of the server, so a test can break connections. */
export class Proxy {
  readonly port: number;
  private readonly server: net.Server;
  private readonly socks = new Set<net.Socket>();
  private refusing = false;
  /** When true, bytes from the server are dropped (a SendAck "lost" on the way). */
  stallDown = false;

  private constructor(port: number, server: net.Server) {
    this.port = port;
    this.server = server;
  }

  static async start(upstreamPort: number): Promise<Proxy> {
    const port = await freePort();
    let self: Proxy | undefined;
    const srv = net.createServer((client) => {
      if (!self || self.refusing) {
        client.destroy();
        return;
      }
      const up = net.connect(upstreamPort, "127.0.0.1");
      self.socks.add(client).add(up);
      client.on("data", (d) => up.write(d));
      up.on("data", (d) => {
        if (!self!.stallDown) client.write(d);
      });
      const end = () => {
        client.destroy();
        up.destroy();
        self!.socks.delete(client);
        self!.socks.delete(up);
      };
      client.on("close", end).on("error", end);
      up.on("close", end).on("error", end);
    });
    await new Promise<void>((r) => srv.listen(port, "127.0.0.1", r));
    self = new Proxy(port, srv);
    return self;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Break every connection; with refuse, also refuse new ones until restore(). */
  cut(refuse = false): void {
    this.refusing = refuse;
    for (const s of this.socks) s.destroy();
    this.socks.clear();
  }

  restore(): void {
    this.refusing = false;
    this.stallDown = false;
  }

  close(): void {
    this.cut(true);
    this.server.close();
  }
}

/** Asserts the seqs of a conversation's messages are strictly increasing (in order, no duplicates). */
export function seqs(ms: { seq: bigint | number }[]): number[] {
  return ms.map((m) => Number(m.seq));
}
