// A Node program on the TypeScript client: log in, say hi to a peer, print
// every message (one JSON line each) until `count` have arrived, log out.
//
//   node dist/examples/chat.js http://127.0.0.1:7070 alice 'correct horse battery' bob 3
//
// README ("From other languages") shows its first ten lines.

import { StarlingClient } from "@starling-im/client";

const [baseUrl, username, password, peer, count = "1"] = process.argv.slice(2);
const c = new StarlingClient({ baseUrl });
await c.login(username, password, "node-example");
const s = await c.connect(); // Welcome; reconnects with backoff from here on
let seen = 0;
const done = new Promise<void>((resolve) =>
  s.on("message", (m) => {
    console.log(JSON.stringify({ conversation: m.conversationId, seq: Number(m.seq), from: m.senderId, text: m.content?.text }));
    if (++seen >= Number(count)) resolve();
  }),
);
const bob = await c.userByName(peer);
const { ack } = await s.send({ userId: bob.userId }, `hi ${peer}, from Node`); // stored once: ack.seq
console.error(`sent as seq ${ack.seq}`);
await done;
await s.logout();
c.close();
