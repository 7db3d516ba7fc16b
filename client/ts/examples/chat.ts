// A Node program on the TypeScript client: log in, say hi to a peer, print
// every message of this device (one JSON line each, its own included) until
// `count` have arrived, then log out.
//
//   node dist/examples/chat.js http://127.0.0.1:7070 alice 'correct horse battery' bob 3
//
// README ("From other languages") shows this program from its import on;
// a test checks the two agree and runs it against starlingd and the Go CLI.

import { StarlingClient } from "@starling-im/client";

const [baseUrl, username, password, peer, count = "1"] = process.argv.slice(2);
const c = new StarlingClient({ baseUrl });
await c.login(username, password, "node-example");
const s = await c.connect(); // Welcome; from here on it reconnects, resends, delivers each message once
let seen = 0;
s.on("message", (m) => {
  console.log(JSON.stringify({ conversation: m.conversationId, seq: Number(m.seq), from: m.senderId, text: m.content?.text }));
  if (++seen === Number(count)) void s.logout().then(() => c.close());
});
const to = await c.userByName(peer);
await s.send({ userId: to.userId }, `hi ${peer}, from Node`); // resolves once stored (SendAck)
