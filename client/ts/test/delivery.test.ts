// The TypeScript client against a real starlingd and the Go CLI. Each test
// asserts what the app sees: every message, in seq order, exactly once.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";

import { Code, ConnectError } from "@connectrpc/connect";

import { FrameError, MemoryStore, type Event, type Receipt, type TypingNotice } from "../src/index.js";
import { GoUser, Proxy, Server, TsUser, password, repoRoot, seqs, waitFor } from "./harness.js";

const execFileP = promisify(execFile);
const c2c = (a: string, b: string) => (a < b ? `c2c:${a}:${b}` : `c2c:${b}:${a}`);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe("against one starlingd", () => {
  let srv: Server;
  const cleanup: (() => unknown)[] = [];
  before(async () => {
    srv = await Server.start();
  });
  after(async () => {
    for (const f of cleanup.reverse()) await f();
    await srv.close();
  });
  const ts = async (name: string, baseUrl = srv.url) => {
    const u = await TsUser.create(name, baseUrl);
    cleanup.push(() => u.close());
    return u;
  };
  const go = async (name: string) => {
    const u = await GoUser.create(name, srv);
    cleanup.push(() => u.stopListening());
    return u;
  };

  test("c2c: TypeScript → Go and Go → TypeScript, in order, own messages slotted from SendAck", async () => {
    const alice = await ts("alice1");
    const bob = await go("bob1");
    await alice.connect();
    await bob.listen();
    for (const t of ["one", "two", "three"]) await alice.session.send({ userId: bob.userId }, t);
    await waitFor("bob (Go) gets 3", () => bob.received.length >= 3);
    assert.deepEqual(bob.received.map((m) => [m.seq, m.text]), [[1, "one"], [2, "two"], [3, "three"]]);

    await bob.cli("send", "alice1", "from go 1");
    await bob.cli("send", "alice1", "from go 2");
    const conv = c2c(alice.userId, bob.userId);
    await waitFor("alice (TS) gets 5", () => alice.messages.length >= 5);
    assert.deepEqual(seqs(alice.messages), [1, 2, 3, 4, 5]);
    assert.deepEqual(alice.texts(conv), ["one", "two", "three", "from go 1", "from go 2"]);
    assert.equal(alice.messages[0].senderId, alice.userId);
    assert.equal(alice.messages[3].senderId, bob.userId);

    const hist = await alice.client.history(conv);
    assert.deepEqual(seqs(hist.messages), [1, 2, 3, 4, 5]);
    const list = await alice.client.listConversations();
    const st = list.find((c) => c.conversationId === conv)!;
    assert.equal(st.latestSeq, 5n);
    await waitFor("alice's PushAck reaches the server", async () => {
      const l = await alice.client.listConversations();
      return l.find((c) => c.conversationId === conv)!.deliveredSeq === 5n;
    });
  });

  test("group: Go and TypeScript members both ways; a late joiner starts at the join point", async () => {
    const alice = await ts("alice2");
    const carol = await ts("carol2");
    const bob = await go("bob2");
    await alice.connect();
    await bob.listen();
    const g = await alice.client.createGroup("g2", [bob.userId]);
    await alice.session.send({ groupId: g.groupId }, "hello group");
    await bob.cli("gsend", g.groupId, "hello from go");
    await waitFor("alice gets 3", () => alice.messages.length >= 3);
    await waitFor("bob gets 3", () => bob.received.length >= 3);
    // Seq 1 is the group's creation: a system message (sender "").
    assert.equal(alice.messages[0].seq, 1n);
    assert.equal(alice.messages[0].senderId, "");
    assert.equal(alice.messages[0].content?.type, "starling.group_change");
    assert.deepEqual(alice.texts().slice(1), ["hello group", "hello from go"]);
    assert.deepEqual(bob.received.map((m) => m.text).slice(1), ["hello group", "hello from go"]);

    // carol joins after seq 3: her Sync starts at joined_seq+1, which is
    // not a gap to fill. Seq 4 is the system message that added her.
    await alice.client.addMembers(g.groupId, [carol.userId]);
    await alice.session.send({ groupId: g.groupId }, "welcome carol");
    await carol.connect();
    await waitFor("carol gets what followed her joining", () => carol.messages.length >= 2);
    await bob.cli("gsend", g.groupId, "hi carol");
    await waitFor("carol gets 3", () => carol.messages.length >= 3);
    assert.deepEqual(seqs(carol.messages), [4, 5, 6]);
    assert.equal(carol.messages[0].senderId, "");
    assert.equal(carol.messages[0].content?.type, "starling.group_change");
    assert.deepEqual(carol.texts().slice(1), ["welcome carol", "hi carol"]);
    const st = (await carol.client.listConversations()).find((c) => c.conversationId === g.conversationId)!;
    assert.equal(st.joinedSeq, 3n);
    await waitFor("bob gets 6", () => bob.received.length >= 6);
    assert.deepEqual(bob.received.map((m) => m.seq), [1, 2, 3, 4, 5, 6]);
  });

  test("offline → reconnect: Notify, then Sync while has_more; the missed messages arrive once, in order", async () => {
    const proxy = await Proxy.start(srv.port);
    cleanup.push(() => proxy.close());
    const bob = await ts("bob3", proxy.url);
    const alice = await go("alice3");
    await bob.connect({ syncLimit: 2 }); // several SyncBatches with has_more
    await alice.cli("send", "bob3", "before");
    await waitFor("bob gets 1", () => bob.messages.length >= 1);

    proxy.cut(true); // the network goes away
    await waitFor("bob notices", () => bob.session.welcome === undefined);
    for (const i of range(1, 5)) await alice.cli("send", "bob3", `away ${i}`);
    proxy.restore();
    await waitFor("bob gets 6", () => bob.messages.length >= 6);
    assert.ok(bob.notifies >= 1);
    assert.deepEqual(
      bob.syncBatches.map((b) => [b.messages.length, b.hasMore]),
      [[2, true], [2, true], [1, false]],
    );
    // Nothing more arrives: a duplicate would show up behind a marker.
    await alice.cli("send", "bob3", "marker");
    await waitFor("bob gets the marker", () => bob.messages.length >= 7);
    assert.deepEqual(seqs(bob.messages), range(1, 7));
    assert.deepEqual(bob.texts(), ["before", "away 1", "away 2", "away 3", "away 4", "away 5", "marker"]);

    // A new session of the same device finds nothing new: the acks arrived.
    const conv = c2c(alice.userId, bob.userId);
    await waitFor("the server's cursor reaches 7", async () => {
      const l = await bob.client.listConversations();
      return l.find((c) => c.conversationId === conv)?.deliveredSeq === 7n;
    });
  });

  test("a Send whose SendAck was lost with the stream is resent with the same client_msg_id: duplicate, stored once", async () => {
    const proxy = await Proxy.start(srv.port);
    cleanup.push(() => proxy.close());
    const alice = await ts("alice4", proxy.url);
    const bob = await ts("bob4");
    await alice.connect();
    await bob.connect();
    const first = await alice.session.send({ userId: bob.userId }, "first");
    assert.equal(first.ack.duplicate, false);

    proxy.stallDown = true; // the server's answers stop reaching alice
    const sent = alice.session.send({ userId: bob.userId }, "lost ack", "cmid-lost-ack-4");
    await waitFor("the server stored it (bob got it)", () => bob.messages.length >= 2);
    proxy.cut(); // the stream breaks between Send and SendAck
    proxy.restore();
    const r = await sent;
    assert.equal(r.ack.duplicate, true);
    assert.equal(r.ack.seq, 2n);
    assert.equal(r.clientMsgId, "cmid-lost-ack-4");

    await alice.session.send({ userId: bob.userId }, "after");
    await waitFor("bob gets 3", () => bob.messages.length >= 3);
    assert.deepEqual(bob.texts(), ["first", "lost ack", "after"]);
    assert.deepEqual(seqs(bob.messages), [1, 2, 3]);
    await waitFor("alice's own copy of each, once", () => alice.messages.length >= 3);
    assert.deepEqual(alice.texts(), ["first", "lost ack", "after"]);
  });

  test("events: a friend request from Go reaches a TypeScript device online, after a break, and after being offline, each exactly once", async () => {
    const proxy = await Proxy.start(srv.port);
    cleanup.push(() => proxy.close());
    const bob = await ts("bob6", proxy.url);
    const alice = await go("alice6");
    const dave = await go("dave6");
    const erin = await go("erin6");
    const store = new MemoryStore(); // what bob's app keeps across its sessions
    const events: Event[] = [];
    await bob.connect({ store });
    bob.session.on("event", (e) => events.push(e));
    await alice.cli("friends", "request", "bob6", "hi from go");
    await waitFor("bob gets the request", () => events.length >= 1);
    assert.equal(events[0].kind.case, "friendRequested");
    assert.equal(events[0].actorId, alice.userId);

    proxy.cut(true);
    await waitFor("bob notices", () => bob.session.welcome === undefined);
    await dave.cli("friends", "request", "bob6", "hi from dave");
    proxy.restore();
    await waitFor("bob gets dave's request after reconnecting", () => events.some((e) => e.actorId === dave.userId));
    await bob.client.friends.acceptFriendRequest({ userId: alice.userId });
    await waitFor("bob's own acceptance comes back as an event", () => events.length >= 3);
    const stored = events.filter((e) => e.seq > 0n);
    assert.deepEqual(seqs(stored), [1, 2, 3]);
    assert.equal(stored[2].kind.case, "friendRequestAccepted");

    // Offline: the app closed its session; a request comes meanwhile.
    bob.session.close();
    await erin.cli("friends", "request", "bob6", "hi from erin");
    const later: Event[] = [];
    await bob.connect({ store });
    bob.session.on("event", (e) => later.push(e));
    await waitFor("bob gets erin's request after coming back", () => later.some((e) => e.actorId === erin.userId));
    // A marker behind it: nothing before it comes twice.
    await bob.client.friends.acceptFriendRequest({ userId: erin.userId });
    await waitFor("the marker (bob's acceptance)", () => later.some((e) => e.kind.case === "friendRequestAccepted"));
    const again = later.filter((e) => e.seq > 0n);
    assert.deepEqual(seqs(again), [4, 5]);
    assert.equal(again[0].kind.case, "friendRequested");
    assert.equal(again[0].conversationId, `evt:${bob.userId}`);
  });

  test("receipts and typing: the sender gets a Receipt when the TypeScript reader marks read; typing reaches the other member", async () => {
    const alice = await ts("alice8");
    const bob = await ts("bob8");
    await alice.connect();
    await bob.connect();
    const receipts: Receipt[] = [];
    const typing: TypingNotice[] = [];
    alice.session.on("receipt", (r) => receipts.push(r));
    alice.session.on("typing", (t) => typing.push(t));
    const { ack } = await alice.session.send({ userId: bob.userId }, "read me");
    await alice.session.send({ userId: bob.userId }, "and me");
    await waitFor("bob gets 2", () => bob.messages.length >= 2);

    assert.equal(bob.session.typing(ack.conversationId), true);
    await waitFor("alice sees bob typing", () => typing.length >= 1);
    assert.deepEqual([typing[0].conversationId, typing[0].userId], [ack.conversationId, bob.userId]);

    await bob.session.markRead(ack.conversationId, 2n);
    await waitFor("alice gets bob's read receipt", () => receipts.some((r) => r.userId === bob.userId && r.readSeq === 2n));
    const r = receipts.find((r) => r.readSeq === 2n)!;
    assert.equal(r.conversationId, ack.conversationId);
    assert.equal(r.deliveredSeq, 2n);
    // The server's read cursor moved too (what the inbox's unread count comes from).
    const st = (await bob.client.listConversations()).find((c) => c.conversationId === ack.conversationId)!;
    assert.equal(st.readSeq, 2n);
    // Past the newest seq: refused, and the cursor stays.
    await assert.rejects(bob.client.chat.markRead({ conversationId: ack.conversationId, seq: 99n }), (e) => e instanceof ConnectError && e.code === Code.InvalidArgument);
    await bob.session.markRead(ack.conversationId, 99n); // over the stream: an Error frame, logged by nobody, harmless
    const after = (await bob.client.listConversations()).find((c) => c.conversationId === ack.conversationId)!;
    assert.equal(after.readSeq, 2n);
  });

  test("the README's example program chats with the Go CLI", async () => {
    // The README shows examples/chat.ts from its import on, verbatim.
    const readme = readFileSync(path.join(repoRoot, "README.md"), "utf8");
    const shown = readme.slice(readme.indexOf("## From other languages")).match(/```ts\n([\s\S]*?)```/)?.[1];
    const program = readFileSync(path.join(repoRoot, "client/ts/examples/chat.ts"), "utf8");
    assert.equal(shown, program.slice(program.indexOf("import {")), "README's TypeScript example differs from client/ts/examples/chat.ts");

    await ts("alice7");
    const bob = await go("bob7");
    await bob.listen();
    const example = fileURLToPath(new URL("../examples/chat.js", import.meta.url));
    const out = execFileP(process.execPath, [example, srv.url, "alice7", password, "bob7", "2"], { timeout: 30_000 });
    await waitFor("bob (Go) gets the example's hi", () => bob.received.length >= 1);
    assert.equal(bob.received[0].text, "hi bob7, from Node");
    await bob.cli("send", "alice7", "hello node");
    const lines = (await out).stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => [l.seq, l.text]), [[1, "hi bob7, from Node"], [2, "hello node"]]);
  });

  test("a refused Send rejects with the Error frame's code and stores nothing", async () => {
    const alice = await ts("alice5");
    await alice.connect();
    await assert.rejects(alice.session.send({ userId: "no-such-user" }, "x"), (e) => e instanceof FrameError);
    await assert.rejects(alice.session.send({ userId: alice.userId }, "x", ""), (e) => e instanceof FrameError && e.code === 3);
  });
});

