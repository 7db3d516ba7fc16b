// Session: one device's Stream, kept open across breaks, with the delivery
// rules of docs/protocol.md ("A correct client must …"), the same ones the
// Go client (client/) follows:
//
//   - in-order, exactly-once delivery per conversation: an item (message or
//     stored event) is handed to the app only when its seq is last+1, or
//     when a SyncBatch vouches that nothing visible lies between;
//   - a gap (a push past last+1) is held and filled with Sync;
//   - every Notify is answered with a Sync, even when nothing is missing,
//     and Sync loops while has_more;
//   - PushAck is cumulative: one per conversation after a burst;
//   - unanswered sends are written again, same client_msg_id, after every
//     reconnect; the server answers a resend with the first send's ack;
//   - the device's own message is slotted into its conversation from the
//     SendAck (the server never pushes it back to the sending device);
//   - a Sync refused UNAVAILABLE is tried again after a backoff (the server
//     sends no further Notify while the conversation is in pull mode);
//   - Receipt and TypingNotice frames are handed to the app as they come
//     (positions and hints: no order, no ack).
//
// Node runs this on one thread, so the state needs no locks: every handler
// runs to completion before the next frame is looked at.

import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";

import { AuthService } from "../gen/starling/v1/auth_pb.js";
import {
  ChatService,
  DisconnectReason,
  StreamRequestSchema,
  type Disconnect,
  type Error as ErrorFrame,
  type Notify,
  type Receipt,
  type SendAck,
  type StreamRequest,
  type StreamResponse,
  type SyncBatch,
  type TypingNotice,
  type Welcome,
} from "../gen/starling/v1/chat_pb.js";
import type { Event } from "../gen/starling/v1/event_pb.js";
import { ContentSchema, MessageSchema, type Content, type ConversationState, type Message } from "../gen/starling/v1/types_pb.js";

/**
 * What a Session needs of its client: the Stream, Logout and the listing
 * a resync compares. StarlingClient is one; the interface lives here, where
 * it is used, so the session does not import the client that creates it.
 */
export interface SessionClient {
  readonly auth: Pick<Client<typeof AuthService>, "logout">;
  readonly chat: Pick<Client<typeof ChatService>, "stream" | "markRead">;
  listConversations(opts: { statesOnly?: boolean }): Promise<ConversationState[]>;
}

/** Where the app keeps the highest seq it received per conversation, so a restart shows nothing twice. */
export interface StateStore {
  load(conversationId: string): bigint | undefined;
  save(conversationId: string, seq: bigint): void;
}

export interface SessionOptions {
  /** Per-conversation state across restarts (default: in memory, for this Session only). */
  store?: StateStore;
  /** First reconnect delay in ms (default 250); doubles per failed attempt, with jitter. */
  minBackoffMs?: number;
  /** Longest reconnect delay in ms (default 30 000). */
  maxBackoffMs?: number;
  /** How long to wait for Welcome in ms (default 15 000). */
  welcomeTimeoutMs?: number;
  /** Messages per Sync (1–500; default 0: the server's 100). */
  syncLimit?: number;
}

/** A message the server stored, as SendAck reports it. */
export interface Sent {
  ack: SendAck;
  clientMsgId: string;
}

export type Recipient = { userId: string } | { groupId: string };

/** What the server said when closing the stream. */
export interface DisconnectInfo {
  reason: DisconnectReason;
  message: string;
  reconnect: boolean;
}

