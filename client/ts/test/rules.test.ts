// The client's delivery rules under faults a real network rarely makes on
// cue: a tap (a Connect interceptor on the Stream) drops, doubles or
// records frames between the session and a real starlingd, like the Go
// client's tests do with a gRPC interceptor (client/helpers_test.go).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

import { create } from "@bufbuild/protobuf";

import {
  ClosedError,
  DisconnectError,
  DisconnectReason,
  FrameError,
  MemoryStore,
  StarlingClient,
  StreamResponseSchema,
  type StreamRequest,
  type StreamResponse,
} from "../src/index.js";
import { Server, TsUser, password, seqs, waitFor } from "./harness.js";

/**
 * Tap: onRecv says how many times a server frame reaches the session (0
 * drops it); rewrite may replace it; dropSent drops client frames; sent
 * records them. hold keeps server frames back until a frame release
 * matches has reached the session, to stage an order of frames the server
 * may send but not on cue.
 */
class Tap {
  onRecv: (f: StreamResponse) => number = () => 1;
  rewrite: (f: StreamResponse) => StreamResponse = (f) => f;
  dropSent: (f: StreamRequest) => boolean = () => false;
  hold: (f: StreamResponse) => boolean = () => false;
  release: (f: StreamResponse) => boolean = () => false;
  held: StreamResponse[] = [];
  readonly sent: StreamRequest[] = [];

  interceptor(): Interceptor {
    return (next) => async (req) => {
      if (!req.stream || req.method.name !== "Stream") return next(req);
      const tap = this;
      const res = await next({
        ...req,
        message: (async function* () {
          for await (const f of req.message as AsyncIterable<StreamRequest>) {
            tap.sent.push(f);
            if (!tap.dropSent(f)) yield f;
          }
        })(),
      });
      if (!res.stream) return res;
      return {
        ...res,
        message: (async function* () {
          for await (const f of res.message as AsyncIterable<StreamResponse>) {
            if (tap.hold(f)) {
              tap.held.push(f);
              continue;
            }
            for (let n = tap.onRecv(f); n > 0; n--) yield tap.rewrite(f);
            if (tap.held.length > 0 && tap.release(f)) {
              const held = tap.held;
              tap.held = [];
              yield* held;
            }
          }
        })(),
      };
    };
  }
}

let srv: Server;
before(async () => {
  srv = await Server.start();
});
after(async () => {
  await srv.close();
});

let n = 0;
/** Registers a user and logs a TypeScript device in, optionally through a tap (on the shared server unless on is given). */
async function user(name: string, tap?: Tap, on: Server = srv): Promise<TsUser> {
  const client = new StarlingClient({ baseUrl: on.url, timeoutMs: 10_000, interceptors: tap ? [tap.interceptor()] : [] });
  const u = new TsUser(`${name}${++n}`, on.url, client);
  await u.client.register(u.name, password);
  u.userId = (await u.client.login(u.name, password, "ts")).user!.userId;
  return u;
}

/** Waits a moment and asserts nothing more arrived (used after the expected messages are in). */
async function quiet(u: TsUser, count: number): Promise<void> {
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(u.messages.length, count, `more messages than expected: ${u.texts()}`);
}

test("a lost push leaves a gap that the next push reveals; it is filled with Sync from the last seq", async () => {
  const tap = new Tap();
  let dropped = 0;
  tap.onRecv = (f) => (f.frame.case === "push" && f.frame.value.messages.some((m) => m.seq === 2n) && dropped++ === 0 ? 0 : 1);
  const alice = await user("alice");
  const bob = await user("bob", tap);
  try {
    await alice.connect();
    await bob.connect();
    for (const t of ["one", "two", "three"]) await alice.session.send({ userId: bob.userId }, t);
    await waitFor("bob gets 3", () => bob.messages.length >= 3);
    assert.deepEqual(bob.texts(), ["one", "two", "three"]);
    assert.equal(dropped, 1);
    const syncs = tap.sent.filter((f) => f.frame.case === "sync").map((f) => (f.frame.value as { afterSeq: bigint }).afterSeq);
    assert.ok(syncs.includes(1n), `Syncs after ${syncs}, want one after 1`);
    await quiet(bob, 3);
  } finally {
    alice.close();
    bob.close();
  }
});

