// StarlingClient: the unary calls (register, login, users, groups, history,
// the conversation list) on one HTTP/2 connection, and connect(), which
// opens a Session (the Stream). See docs/protocol.md for the protocol.

import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

import { AuthService, type LoginResponse } from "../gen/starling/v1/auth_pb.js";
import { ChatService, type GetHistoryResponse } from "../gen/starling/v1/chat_pb.js";
import { FriendService } from "../gen/starling/v1/friend_pb.js";
import { GroupService, type Group } from "../gen/starling/v1/group_pb.js";
import type { ConversationState, User } from "../gen/starling/v1/types_pb.js";
import { UserService } from "../gen/starling/v1/user_pb.js";
import { Session, type SessionOptions } from "./session.js";

export interface ClientOptions {
  /** The server, e.g. "http://127.0.0.1:7070" (plaintext) or "https://chat.example.com". */
  baseUrl: string;
  /** A token from an earlier login; login() sets it too. */
  token?: string;
  /** Deadline of each unary call in ms (default 30 000). */
  timeoutMs?: number;
  /** Connect interceptors run on every call, Stream included (logging, metrics, tests' taps). */
  interceptors?: Interceptor[];
}

/**
 * StarlingClient holds the token and one HTTP/2 connection to the server
 * (reopened by itself when it breaks). The raw generated clients are
 * exposed as auth, users, groups, chat and friends for calls this wrapper does not
 * cover.
 */
export class StarlingClient {
  readonly auth: Client<typeof AuthService>;
  readonly users: Client<typeof UserService>;
  readonly groups: Client<typeof GroupService>;
  readonly chat: Client<typeof ChatService>;
  readonly friends: Client<typeof FriendService>;
  /** The token sent as "authorization: Bearer …" on every call, Stream included. */
  token: string | undefined;
  /** The logged-in user, after login(). */
  userId: string | undefined;
  /** The device the token is for, after login(). */
  deviceId: string | undefined;

  private readonly h2: Http2SessionManager;
  private readonly timeoutMs: number;
  private readonly sessions = new Set<Session>();

  constructor(opts: ClientOptions) {
    this.token = opts.token;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.h2 = new Http2SessionManager(opts.baseUrl);
    const bearer: Interceptor = (next) => (req) => {
      if (this.token) req.header.set("authorization", `Bearer ${this.token}`);
      return next(req);
    };
    const transport = createGrpcTransport({
      baseUrl: opts.baseUrl,
      interceptors: [bearer, ...(opts.interceptors ?? [])],
      sessionManager: this.h2,
    });
    this.auth = createClient(AuthService, transport);
    this.users = createClient(UserService, transport);
    this.groups = createClient(GroupService, transport);
    this.chat = createClient(ChatService, transport);
    this.friends = createClient(FriendService, transport);
  }

  private get callOpts() {
    return { timeoutMs: this.timeoutMs };
  }

  /** Register a user (no token needed). */
  async register(username: string, password: string, displayName = ""): Promise<User> {
    const r = await this.auth.register({ username, password, displayName }, this.callOpts);
    return r.user!;
  }

  /** Log in one device; the token is kept for every later call. */
  async login(username: string, password: string, deviceId: string): Promise<LoginResponse> {
    const r = await this.auth.login({ username, password, deviceId }, this.callOpts);
    this.token = r.token;
    this.userId = r.user?.userId;
    this.deviceId = r.deviceId;
    return r;
  }

  /** Look a user up by username. */
  async userByName(username: string): Promise<User> {
    const r = await this.users.getUser({ key: { case: "username", value: username } }, this.callOpts);
    return r.user!;
  }

  /** Create a group with the caller and members in it. */
  async createGroup(name: string, memberIds: string[]): Promise<Group> {
    const r = await this.groups.createGroup({ name, memberIds }, this.callOpts);
    return r.group!;
  }

  /**
   * Add members to a group. A call cut short by its deadline may still
   * have committed: confirm with groups.getGroup before trying again (a
   * second AddMembers of a member already in is harmless).
   */
  async addMembers(groupId: string, userIds: string[]): Promise<string[]> {
    const r = await this.groups.addMembers({ groupId, userIds }, this.callOpts);
    return r.addedUserIds;
  }

  /**
   * The caller's conversations, newest activity first, with this device's
   * cursors; statesOnly: only the delivery fields, of every conversation
   * (what a resync compares). Unpaged; use chat.listConversations to page.
   */
  async listConversations(opts: { statesOnly?: boolean } = {}): Promise<ConversationState[]> {
    const r = await this.chat.listConversations({ statesOnly: opts.statesOnly ?? false }, this.callOpts);
    return r.conversations;
  }

  /** One page of history, newest page first (beforeSeq 0: from the newest). */
  async history(conversationId: string, beforeSeq = 0n, limit = 0): Promise<GetHistoryResponse> {
    return this.chat.getHistory({ conversationId, beforeSeq, limit }, this.callOpts);
  }

  /** Open this device's Stream; resolves on the first Welcome. */
  async connect(opts: SessionOptions = {}): Promise<Session> {
    const s = new Session(this, opts);
    this.sessions.add(s);
    s.once("closed", () => this.sessions.delete(s));
    await s.start();
    return s;
  }

  /** Close every session and the connection. */
  close(): void {
    for (const s of this.sessions) s.close();
    this.h2.abort();
  }
}