test("window overflow: Notify → Sync → pushes resume", async () => {
  const srv = await Server.start(["--window", "4"]);
  const alice = await TsUser.create("alice", srv.url);
  const bob = await TsUser.create("bob", srv.url);
  try {
    await alice.connect();
    await bob.connect();
    bob.session.pause(); // bob's app stops reading: no acks, the window fills
    for (const i of range(1, 10)) await alice.session.send({ userId: bob.userId }, `m${i}`);
    await waitFor("bob is sent a Notify", () => bob.notifies >= 1);
    await waitFor("bob pulls with Sync", () => bob.syncBatches.some((b) => !b.hasMore));
    bob.session.resume();
    await waitFor("bob gets 10", () => bob.messages.length >= 10);
    assert.deepEqual(seqs(bob.messages), range(1, 10));
    const notifies = bob.notifies;
    // Synced to the end and acked: pushes resume, no further Notify.
    const conv = c2c(alice.userId, bob.userId);
    await waitFor("bob's acks reach the server", async () => {
      const l = await bob.client.listConversations();
      return l.find((c) => c.conversationId === conv)?.deliveredSeq === 10n;
    });
    await alice.session.send({ userId: bob.userId }, "m11");
    await waitFor("bob gets 11", () => bob.messages.length >= 11);
    assert.equal(bob.notifies, notifies);
    assert.deepEqual(seqs(bob.messages), range(1, 11));
  } finally {
    alice.close();
    bob.close();
    await srv.close();
  }
});