test("a Send answered UNAVAILABLE (stored or not, the server cannot say) is resent with the same client_msg_id: stored once", async () => {
  const tap = new Tap();
  let replaced = 0;
  // The first SendAck becomes the Error a commit of unknown outcome gets.
  tap.rewrite = (f) =>
    f.frame.case === "sendAck" && replaced++ === 0
      ? create(StreamResponseSchema, { ref: f.ref, frame: { case: "error", value: { code: Code.Unavailable, message: "try again" } } })
      : f;
  const alice = await user("alice", tap);
  const bob = await user("bob");
  try {
    await alice.connect();
    await bob.connect();
    const r = await alice.session.send({ userId: bob.userId }, "once", "cmid-unavailable");
    assert.equal(replaced, 2);
    assert.equal(r.ack.duplicate, true);
    assert.equal(tap.sent.filter((f) => f.frame.case === "send").length, 2);
    await waitFor("bob gets it", () => bob.messages.length >= 1);
    await alice.session.send({ userId: bob.userId }, "marker");
    await waitFor("bob gets the marker", () => bob.messages.length >= 2);
    assert.deepEqual(bob.texts(), ["once", "marker"]);
    // Other refusals are final: the promise rejects with the code.
    await assert.rejects(alice.session.send({ userId: bob.userId }, "other", "cmid-unavailable"), (e) => e instanceof FrameError && e.code === Code.AlreadyExists);
  } finally {
    alice.close();
    bob.close();
  }
});

test("a Sync refused UNAVAILABLE is tried again after a pause: the backlog still arrives once", async () => {
  const tap = new Tap();
  let refused = 0;
  tap.rewrite = (f) =>
    f.frame.case === "syncBatch" && refused++ === 0
      ? create(StreamResponseSchema, { ref: f.ref, frame: { case: "error", value: { code: Code.Unavailable, message: "try again" } } })
      : f;
  const alice = await user("alice");
  const bob = await user("bob", tap);
  try {
    await alice.connect();
    for (const t of ["p", "q"]) await alice.session.send({ userId: bob.userId }, t);
    await bob.connect(); // offline until now: Notify, Sync (refused), Sync again
    await waitFor("bob gets 2", () => bob.messages.length >= 2);
    assert.ok(refused >= 2);
    assert.deepEqual(bob.texts(), ["p", "q"]);
    await quiet(bob, 2);
  } finally {
    alice.close();
    bob.close();
  }
});

test("every push arriving twice: the app still sees each message once", async () => {
  const tap = new Tap();
  tap.onRecv = (f) => (f.frame.case === "push" ? 2 : 1);
  const alice = await user("alice");
  const bob = await user("bob", tap);
  try {
    await alice.connect();
    await bob.connect();
    for (const t of ["x", "y", "z"]) await alice.session.send({ userId: bob.userId }, t);
    await waitFor("bob gets 3", () => bob.messages.length >= 3);
    await quiet(bob, 3);
    assert.deepEqual(seqs(bob.messages), [1, 2, 3]);
  } finally {
    alice.close();
    bob.close();
  }
});

test("acks lost with a session: the next one (same store) shows nothing twice, re-acks, and pushes still flow", async () => {
  const tap = new Tap();
  tap.dropSent = (f) => f.frame.case === "pushAck";
  const alice = await user("alice");
  const bob = await user("bob", tap);
  const store = new MemoryStore();
  try {
    await alice.connect();
    await bob.connect({ store });
    await alice.session.send({ userId: bob.userId }, "one");
    await alice.session.send({ userId: bob.userId }, "two");
    await waitFor("bob gets 2", () => bob.messages.length >= 2);
    bob.session.close();
    await new Promise((r) => setImmediate(r));

    tap.dropSent = () => false;
    const second = new TsUser(bob.name, srv.url, bob.client);
    await second.connect({ store });
    await alice.session.send({ userId: bob.userId }, "three");
    await waitFor("bob's second session gets three", () => second.messages.length >= 1);
    await quiet(second, 1);
    assert.deepEqual(second.texts(), ["three"]);
    const conv = (await bob.client.listConversations())[0];
    await waitFor("the server's cursor reaches 3", async () => (await bob.client.listConversations())[0].deliveredSeq === 3n);
    assert.equal(conv.latestSeq, 3n);
  } finally {
    alice.close();
    bob.close();
  }
});

