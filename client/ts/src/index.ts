// @starling-im/client: Starling's delivery protocol for Node.js.
export { StarlingClient, type ClientOptions } from "./client.js";
export {
  Session,
  FrameError,
  DisconnectError,
  ClosedError,
  MemoryStore,
  backoff,
  type SessionOptions,
  type SessionEvents,
  type StateStore,
  type Sent,
  type Recipient,
  type DisconnectInfo,
} from "./session.js";
export * from "../gen/starling/v1/chat_pb.js";
export * from "../gen/starling/v1/types_pb.js";
export * from "../gen/starling/v1/event_pb.js";
export * from "../gen/starling/v1/friend_pb.js";
