// Package client is the Go client of Starling: what an app or a backend
// embeds to talk to a Starling server, and what Starling's own tests, CLI
// and load generator use.
//
// # Shape
//
// A Client is one gRPC connection (Dial). It wraps the unary calls
// (Register, Login, Logout, GetUser, CreateGroup, AddMembers, LeaveGroup,
// GetGroup, GetHistory, ListConversations, Inbox, MarkRead, Mute, Unmute,
// ReadBy) and hands out the generated
// service clients for anything else; every call carries the client's token
// as "authorization: Bearer <token>" metadata. Login stores the token it
// gets; SetToken or WithToken set one kept from an earlier run.
//
// A Session (Client.Open) is the real-time stream of one device, the device
// the token names. It sends messages (Send) and delivers every incoming
// message on a channel (Messages). It pings the server every
// Welcome.heartbeat_interval, and when the stream or connection breaks it
// reconnects by itself with exponential backoff and jitter (100 ms to 10 s by
// default) until Close, the Open context ending, the server ending it, or
// an error that no reconnect can cure (see "Errors").
//
// Friends, blocks and presence are Client calls too (SendFriendRequest,
// AcceptFriendRequest, DeclineFriendRequest, CancelFriendRequest,
// RemoveFriend, BlockUser, UnblockUser, ListFriends, ListFriendRequests,
// ListBlockedUsers, GetPresence). A Session opened WithEvents delivers the
// user's events on Events: the user's event stream ("evt:<user id>") is
// handled as one more conversation, with the guarantees below, and friends'
// presence changes come on the same channel (Seq 0, not stored). Events
// and messages leave the session through one queue: read both channels.
//
// # TLS
//
// Dial is plaintext unless WithTLS is given (fine on loopback, not across a
// network). WithTLS(nil) trusts the system's CAs and checks the target's
// host name. For a server whose certificate comes from a private CA (or is
// self-signed), or is for a name other than the dial target's host,
// TLSConfig builds the configuration from a CA file and a server name:
//
//	cfg, err := client.TLSConfig("/etc/starling/ca.pem", "chat.internal")
//	c, err := client.Dial("10.0.0.5:7070", client.WithTLS(cfg))
//
// The starling CLI's --ca-file and --server-name are these two.
// A session can show that it is connected with WithConnected, called once
// the stream is welcomed and after every reconnect.
//
// # Delivery guarantees
//
// Within one Session, Messages yields every message of every conversation
// of the user, exactly once and, per conversation, in seq order with
// nothing missing in between (across conversations, arrival order). It
// includes messages this device sent itself, each right after its
// SendAck, so the channel alone is the whole conversation. How:
//
//   - Per conversation the session keeps last, the highest seq handed to
//     the app. A message with seq <= last is a duplicate and is dropped;
//     seq == last+1 is delivered (then any held messages that follow on);
//     seq > last+1 is a gap: the message is held and the session Syncs from
//     last, then runs the safety-net resync below, since a lost push rarely
//     comes alone.
//   - The server sends a Notify for every conversation this device is
//     behind on right after Welcome, and whenever the device falls behind;
//     the session Syncs in batches until it has caught up. A conversation
//     the session has no state for starts where the server's cursor for
//     this device is (Notify.delivered_seq, ListConversations), or, for one
//     that appears while connected, just before its first message.
//   - After every (re)connect, and every 5 minutes (WithResyncInterval), the
//     session lists the conversations and Syncs any whose latest seq is past
//     its own last: the safety net for a push lost between nodes.
//   - A message counts as delivered when the app receives it from Messages.
//     Only then is last saved in the StateStore and acknowledged to the
//     server (PushAck, cumulative, one per conversation for a burst). If the
//     process dies between receiving and saving, the next run delivers that
//     message again: give the Session a persistent StateStore to resume
//     across runs (at-least-once across crashes, exactly once otherwise).
//     Messages still waiting in the session when it ends are not acked and
//     come again next time.
//   - Send gives each message a UUID client_msg_id. If the stream breaks
//     before the SendAck, the session resends the same client_msg_id after
//     reconnecting, until Send's context ends; the server stores it once and
//     answers a resend with the first ack (SendAck.duplicate is then true).
//     A Send whose context ended may still have been stored: it shows up on
//     Messages like any other message.
//
// A slow reader of Messages never stalls the session (heartbeats, acks and
// Send go on); the session stops pulling once about 2000 messages wait for
// the app, and the server switches it to Notify mode meanwhile.
//
// # Errors
//
// Unary wrappers return the server's gRPC status wrapped with what was
// being done; status.Code(err) and status.Convert(err) work on them:
// InvalidArgument (bad input), NotFound (no such user or group),
// AlreadyExists (username taken), PermissionDenied (not a member),
// ResourceExhausted (a limit), Unauthenticated (no or bad token),
// Unavailable (server unreachable).
//
// Client.Open returns the first attempt's error: one that matches
// ErrUnauthenticated (errors.Is) when the token is refused (its status.Code
// is codes.Unauthenticated and its message the server's), a codes.Unavailable
// status when the server cannot be reached, or ErrClosed on a closed Client.
//
// Session.Send returns the server's refusal of the message as a status
// error (InvalidArgument: bad content or too big; NotFound: no such user or
// group; PermissionDenied: not a member or blocked; AlreadyExists: a
// SendWithID id already used for a different message; ResourceExhausted:
// rate or in-flight limit, or a Send frame over the server's frame limit,
// see below), its context's error, or the session's Err once it has ended
// (every Send still waiting then returns it). A refused Send leaves the
// session usable. Unavailable is never returned: it means the server could
// not store the message now or cannot tell whether its commit went
// through, so the session resends the same client_msg_id with backoff
// until it is answered or Send's context ends.
//
// Session.Err says why a session ended (nil while it runs); Messages is
// closed and Done is closed then, and every Send waiting for its SendAck
// returns the same error:
//
//   - ErrClosed: Session.Close or Client.Close.
//   - the Open context's error (context.Canceled, context.DeadlineExceeded).
//   - a *DisconnectError (also ErrDisconnected): the server ended the stream
//     for good; errors.Is(err, ErrLoggedOut) after a logout of this device
//     (Session.Logout, or Client.Logout with the same token from anywhere),
//     errors.Is(err, ErrReplaced) when another stream of the same device
//     took over.
//   - an error matching ErrUnauthenticated: the token stopped working
//     (expired or revoked) and a reconnect was refused.
//   - an error matching ErrFrameTooLarge (status.Code ResourceExhausted):
//     the server sent a frame larger than the client's receive limit, 4 MiB
//     unless WithMaxRecvBytes says otherwise. After a reconnect it would
//     send the same frame (the same backlog), so retrying would spin.
//   - a status error with code PermissionDenied (the server refuses this
//     device a stream) or Unimplemented (the target is not a Starling
//     server).
//
// # Which stream errors are retried
//
// When a stream breaks or a reconnect fails, the session sorts the error
// by its gRPC status code, or by the Disconnect or fatal Error frame the
// server sent:
//
//   - Reconnect with the usual backoff: Unavailable (server down,
//     restarting or draining; connection refused or lost), Canceled,
//     DeadlineExceeded, Aborted, a Disconnect with reconnect=true (slow,
//     idle, shutdown), the stream closed without a status, no Welcome
//     within WithWelcomeTimeout, no frame for three heartbeat intervals,
//     and ResourceExhausted other than the frame-size case (the server cut
//     the device as slow, or the user has too many devices online).
//   - Reconnect, but only ever after the longest backoff (WithBackoff's
//     max, 10 s by default), logged at error level: Internal, Unknown,
//     DataLoss, and the codes the server never ends a stream with
//     (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition,
//     OutOfRange). They mean a bug, in the server (which answers Internal
//     only for bugs) or here, or trouble in between: gRPC reports an HTTP/2
//     stream reset, as a proxy sends when it restarts, as Internal too. A
//     server deploy may cure a bug, so the session keeps trying, slowly.
//   - End the session: Unauthenticated, PermissionDenied, Unimplemented, a
//     Disconnect with reconnect=false, and ResourceExhausted "received
//     message larger than max" for a frame from the server (ErrFrameTooLarge),
//     as listed above.
//
// gRPC words "received message larger than max (N vs. LIMIT)" the same
// whichever side refused the message. The server can only have refused a
// frame of this client if one was over LIMIT, and the only frames that can
// be are Sends, which stay pending until answered; so if a pending Send is
// over LIMIT, the server refused it: those Sends fail with
// ResourceExhausted, and the session reconnects without them. Otherwise
// the refusal was this client's, and the session ends.
//
// Any other failure (server restart, network loss, idle or slow
// disconnects) is not an error the app sees: the session reconnects and
// resyncs.
//
// # Goroutines
//
// Every goroutine a Session starts stops before Close returns (or Done is
// closed). Client.Close closes the Client's open Sessions first.
package client