/** The session's events. */
export interface SessionEvents {
  /** The stream is (re)authenticated; live delivery starts here. */
  welcome: [Welcome];
  /** The next message of a conversation, in seq order, exactly once (own sends included). */
  message: [Message];
  /**
   * The next stored event of the user's event stream "evt:<user_id>"
   * (friend requests, friends made and removed, blocks, …; seq > 0, in seq
   * order, exactly once), or an ephemeral one (seq 0: a friend's presence,
   * a change of a group the user stays in).
   * The Event is passed through as the server sent it: switch on
   * event.kind.case, and ignore cases this app does not know.
   */
  event: [Event];
  /**
   * Where a user stands in a conversation: the peer's delivered and read
   * ticks (one-to-one), or this user's read cursor moved on another device.
   * Positions: apply with max. After a reconnect, one per one-to-one
   * conversation that changed while this device was away.
   */
  receipt: [Receipt];
  /** Another member is typing (show it for a few seconds; never stored). */
  typing: [TypingNotice];
  /** A Send of this device was stored. */
  ack: [Sent];
  /** A conversation has messages to pull; the session pulls them itself. */
  notify: [Notify];
  /** A SyncBatch answering one of the session's Syncs (before its messages are handed over). */
  sync: [SyncBatch];
  /** The server closed the stream; reconnect says whether the session tries again. */
  disconnect: [DisconnectInfo];
  /** The stream broke; the next attempt starts after delayMs. */
  reconnecting: [{ attempt: number; delayMs: number; error: unknown }];
  /** The session ended for good: close(), logout, or an error no reconnect cures. */
  closed: [unknown];
}

/** A frame the server refused (the Error frame), with its gRPC code. */
export class FrameError extends Error {
  constructor(
    readonly code: Code,
    message: string,
    readonly fatal: boolean,
  ) {
    super(`[${Code[code] ?? code}] ${message}`);
    this.name = "FrameError";
  }
}

/** The server closed the stream and said not to reconnect (logged out, replaced). */
export class DisconnectError extends Error {
  constructor(readonly info: DisconnectInfo) {
    super(`disconnected by server (${DisconnectReason[info.reason]}): ${info.message}`);
    this.name = "DisconnectError";
  }
}

/** The session was closed by close(). */
export class ClosedError extends Error {
  constructor() {
    super("session closed");
    this.name = "ClosedError";
  }
}

/** A stored message or event, as it travels through the ordering rules. */
type Item =
  | { kind: "message"; conversationId: string; seq: bigint; message: Message }
  | { kind: "event"; conversationId: string; seq: bigint; event: Event };

const messageItem = (m: Message): Item => ({ kind: "message", conversationId: m.conversationId, seq: m.seq, message: m });
const eventItem = (e: Event): Item => ({ kind: "event", conversationId: e.conversationId, seq: e.seq, event: e });

/** What the session knows about one conversation. */
interface Conv {
  id: string;
  known: boolean; // last is meaningful
  last: bigint; // highest seq handed to the outbox
  delivered: bigint; // highest seq the app received (emitted)
  acked: bigint; // highest seq PushAcked on the current stream
  saved: bigint; // highest seq written to the store
  reack: boolean; // ack again even if last == acked
  target: bigint; // highest seq known to exist
  held: Map<bigint, Item>; // arrived early (after a gap)
  syncing: boolean; // a Sync is in flight
  again: boolean; // a Notify came while it was: sync once more after it
  syncFrom?: bigint; // the next Sync starts here instead of last (see onNotify)
  pulledAt: bigint; // latest_seq an "I have everything" Sync was made for
  syncFails: number; // Syncs refused UNAVAILABLE in a row, for the retry's backoff
}

interface Pending {
  frame: { to: Recipient; clientMsgId: string; content: Content };
  resolve: (s: Sent) => void;
  reject: (e: unknown) => void;
  tries: number;
}

/** FrameQueue is the request side of one Stream: frames written, read by the transport. */
class FrameQueue implements AsyncIterable<StreamRequest> {
  private items: StreamRequest[] = [];
  private wake: (() => void) | undefined;
  private done = false;
  push(f: StreamRequest): void {
    if (this.done) return;
    this.items.push(f);
    this.wake?.();
  }
  close(): void {
    this.done = true;
    this.wake?.();
  }
  async *[Symbol.asyncIterator](): AsyncIterator<StreamRequest> {
    for (;;) {
      const f = this.items.shift();
      if (f) {
        yield f;
        continue;
      }
      if (this.done) return;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = undefined;
    }
  }
}