test("server restart mid-conversation: both sides reconnect, a send made while it was down is delivered once", async () => {
  const srv = await Server.start();
  const alice = await TsUser.create("alice", srv.url);
  const bob = await TsUser.create("bob", srv.url);
  const carl = await GoUser.create("carl", srv);
  try {
    await alice.connect();
    await bob.connect();
    let disconnects = 0;
    bob.session.on("disconnect", (d) => {
      assert.equal(d.reconnect, true);
      disconnects++;
    });
    await alice.session.send({ userId: bob.userId }, "before restart");
    await waitFor("bob gets 1", () => bob.messages.length >= 1);

    await srv.stop(); // SIGTERM: a drain; each stream is told to reconnect
    const whileDown = alice.session.send({ userId: bob.userId }, "while down");
    await srv.startProcess();
    const r = await whileDown;
    assert.equal(r.ack.seq, 2n);
    await carl.cli("send", "bob", "from go after restart");
    await waitFor("bob gets 2 from alice and 1 from carl", () => bob.messages.length >= 3);
    assert.deepEqual(bob.texts(c2c(alice.userId, bob.userId)), ["before restart", "while down"]);
    assert.deepEqual(bob.texts(c2c(carl.userId, bob.userId)), ["from go after restart"]);
    assert.equal(disconnects, 1);
  } finally {
    alice.close();
    bob.close();
    await srv.close();
  }
});