test("a new device of a user gets the whole conversation, its own sent messages included", async () => {
  const alice = await user("alice");
  const bob = await user("bob");
  try {
    await alice.connect();
    for (const t of ["a", "b"]) await alice.session.send({ userId: bob.userId }, t);
    const laptop = new TsUser(alice.name, srv.url);
    await laptop.client.login(alice.name, password, "laptop");
    await laptop.connect();
    await waitFor("the laptop gets 2", () => laptop.messages.length >= 2);
    assert.deepEqual(laptop.texts(), ["a", "b"]);
    // The phone's next send reaches the laptop as a push (other devices of the sender get it).
    await alice.session.send({ userId: bob.userId }, "c");
    await waitFor("the laptop gets 3", () => laptop.messages.length >= 3);
    assert.deepEqual(seqs(laptop.messages), [1, 2, 3]);
    laptop.close();
  } finally {
    alice.close();
    bob.close();
  }
});

test("logout: Disconnect LOGGED_OUT ends the session, and the token is refused afterwards", async () => {
  const alice = await user("alice");
  try {
    await alice.connect();
    let reason: unknown;
    alice.session.on("closed", (e) => (reason = e));
    await alice.session.logout();
    assert.ok(reason instanceof DisconnectError);
    assert.equal(reason.info.reason, DisconnectReason.LOGGED_OUT);
    assert.equal(reason.info.reconnect, false);
    await assert.rejects(alice.client.connect(), (e) => e instanceof ConnectError && e.code === Code.Unauthenticated);
  } finally {
    alice.close();
  }
});

test("a newer stream of the same device replaces the older: Disconnect REPLACED, no reconnect", async () => {
  const alice = await user("alice");
  try {
    const first = await alice.client.connect({ minBackoffMs: 50 });
    const closed = new Promise((r) => first.once("closed", r));
    const second = await alice.client.connect({ minBackoffMs: 50 });
    const err = await closed;
    assert.ok(err instanceof DisconnectError);
    assert.equal(err.info.reason, DisconnectReason.REPLACED);
    assert.equal(second.closed, false);
    await assert.rejects(first.send({ userId: alice.userId }, "x"), (e) => e instanceof DisconnectError);
  } finally {
    alice.close();
  }
});

test("a bad token: connect rejects UNAUTHENTICATED; close() rejects pending sends", async () => {
  const c = new StarlingClient({ baseUrl: srv.url, token: "garbage" });
  try {
    await assert.rejects(c.connect(), (e) => e instanceof ConnectError && e.code === Code.Unauthenticated);
  } finally {
    c.close();
  }
  const alice = await user("alice");
  const bob = await user("bob");
  try {
    const s = await alice.connect();
    const p = s.send({ userId: bob.userId }, "never answered?");
    s.close();
    await p.then(
      () => {}, // answered before close: fine
      (e) => assert.ok(e instanceof ClosedError),
    );
  } finally {
    alice.close();
    bob.close();
  }
});