/** One Stream RPC. */
interface Conn {
  id: number;
  abort: AbortController;
  frames: FrameQueue;
  responses: AsyncIterator<StreamResponse>;
  welcome: Welcome;
  lastRecv: number;
  heartbeat?: NodeJS.Timeout;
  since: number;
}

/** A StateStore in memory: survives reconnects and new Sessions of one process. */
export class MemoryStore implements StateStore {
  private m = new Map<string, bigint>();
  load(id: string) {
    return this.m.get(id);
  }
  save(id: string, seq: bigint) {
    this.m.set(id, seq);
  }
}

const isEventStream = (id: string) => id.startsWith("evt:");

/**
 * Session is one device's Stream. Create it with StarlingClient.connect();
 * listen to "message", "event", "receipt", "typing", "ack", "notify",
 * "disconnect", "closed".
 */
export class Session extends EventEmitter<SessionEvents> {
  private readonly store: StateStore;
  private readonly minBackoff: number;
  private readonly maxBackoff: number;
  private readonly welcomeTimeout: number;
  private readonly syncLimit: number;

  private cur: Conn | undefined;
  private connSeq = 0;
  private nextRef = 0n;
  private attempts = 0;
  private retry: NodeJS.Timeout | undefined;
  private timers = new Set<NodeJS.Timeout>(); // retries of refused frames, cleared on close
  private closedWith: unknown;
  private pending: Pending[] = [];
  private sendRefs = new Map<bigint, Pending>();
  private syncRefs = new Map<bigint, string>();
  private convs = new Map<string, Conv>();
  private dirty = new Set<string>();
  private flushQueued = false;
  private listing = false;
  private listAgain = false;
  private initConn = 0; // stream whose first ListConversations has not come back
  private paused = false;
  private outbox: Item[] = [];

  constructor(
    private readonly client: SessionClient,
    opts: SessionOptions,
  ) {
    super();
    this.store = opts.store ?? new MemoryStore();
    this.minBackoff = opts.minBackoffMs ?? 250;
    this.maxBackoff = opts.maxBackoffMs ?? 30_000;
    this.welcomeTimeout = opts.welcomeTimeoutMs ?? 15_000;
    this.syncLimit = opts.syncLimit ?? 0;
  }

  /** The current stream's Welcome (undefined while disconnected). */
  get welcome(): Welcome | undefined {
    return this.cur?.welcome;
  }

  /** Whether the session has ended. */
  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Opens the first stream; rejects if it cannot (no retry on the first one). */
  async start(): Promise<void> {
    const c = await this.dial(++this.connSeq);
    this.connected(c);
  }

  /**
   * Send a message. Resolves when the server stored it (SendAck), across
   * reconnects: an unanswered send goes again with the same client_msg_id
   * after each reconnect. Rejects on a refusal (FrameError) or close().
   */
  send(to: Recipient, content: string | Partial<Pick<Content, "type" | "text" | "data">>, clientMsgId: string = randomUUID()): Promise<Sent> {
    if (this.closed) return Promise.reject(this.closedWith);
    const c = create(ContentSchema, typeof content === "string" ? { text: content } : content);
    return new Promise<Sent>((resolve, reject) => {
      const p: Pending = { frame: { to, clientMsgId, content: c }, resolve, reject, tries: 0 };
      this.pending.push(p);
      this.writeSend(p);
    });
  }

  /**
   * Stop handing messages to the app (they queue and are not acknowledged,
   * so the server's push window fills and it switches to Notify) until
   * resume().
   */
  pause(): void {
    this.paused = true;
  }

  /** Hand over what queued while paused, and acknowledge it. */
  resume(): void {
    this.paused = false;
    this.drainOutbox();
  }

  /**
   * Log this device out: its token is revoked, the server answers with
   * Disconnect (LOGGED_OUT) and the session closes. Resolves once closed.
   */
  async logout(): Promise<void> {
    if (this.closed) return;
    const done = new Promise<void>((r) => this.once("closed", () => r()));
    if (this.write({ case: "logout", value: {} }) === 0n) {
      await this.client.auth.logout({});
      this.finish(new DisconnectError({ reason: DisconnectReason.LOGGED_OUT, message: "logged out while disconnected", reconnect: false }));
    }
    await done;
  }

  /**
   * Move the user's read cursor in a conversation to seq (every message up
   * to it is read, on all the user's devices; the sender of a one-to-one
   * conversation gets a Receipt). Over the stream, or with the unary call
   * while the session is reconnecting. Cursors never move back.
   */
  async markRead(conversationId: string, seq: bigint): Promise<void> {
    if (this.closed) throw this.closedWith;
    if (this.write({ case: "markRead", value: { conversationId, seq } }) === 0n) {
      await this.client.chat.markRead({ conversationId, seq });
    }
  }

  /**
   * Tell the conversation's other online members that the user is typing.
   * Call it every few seconds while the user types (the server relays one
   * a second per device, bursts of 3; more is refused). Best effort: while
   * reconnecting it does nothing, and returns false.
   */
  typing(conversationId: string): boolean {
    return this.write({ case: "typing", value: { conversationId } }) !== 0n;
  }

  /** Close the stream and end the session; pending sends reject with ClosedError. */
  close(): void {
    this.finish(new ClosedError());
  }

  // ---- the stream ----

  private async dial(id: number): Promise<Conn> {
    const abort = new AbortController();
    const frames = new FrameQueue();
    // The token travels in the metadata (the client's interceptor), so the
    // server speaks first: Welcome, then a Notify per conversation behind.
    const responses = this.client.chat.stream(frames, { signal: abort.signal })[Symbol.asyncIterator]();
    const timer = setTimeout(() => abort.abort(new Error(`no Welcome within ${this.welcomeTimeout} ms`)), this.welcomeTimeout);
    let first: IteratorResult<StreamResponse>;
    try {
      first = await responses.next();
    } catch (e) {
      frames.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    const fail = (e: unknown) => {
      frames.close();
      abort.abort();
      return e;
    };
    if (first.done) throw fail(new Error("server closed the stream before Welcome"));
    const f = first.value.frame;
    switch (f.case) {
      case "welcome":
        return { id, abort, frames, responses, welcome: f.value, lastRecv: Date.now(), since: Date.now() };
      case "error":
        throw fail(frameError(f.value));
      case "disconnect":
        throw fail(f.value.reconnect ? new Error(`server closed the stream: ${f.value.message}`) : new DisconnectError(info(f.value)));
      default:
        throw fail(new Error(`server sent ${f.case} before Welcome`));
    }
  }

  private connected(c: Conn): void {
    if (this.closed) {
      c.frames.close();
      c.abort.abort();
      return;
    }
    this.cur = c;
    const ms = durationMs(c.welcome) || 30_000;
    c.heartbeat = setInterval(() => this.heartbeat(c, ms), ms);
    this.emit("welcome", c.welcome);
    void this.receive(c);
    // Unanswered sends go again, same client_msg_id, in their first order.
    for (const p of this.pending) this.writeSend(p);
    // Acks lost with the old stream show up as a server cursor behind ours
    // in the list below or a Notify, and go again (serverCursor).
    // The list says where unknown conversations start; pushes for them
    // wait until it is back (see accept).
    this.initConn = c.id;
    this.startList();
  }

  private async receive(c: Conn): Promise<void> {
    let err: unknown = new Error("server ended the stream");
    try {
      for (;;) {
        const r = await c.responses.next();
        if (r.done) break;
        if (c !== this.cur) return;
        c.lastRecv = Date.now();
        this.onFrame(r.value);
        if (c !== this.cur) return; // the frame ended the stream
      }
    } catch (e) {
      err = e;
    }
    if (c === this.cur) this.streamEnded(err);
  }

  private heartbeat(c: Conn, interval: number): void {
    if (c !== this.cur) return;
    // The server closes a stream silent for three intervals; the client
    // gives up on one just as fast rather than wait for TCP to notice.
    if (Date.now() - c.lastRecv > 3 * interval) {
      this.streamEnded(new Error("no frame from server for 3 heartbeat intervals"));
      return;
    }
    this.write({ case: "ping", value: {} });
  }

  /** Writes a frame with a fresh ref; returns the ref, or 0n without a stream. */
  private write(frame: MessageInitShape<typeof StreamRequestSchema>["frame"]): bigint {
    const c = this.cur;
    if (!c) return 0n;
    const ref = ++this.nextRef;
    c.frames.push(create(StreamRequestSchema, { ref, frame }));
    return ref;
  }

  private writeSend(p: Pending): void {
    const { to, clientMsgId, content } = p.frame;
    const ref = this.write({
      case: "send",
      value: { to: "userId" in to ? { case: "userId", value: to.userId } : { case: "groupId", value: to.groupId }, clientMsgId, content },
    });
    if (ref !== 0n) this.sendRefs.set(ref, p);
  }

  /** The stream ended: close the session on what no reconnect cures, else reconnect after a backoff. */
  private streamEnded(err: unknown): void {
    const c = this.cur;
    if (!c || this.closed) return;
    this.dropConn();
    if (isFatal(err)) {
      this.finish(err);
      return;
    }
    if (Date.now() - c.since >= this.maxBackoff) this.attempts = 0; // it lived: start the backoff over
    this.scheduleRetry(err, isSlow(err));
  }

  private dropConn(): void {
    const c = this.cur;
    if (!c) return;
    this.cur = undefined;
    clearInterval(c.heartbeat);
    c.frames.close();
    c.abort.abort();
    this.sendRefs.clear();
    this.syncRefs.clear();
    for (const cs of this.convs.values()) cs.syncing = cs.again = false;
  }

  private scheduleRetry(err: unknown, slow: boolean): void {
    const delay = backoff(this.minBackoff, this.maxBackoff, slow ? 64 : this.attempts);
    this.attempts++;
    this.emit("reconnecting", { attempt: this.attempts, delayMs: delay, error: err });
    this.retry = setTimeout(() => {
      this.retry = undefined;
      const id = ++this.connSeq;
      this.dial(id).then(
        (c) => this.connected(c),
        (e) => {
          if (this.closed) return;
          if (isFatal(e)) this.finish(e);
          else this.scheduleRetry(e, isSlow(e));
        },
      );
    }, delay);
  }

  /** Runs f after ms unless the session ends first (so a closed session leaves no timer behind). */
  private later(f: () => void, ms: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      f();
    }, ms);
    this.timers.add(t);
  }

  private finish(err: unknown): void {
    if (this.closed) return;
    this.closedWith = err;
    this.flushAcks(); // saves what the app received
    this.dropConn();
    clearTimeout(this.retry);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const p of this.pending) p.reject(err);
    this.pending = [];
    this.emit("closed", err);
  }

  // ---- frames ----

  private onFrame(f: StreamResponse): void {
    const fr = f.frame;
    switch (fr.case) {
      case "pong":
        break; // lastRecv is all a Pong is for
      case "sendAck":
        this.onSendAck(f.ref, fr.value);
        break;
      case "push":
        for (const m of fr.value.messages) this.accept(messageItem(m), false);
        break;
      case "event":
        if (fr.value.seq === 0n) this.emit("event", fr.value); // ephemeral: no order, no ack
        else this.accept(eventItem(fr.value), false);
        break;
      case "notify":
        this.emit("notify", fr.value);
        this.onNotify(fr.value);
        break;
      case "syncBatch":
        this.onSyncBatch(f.ref, fr.value);
        break;
      case "error":
        this.onError(f.ref, fr.value);
        break;
      case "receipt":
        this.emit("receipt", fr.value);
        break;
      case "typing":
        this.emit("typing", fr.value);
        break;
      case "disconnect": {
        const d = info(fr.value);
        this.emit("disconnect", d);
        this.streamEnded(d.reconnect ? new Error(`server closed the stream (${DisconnectReason[d.reason]}): ${d.message}`) : new DisconnectError(d));
        break;
      }
      default:
        break; // a frame newer than this client: ignore
    }
    this.queueFlush();
  }

  private onSendAck(ref: bigint, ack: SendAck): void {
    const p = this.sendRefs.get(ref);
    if (!p) return;
    this.sendRefs.delete(ref);
    this.pending = this.pending.filter((q) => q !== p);
    const sent = { ack, clientMsgId: p.frame.clientMsgId };
    p.resolve(sent);
    this.emit("ack", sent);
    // The server never pushes a message back to the device that sent it;
    // it still belongs in the conversation, right where its seq says.
    const w = this.cur?.welcome;
    this.accept(
      messageItem(
        create(MessageSchema, {
          msgId: ack.msgId,
          conversationId: ack.conversationId,
          seq: ack.seq,
          senderId: w?.userId ?? "",
          senderDeviceId: w?.deviceId ?? "",
          clientMsgId: p.frame.clientMsgId,
          content: p.frame.content,
          serverTime: ack.serverTime,
        }),
      ),
      false,
    );
  }

  private onError(ref: bigint, e: ErrorFrame): void {
    const err = frameError(e);
    const p = this.sendRefs.get(ref);
    const syncConv = this.syncRefs.get(ref);
    if (p) {
      this.sendRefs.delete(ref);
      if (e.code === Code.Unavailable) {
        // Stored or not, the server cannot say now: the same client_msg_id
        // again is safe (a stored one comes back duplicate: true).
        p.tries++;
        this.later(() => {
          if (this.pending.includes(p) && ![...this.sendRefs.values()].includes(p)) this.writeSend(p);
        }, backoff(this.minBackoff, this.maxBackoff, p.tries - 1));
      } else {
        this.pending = this.pending.filter((q) => q !== p);
        p.reject(err);
      }
    } else if (syncConv !== undefined) {
      // A refused Sync leaves the conversation in pull mode: UNAVAILABLE
      // is tried again after a pause; otherwise the next Notify, gap or
      // reconnect tries again.
      this.syncRefs.delete(ref);
      const cs = this.convs.get(syncConv);
      if (cs) {
        cs.syncing = false;
        if (e.code === Code.Unavailable) {
          // The backoff grows with each refusal in a row (the database
          // may be down a while); a newer stream restarts the pull itself.
          const conn = this.cur;
          cs.syncFails++;
          this.later(() => conn === this.cur && this.startSync(cs), backoff(this.minBackoff, this.maxBackoff, cs.syncFails - 1));
        }
      }
    }
    // ref 0: the answer to a frame without a ref (PushAck); nothing waits for it.
    if (e.fatal) this.streamEnded(err);
  }

  // ---- ordering ----

  private conv(id: string): Conv {
    let cs = this.convs.get(id);
    if (cs) return cs;
    cs = { id, known: false, last: 0n, delivered: 0n, acked: 0n, saved: 0n, reack: false, target: 0n, held: new Map(), syncing: false, again: false, pulledAt: -1n, syncFails: 0 };
    this.convs.set(id, cs);
    const last = this.store.load(id);
    if (last !== undefined) this.startAt(cs, last);
    return cs;
  }

  private startAt(cs: Conv, last: bigint): void {
    cs.known = true;
    cs.last = cs.delivered = cs.saved = cs.acked = last;
  }

  private accept(it: Item, fromSync: boolean): void {
    const cs = this.conv(it.conversationId);
    if (!cs.known) {
      if (this.initConn !== 0) {
        // Right after (re)connect a push can overtake the Notify or list
        // entry that says where this conversation starts: wait for it.
        cs.held.set(it.seq, it);
        return;
      }
      // A conversation that appeared while connected: it starts here.
      this.startAt(cs, it.seq - 1n);
    }
    if (it.seq <= cs.last) {
      // A duplicate (a resent push, or one also in a sync): drop it but
      // ack again, so the server's window moves.
      cs.reack = true;
      this.markDirty(cs.id);
    } else if (it.seq === cs.last + 1n || fromSync) {
      // A SyncBatch holds every visible item after after_seq <= last, so a
      // jump inside one is not a gap (seqs before a group join are skipped).
      this.deliver(cs, it);
      this.drainHeld(cs);
    } else {
      cs.held.set(it.seq, it);
      if (it.seq > cs.target) cs.target = it.seq;
      this.startSync(cs);
      this.startList(); // a lost push rarely comes alone
    }
  }

  private deliver(cs: Conv, it: Item): void {
    cs.last = it.seq;
    cs.held.delete(it.seq);
    this.outbox.push(it);
    this.drainOutbox();
  }

  private drainOutbox(): void {
    while (!this.paused && this.outbox.length > 0) {
      const it = this.outbox.shift()!;
      // Counted as delivered (and acked) once handed over.
      const cs = this.conv(it.conversationId);
      if (it.seq > cs.saved) this.markDirty(cs.id);
      cs.delivered = it.seq;
      if (it.kind === "message") this.emit("message", it.message);
      else this.emit("event", it.event);
    }
    this.queueFlush();
  }

  private drainHeld(cs: Conv): void {
    for (const seq of cs.held.keys()) if (seq <= cs.last) cs.held.delete(seq);
    for (let it = cs.held.get(cs.last + 1n); it; it = cs.held.get(cs.last + 1n)) this.deliver(cs, it);
  }

  private settle(cs: Conv): void {
    this.drainHeld(cs);
    for (const seq of cs.held.keys()) if (seq > cs.target) cs.target = seq;
    if (cs.last < cs.target) this.startSync(cs);
  }

  private startSync(cs: Conv): void {
    if (cs.syncing || !cs.known || !this.cur) return; // a reconnect restarts it
    let after = cs.last;
    if (cs.syncFrom !== undefined) {
      if (cs.syncFrom < after) after = cs.syncFrom;
      cs.syncFrom = undefined;
    }
    const ref = this.write({ case: "sync", value: { conversationId: cs.id, afterSeq: after, limit: this.syncLimit } });
    cs.syncing = true;
    this.syncRefs.set(ref, cs.id);
  }

  private onSyncBatch(ref: bigint, b: SyncBatch): void {
    const id = this.syncRefs.get(ref);
    if (id === undefined) return; // not ours on this stream
    this.syncRefs.delete(ref);
    this.emit("sync", b);
    const cs = this.convs.get(id)!;
    cs.syncing = false;
    cs.syncFails = 0;
    if (b.latestSeq > cs.target) cs.target = b.latestSeq;
    for (const m of b.messages) if (m.conversationId === id) this.accept(messageItem(m), true);
    for (const e of b.events) if (e.conversationId === id && e.seq > 0n) this.accept(eventItem(e), true);
    this.drainHeld(cs);
    // An empty batch makes no progress: stop rather than spin; the next
    // Notify or list tries again.
    const again = cs.again;
    cs.again = false;
    if (again || (b.messages.length + b.events.length > 0 && (b.hasMore || cs.last < cs.target))) this.startSync(cs);
  }

  private onNotify(n: Notify): void {
    const cs = this.conv(n.conversationId);
    if (!cs.known) this.startAt(cs, n.deliveredSeq); // nothing local: start at the server's cursor
    this.serverCursor(cs, n.deliveredSeq);
    if (n.latestSeq > cs.target) cs.target = n.latestSeq;
    if (cs.last >= n.latestSeq && !cs.syncing && cs.pulledAt !== n.latestSeq) {
      // We hold everything, but the server pushes nothing more of this
      // conversation until this stream has synced to its end: one Sync
      // after our last seq comes back empty and resumes pushes. Once per
      // latest_seq, so it cannot loop.
      cs.syncFrom = cs.last;
      cs.pulledAt = n.latestSeq;
      this.startSync(cs);
    } else if (cs.syncing) {
      // A Notify while a Sync is in flight: that Sync may have been
      // answered from before the Notify (even empty); another one follows.
      cs.again = true;
    }
    this.settle(cs);
  }

  /** The server's cursor for this device is behind what the app received: ack again. */
  private serverCursor(cs: Conv, delivered: bigint): void {
    if (delivered < cs.delivered) {
      cs.acked = delivered < cs.acked ? delivered : cs.acked;
      cs.reack = true;
      this.markDirty(cs.id);
    }
  }

  private startList(): void {
    if (!this.cur) return; // connected() lists anyway
    if (this.listing) {
      this.listAgain = true;
      return;
    }
    this.listing = true;
    const connId = this.cur.id;
    this.client.listConversations({ statesOnly: true }).then(
      (convs) => this.onList(connId, convs),
      () => this.onList(connId, undefined),
    );
  }

  private onList(connId: number, convs: ConversationState[] | undefined): void {
    this.listing = false;
    if (this.closed) return;
    for (const st of convs ?? []) {
      const cs = this.conv(st.conversationId);
      if (!cs.known) this.startAt(cs, st.deliveredSeq);
      this.serverCursor(cs, st.deliveredSeq);
      if (st.latestSeq > cs.target) cs.target = st.latestSeq;
      this.settle(cs);
    }
    if (this.initConn !== 0 && this.cur && connId === this.initConn && convs) {
      // The first list after connecting is back: conversations still
      // unknown are newer than it and start at their first item.
      this.initConn = 0;
      for (const cs of this.convs.values()) {
        if (!cs.known && cs.held.size > 0) {
          this.startAt(cs, [...cs.held.keys()].reduce((a, b) => (a < b ? a : b)) - 1n);
          this.settle(cs);
        }
      }
    } else if (this.initConn !== 0) {
      this.listAgain = true; // this list predates the stream, or failed: ask again
    }
    if (this.listAgain) {
      this.listAgain = false;
      this.startList();
    }
    this.queueFlush();
  }

  // ---- acks ----

  private markDirty(id: string): void {
    this.dirty.add(id);
    this.queueFlush();
  }

  /** Acks wait for the end of the current burst, so many items cost one PushAck per conversation. */
  private queueFlush(): void {
    if (this.flushQueued || this.dirty.size === 0) return;
    this.flushQueued = true;
    setImmediate(() => {
      this.flushQueued = false;
      this.flushAcks();
    });
  }

  private flushAcks(): void {
    for (const id of this.dirty) {
      const cs = this.convs.get(id)!;
      const delivered = cs.delivered;
      if (delivered > cs.saved) {
        // Saved before acking: if the process dies in between, the server
        // resends and the store drops the duplicate, never the reverse.
        this.store.save(id, delivered);
        cs.saved = delivered;
      }
      if (!this.cur) continue; // acked after reconnect
      if (delivered > 0n && (delivered > cs.acked || cs.reack)) {
        this.write({ case: "pushAck", value: { conversationId: id, seq: delivered } });
        cs.acked = delivered;
      }
      cs.reack = false;
      this.dirty.delete(id);
    }
  }
}