test("heartbeats: the session Pings every interval, which keeps its stream open; a silent server is left after three intervals", async () => {
  // A heartbeat of 400 ms: the server closes a stream silent for 1.2 s.
  const hb = await Server.start(["--heartbeat-interval", "400ms"]);
  const pinging = new Tap();
  const mute = new Tap(); // its Pings are lost: the server finds it idle
  mute.dropSent = (f) => f.frame.case === "ping";
  const deaf = new Tap(); // the server's answers are lost: the client finds it silent
  deaf.onRecv = (f) => (f.frame.case === "pong" ? 0 : 1);
  const users = [await user("alice", pinging, hb), await user("bob", mute, hb), await user("carol", deaf, hb)];
  const [alice, bob, carol] = users;
  try {
    const ends = new Map<TsUser, string[]>();
    for (const u of users) {
      await u.connect();
      ends.set(u, []);
      u.session.on("disconnect", (d) => ends.get(u)!.push(`disconnect ${DisconnectReason[d.reason]}`));
      u.session.on("reconnecting", (r) => ends.get(u)!.push(`reconnecting: ${r.error instanceof Error ? r.error.message : r.error}`));
    }
    assert.equal(alice.session.welcome?.heartbeatInterval?.nanos, 400_000_000);
    const pings = () => pinging.sent.filter((f) => f.frame.case === "ping").length;
    await waitFor("bob is closed IDLE", () => ends.get(bob)!.includes("disconnect IDLE"));
    await waitFor("carol leaves the silent stream", () => ends.get(carol)!.some((e) => e.includes("no frame from server for 3 heartbeat intervals")));
    await waitFor("alice Pings for over three idle timeouts", () => pings() >= 10);
    assert.deepEqual(ends.get(alice), [], "alice's stream stayed open");
    // Carol Pinged all along; the server kept her stream, she left it.
    assert.ok(deaf.sent.filter((f) => f.frame.case === "ping").length >= 3);
    assert.ok(!ends.get(carol)!.some((e) => e.startsWith("disconnect")));
  } finally {
    for (const u of users) u.close();
    await hb.close();
  }
});

test("a Notify that arrives while a Sync is in flight is followed by another Sync, even after an empty answer", async () => {
  // Window 1. Bob holds everything of alice's conversation but his acks
  // were lost, so his new stream gets a Notify he answers with an "I have
  // everything" Sync. Its empty answer is held back until the Notify of
  // alice's next message (the window is full with carol's unacknowledged
  // push) has reached him: the answer predates that message, and the
  // server sends no other Notify for it. Without a second Sync it strands.
  const w1 = await Server.start(["--window", "1"]);
  const tap = new Tap();
  tap.dropSent = (f) => f.frame.case === "pushAck";
  const alice = await user("alice", undefined, w1);
  const carol = await user("carol", undefined, w1);
  const bob = await user("bob", tap, w1);
  const store = new MemoryStore();
  try {
    await alice.connect();
    await carol.connect();
    await bob.connect({ store });
    const conv = (await alice.session.send({ userId: bob.userId }, "one")).ack.conversationId;
    await alice.session.send({ userId: bob.userId }, "two");
    await waitFor("bob gets 2", () => bob.messages.length >= 2);
    bob.session.close();

    tap.hold = (f) => f.frame.case === "syncBatch" && f.frame.value.conversationId === conv && f.frame.value.messages.length === 0;
    tap.release = (f) => f.frame.case === "notify" && f.frame.value.conversationId === conv && f.frame.value.latestSeq === 3n;
    const second = new TsUser(bob.name, w1.url, bob.client);
    await second.connect({ store });
    await waitFor("the empty SyncBatch, held back", () => tap.held.length === 1);
    await carol.session.send({ userId: bob.userId }, "fills the window");
    await waitFor("bob gets carol's", () => second.messages.length >= 1);
    await alice.session.send({ userId: bob.userId }, "three");
    await waitFor("bob gets three", () => second.messages.length >= 2);
    assert.equal(tap.held.length, 0);
    const syncs = tap.sent.filter((f) => f.frame.case === "sync" && f.frame.value.conversationId === conv);
    assert.ok(syncs.length >= 3, `${syncs.length} Syncs, want 3 (each session's first, then the one the Notify called for)`);
    // Nothing is stranded after it either.
    await alice.session.send({ userId: bob.userId }, "four");
    await waitFor("bob gets four", () => second.messages.length >= 3);
    await quiet(second, 3);
    assert.deepEqual(second.texts(), ["fills the window", "three", "four"]);
  } finally {
    alice.close();
    carol.close();
    bob.close();
    await w1.close();
  }
});