function info(d: Disconnect): DisconnectInfo {
  return { reason: d.reason, message: d.message, reconnect: d.reconnect };
}

function frameError(e: ErrorFrame): FrameError {
  return new FrameError(e.code as Code, e.message, e.fatal);
}

function durationMs(w: Welcome): number {
  const d = w.heartbeatInterval;
  return d ? Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6) : 0;
}

/** Errors no reconnect cures: the token is refused, or the server said not to come back. */
function isFatal(e: unknown): boolean {
  if (e instanceof DisconnectError || e instanceof ClosedError) return true;
  if (e instanceof FrameError) return e.code === Code.Unauthenticated;
  return e instanceof ConnectError && (e.code === Code.Unauthenticated || e.code === Code.PermissionDenied);
}

/** Errors worth the longest backoff: the server is overloaded or refuses for a while. */
function isSlow(e: unknown): boolean {
  const code = e instanceof ConnectError || e instanceof FrameError ? e.code : undefined;
  return code === Code.ResourceExhausted;
}

/** lo·2ⁿ capped at hi, then "equal jitter" so many clients cut off at once do not return at once. */
export function backoff(lo: number, hi: number, n: number): number {
  const d = Math.min(hi, lo * 2 ** Math.min(n, 30));
  return d / 2 + Math.random() * (d / 2);
}

export { isEventStream };
