package server_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/admin"
	"github.com/starling-im/starling/server/chat"
	"github.com/starling-im/starling/server/servertest"
)

// The API keys of the admin tests: a full one and a narrow one.
const (
	fullKey   = "sk_test_full_0123456789abcdef0123456789abcdef"
	tokensKey = "sk_test_tokens_0123456789abcdef0123456789abcd"
)

func withKey(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, admin.KeyHeader, key)
}

type adminEnv struct {
	srv  *servertest.Server
	keys *admin.Keys
	api  starlingv1.AdminServiceClient
	ctx  context.Context // carries fullKey
}

func startAdmin(t *testing.T, b servertest.Backend) adminEnv { return startAdminB(t, b) }

func startAdminB(t testing.TB, b servertest.Backend) adminEnv {
	t.Helper()
	keys, err := admin.NewKeys(
		admin.Key{Name: "full", SHA256: admin.Hash(fullKey), Scopes: []string{"*"}},
		admin.Key{Name: "tokens-only", SHA256: admin.Hash(tokensKey), Scopes: []string{admin.ScopeTokens}},
	)
	if err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, servertest.WithStore(b.New(t)), servertest.WithConfig(func(c *server.Config) { c.AdminKeys = keys }))
	return adminEnv{srv: srv, keys: keys, api: starlingv1.NewAdminServiceClient(srv.Dial(t)), ctx: withKey(context.Background(), fullKey)}
}

func TestAdmin(t *testing.T) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			for name, run := range map[string]func(*testing.T, adminEnv){
				"credentials":       testAdminCredentials,
				"users and tokens":  testAdminUsersTokens,
				"revoke":            testAdminRevoke,
				"send":              testAdminSend,
				"groups and notice": testAdminGroupsBroadcast,
				"push tokens":       testPushTokens,
				"set members":       testAdminSetMembers,
			} {
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					run(t, startAdmin(t, b))
				})
			}
		})
	}
}

// wantCode: friends_test.go.

func testAdminCredentials(t *testing.T, e adminEnv) {
	req := &starlingv1.AdminServiceGetPresenceRequest{UserIds: []string{"nobody"}}
	_, err := e.api.GetPresence(t.Context(), req)
	wantCode(t, err, codes.Unauthenticated, "no key")
	_, err = e.api.GetPresence(withKey(t.Context(), "sk_wrong"), req)
	wantCode(t, err, codes.Unauthenticated, "wrong key")
	// A user token never opens AdminService.
	u := e.srv.NewUser(t, "alice")
	tok := e.srv.Login(t, u, "phone")
	_, err = e.api.GetPresence(servertest.WithToken(t.Context(), tok), req)
	wantCode(t, err, codes.Unauthenticated, "user token on AdminService")
	// An API key never opens a user service, as metadata or as a bearer.
	chat := starlingv1.NewChatServiceClient(e.srv.Dial(t))
	_, err = chat.ListConversations(withKey(t.Context(), fullKey), &starlingv1.ListConversationsRequest{})
	wantCode(t, err, codes.Unauthenticated, "API key on a user service")
	_, err = chat.ListConversations(servertest.WithToken(t.Context(), fullKey), &starlingv1.ListConversationsRequest{})
	wantCode(t, err, codes.Unauthenticated, "API key as a bearer token")
	if _, err := e.srv.OpenRawStream(t, servertest.WithToken(t.Context(), fullKey)).End(t); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("API key on the Stream: %v", err)
	}
	// Scopes.
	_, err = e.api.GetPresence(withKey(t.Context(), tokensKey), req)
	wantCode(t, err, codes.PermissionDenied, "presence with a tokens-only key")
	_, err = e.api.IssueToken(withKey(t.Context(), tokensKey), &starlingv1.IssueTokenRequest{UserId: u.ID, DeviceId: "svc"})
	wantCode(t, err, codes.OK, "token with a tokens-only key")
	if _, err := e.api.GetPresence(e.ctx, req); err != nil {
		t.Fatalf("full key: %v", err)
	}
	// A revoked key (the key file reloaded) is refused.
	path := filepath.Join(t.TempDir(), "keys.json")
	file := `{"keys":[{"name":"full","sha256":"` + admin.Hash(fullKey) + `","scopes":["*"],"revoked":true}]}`
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.keys.Load(path); err != nil {
		t.Fatal(err)
	}
	_, err = e.api.GetPresence(e.ctx, req)
	wantCode(t, err, codes.Unauthenticated, "revoked key")
}

func testAdminUsersTokens(t *testing.T, e adminEnv) {
	up := &starlingv1.UpsertUserRequest{ExternalId: "acct-42", Username: "carol", DisplayName: "Carol"}
	r1, err := e.api.UpsertUser(e.ctx, up)
	if err != nil || !r1.GetCreated() || r1.GetUser().GetUserId() != "x.acct-42" {
		t.Fatalf("create: %v %v", r1, err)
	}
	r2, err := e.api.UpsertUser(e.ctx, up)
	if err != nil || r2.GetCreated() || r2.GetUser().GetUserId() != "x.acct-42" {
		t.Fatalf("upsert again: %v %v", r2, err)
	}
	up.DisplayName = "Carol C."
	if r, err := e.api.UpsertUser(e.ctx, up); err != nil || r.GetUser().GetDisplayName() != "Carol C." {
		t.Fatalf("update: %v %v", r, err)
	}
	_, err = e.api.UpsertUser(e.ctx, &starlingv1.UpsertUserRequest{ExternalId: "bad id!", Username: "dave"})
	wantCode(t, err, codes.InvalidArgument, "bad external id")
	e.srv.NewUser(t, "erin")
	_, err = e.api.UpsertUser(e.ctx, &starlingv1.UpsertUserRequest{ExternalId: "acct-43", Username: "erin"})
	wantCode(t, err, codes.AlreadyExists, "username of another user")

	// An issued token works on the Stream and the user services.
	tok, err := e.api.IssueToken(e.ctx, &starlingv1.IssueTokenRequest{UserId: "x.acct-42", DeviceId: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	st := e.srv.OpenStream(t, tok.GetToken())
	if st.Welcome.GetUserId() != "x.acct-42" {
		t.Fatalf("welcome %v", st.Welcome)
	}
	_, err = e.api.IssueToken(e.ctx, &starlingv1.IssueTokenRequest{UserId: "nobody", DeviceId: "phone"})
	wantCode(t, err, codes.NotFound, "token for a missing user")
	_, err = e.api.IssueToken(e.ctx, &starlingv1.IssueTokenRequest{UserId: "x.acct-42", DeviceId: "bad device!"})
	wantCode(t, err, codes.InvalidArgument, "bad device")

	// Disabling closes the stream and refuses new tokens.
	if r, err := e.api.SetUserDisabled(e.ctx, &starlingv1.SetUserDisabledRequest{UserId: "x.acct-42", Disabled: true}); err != nil || r.GetRevokedTokens() != 1 {
		t.Fatalf("disable: %v %v", r, err)
	}
	expectLoggedOut(t, st)
	_, err = e.api.IssueToken(e.ctx, &starlingv1.IssueTokenRequest{UserId: "x.acct-42", DeviceId: "phone"})
	wantCode(t, err, codes.FailedPrecondition, "token for a disabled user")
	if _, err := e.api.SetUserDisabled(e.ctx, &starlingv1.SetUserDisabledRequest{UserId: "x.acct-42"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.api.IssueToken(e.ctx, &starlingv1.IssueTokenRequest{UserId: "x.acct-42", DeviceId: "phone"}); err != nil {
		t.Fatalf("token after enabling: %v", err)
	}
	// Delete: the user can get no token and its username is free again.
	if _, err := e.api.DeleteUser(e.ctx, &starlingv1.DeleteUserRequest{UserId: "x.acct-42"}); err != nil {
		t.Fatal(err)
	}
	_, err = e.api.IssueToken(e.ctx, &starlingv1.IssueTokenRequest{UserId: "x.acct-42", DeviceId: "phone"})
	wantCode(t, err, codes.FailedPrecondition, "token for a deleted user")
	e.srv.NewUser(t, "carol")
	_, err = e.api.DeleteUser(e.ctx, &starlingv1.DeleteUserRequest{UserId: "nobody"})
	wantCode(t, err, codes.NotFound, "delete a missing user")
}

func expectLoggedOut(t *testing.T, st *servertest.Stream) {
	t.Helper()
	rest, err := st.End(t)
	if err != nil {
		t.Fatalf("stream ended with %v, want a clean end", err)
	}
	if len(rest) == 0 || rest[len(rest)-1].GetDisconnect().GetReason() != starlingv1.DisconnectReason_DISCONNECT_REASON_LOGGED_OUT {
		t.Fatalf("last frames %v, want Disconnect LOGGED_OUT", rest)
	}
}

func testAdminRevoke(t *testing.T, e adminEnv) {
	u := e.srv.NewUser(t, "alice")
	phoneTok, laptopTok := e.srv.Login(t, u, "phone"), e.srv.Login(t, u, "laptop")
	phone, laptop := e.srv.OpenStream(t, phoneTok), e.srv.OpenStream(t, laptopTok)
	r, err := e.api.RevokeTokens(e.ctx, &starlingv1.RevokeTokensRequest{UserId: u.ID, DeviceId: "phone"})
	if err != nil || r.GetRevokedTokens() != 1 {
		t.Fatalf("revoke phone: %v %v", r, err)
	}
	expectLoggedOut(t, phone)
	if _, err := e.srv.OpenRawStream(t, servertest.WithToken(t.Context(), phoneTok)).End(t); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("reconnect with the revoked token: %v", err)
	}
	// The laptop is untouched until every token of the user is revoked.
	laptop.Send(t, &starlingv1.StreamRequest{Frame: &starlingv1.StreamRequest_Ping{Ping: &starlingv1.Ping{}}})
	if f := laptop.Next(t); f.GetPong() == nil {
		t.Fatalf("laptop got %v, want Pong", f)
	}
	if r, err := e.api.RevokeTokens(e.ctx, &starlingv1.RevokeTokensRequest{UserId: u.ID}); err != nil || r.GetRevokedTokens() != 1 {
		t.Fatalf("revoke all: %v %v", r, err)
	}
	expectLoggedOut(t, laptop)
	if _, err := e.srv.OpenRawStream(t, servertest.WithToken(t.Context(), laptopTok)).End(t); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("reconnect with the revoked token: %v", err)
	}
}

func testAdminSend(t *testing.T, e adminEnv) {
	alice, bob := e.srv.NewUser(t, "alice"), e.srv.NewUser(t, "bob")
	bobDev := connect(t, e.srv, bob, "phone")
	aliceDev := connect(t, e.srv, alice, "phone")
	send := &starlingv1.SendMessageRequest{FromUserId: alice.ID, ToUserId: bob.ID, ClientMsgId: "m1", Content: &starlingv1.Content{Text: "from the backend"}}
	r1, err := e.api.SendMessage(e.ctx, send)
	if err != nil || r1.GetDuplicate() || r1.GetMessage().GetSeq() != 1 || r1.GetMessage().GetSenderId() != alice.ID {
		t.Fatalf("send: %v %v", r1, err)
	}
	r2, err := e.api.SendMessage(e.ctx, send)
	if err != nil || !r2.GetDuplicate() || r2.GetMessage().GetMsgId() != r1.GetMessage().GetMsgId() {
		t.Fatalf("resend: %v %v", r2, err)
	}
	// Delivered like a device's send: to the recipient and to the
	// sender's devices, once.
	for _, d := range []device{bobDev, aliceDev} {
		if m := pushed(t, d, 1)[0]; m.GetMsgId() != r1.GetMessage().GetMsgId() || m.GetContent().GetText() != "from the backend" {
			t.Fatalf("pushed %v", m)
		}
	}
	// The same client_msg_id from a device of alice is a duplicate too.
	ack, _ := expectAck(t, aliceDev, aliceDev.Text(t, bob.ID, "", "m1", "from the backend"))
	if !ack.GetDuplicate() || ack.GetMsgId() != r1.GetMessage().GetMsgId() {
		t.Fatalf("device resend: %v", ack)
	}
	// The system sender.
	sys, err := e.api.SendMessage(e.ctx, &starlingv1.SendMessageRequest{ToUserId: bob.ID, ClientMsgId: "welcome", Content: &starlingv1.Content{Text: "welcome"}})
	if err != nil || sys.GetMessage().GetSenderId() != "system" {
		t.Fatalf("system send: %v %v", sys, err)
	}
	if m := pushed(t, bobDev, 1)[0]; m.GetSenderId() != "system" {
		t.Fatalf("pushed %v", m)
	}
	// Bad inputs.
	_, err = e.api.SendMessage(e.ctx, &starlingv1.SendMessageRequest{ToUserId: bob.ID, Content: &starlingv1.Content{Text: "x"}})
	wantCode(t, err, codes.InvalidArgument, "no client_msg_id")
	_, err = e.api.SendMessage(e.ctx, &starlingv1.SendMessageRequest{ToUserId: "nobody", ClientMsgId: "x", Content: &starlingv1.Content{Text: "x"}})
	wantCode(t, err, codes.NotFound, "missing recipient")
}

func testAdminGroupsBroadcast(t *testing.T, e adminEnv) {
	alice, bob, carol := e.srv.NewUser(t, "alice"), e.srv.NewUser(t, "bob"), e.srv.NewUser(t, "carol")
	g, err := e.api.CreateGroup(e.ctx, &starlingv1.AdminServiceCreateGroupRequest{OwnerId: alice.ID, Name: "team", MemberIds: []string{bob.ID}})
	if err != nil || g.GetGroup().GetMemberCount() != 2 {
		t.Fatalf("create group: %v %v", g, err)
	}
	gid := g.GetGroup().GetGroupId()
	sm, err := e.api.SetMembers(e.ctx, &starlingv1.SetMembersRequest{GroupId: gid, UserIds: []string{carol.ID}})
	if err != nil || len(sm.GetAddedUserIds()) != 1 || sm.GetAddedUserIds()[0] != carol.ID || len(sm.GetRemovedUserIds()) != 1 || sm.GetRemovedUserIds()[0] != bob.ID {
		t.Fatalf("set members: %v %v", sm, err)
	}
	carolDev := connect(t, e.srv, carol, "phone")
	// The system sender may send to any group; a user must be a member.
	if _, err := e.api.SendMessage(e.ctx, &starlingv1.SendMessageRequest{ToGroupId: gid, ClientMsgId: "g1", Content: &starlingv1.Content{Text: "hello team"}}); err != nil {
		t.Fatal(err)
	}
	// Carol reads from her joining: the change that added her (by
	// "system", with bob's removal before it, which she does not see),
	// then the message.
	if got := syncAll(t, carolDev, g.GetGroup().GetConversationId(), 0); len(got) != 2 ||
		kinds(t, got[:1])[0] != starlingv1.GroupChange_KIND_MEMBERS_ADDED || got[1].GetSenderId() != "system" || got[1].GetContent().GetText() != "hello team" {
		t.Fatalf("carol reads %v", got)
	}
	_, err = e.api.SendMessage(e.ctx, &starlingv1.SendMessageRequest{FromUserId: bob.ID, ToGroupId: gid, ClientMsgId: "g2", Content: &starlingv1.Content{Text: "x"}})
	wantCode(t, err, codes.PermissionDenied, "removed member sends")

	// Broadcast: per-recipient results; a resend stores nothing twice.
	bc := &starlingv1.BroadcastRequest{UserIds: []string{alice.ID, "nobody", carol.ID}, ClientMsgId: "maint-1", Content: &starlingv1.Content{Text: "maintenance at 6"}}
	br, err := e.api.Broadcast(e.ctx, bc)
	if err != nil {
		t.Fatal(err)
	}
	res := br.GetResults()
	if len(res) != 3 || res[0].GetMessage() == nil || codes.Code(res[1].GetCode()) != codes.NotFound || res[2].GetMessage() == nil {
		t.Fatalf("broadcast results %v", res)
	}
	// (A push of the group's message, read by sync above, may come first.)
	m := pushed(t, carolDev, 1)[0]
	if m.GetConversationId() == g.GetGroup().GetConversationId() {
		m = pushed(t, carolDev, 1)[0]
	}
	if m.GetContent().GetText() != "maintenance at 6" {
		t.Fatalf("pushed %v", m)
	}
	br2, err := e.api.Broadcast(e.ctx, bc)
	if err != nil || br2.GetResults()[2].GetMessage().GetMsgId() != res[2].GetMessage().GetMsgId() {
		t.Fatalf("broadcast resent: %v %v", br2, err)
	}
	_, err = e.api.Broadcast(e.ctx, &starlingv1.BroadcastRequest{UserIds: make([]string, admin.MaxBatch+1), ClientMsgId: "x", Content: &starlingv1.Content{Text: "x"}})
	wantCode(t, err, codes.InvalidArgument, "too many recipients")

	// Presence.
	p, err := e.api.GetPresence(e.ctx, &starlingv1.AdminServiceGetPresenceRequest{UserIds: []string{carol.ID, bob.ID}})
	if err != nil || !p.GetUsers()[0].GetOnline() || p.GetUsers()[1].GetOnline() {
		t.Fatalf("presence %v %v", p, err)
	}
}

func testPushTokens(t *testing.T, e adminEnv) {
	u := e.srv.NewUser(t, "alice")
	tok := e.srv.Login(t, u, "phone")
	ctx := servertest.WithToken(t.Context(), tok)
	push := starlingv1.NewPushServiceClient(e.srv.Dial(t))
	_, err := push.RegisterPushToken(ctx, &starlingv1.RegisterPushTokenRequest{Platform: "webos", Token: "x"})
	wantCode(t, err, codes.InvalidArgument, "bad platform")
	_, err = push.RegisterPushToken(t.Context(), &starlingv1.RegisterPushTokenRequest{Platform: "fcm", Token: "x"})
	wantCode(t, err, codes.Unauthenticated, "no token")
	if _, err := push.RegisterPushToken(ctx, &starlingv1.RegisterPushTokenRequest{Platform: "apns", Token: "abcdef"}); err != nil {
		t.Fatal(err)
	}
	got, err := e.srv.Store().ListPushTokens(t.Context(), u.ID)
	if err != nil || len(got) != 1 || got[0].Token != "abcdef" || got[0].DeviceID != "phone" {
		t.Fatalf("tokens %v %v", got, err)
	}
	if _, err := starlingv1.NewAuthServiceClient(e.srv.Dial(t)).Logout(ctx, &starlingv1.LogoutRequest{}); err != nil {
		t.Fatal(err)
	}
	if got, err := e.srv.Store().ListPushTokens(t.Context(), u.ID); err != nil || len(got) != 0 {
		t.Fatalf("after logout: %v %v", got, err)
	}
}

// TestAdminSystemSenderUnderFriendsPolicy: with --dm-policy friends, a
// backend's send as a user obeys the policy, its system sender does not.
func TestAdminSystemSenderUnderFriendsPolicy(t *testing.T) {
	keys, err := admin.NewKeys(admin.Key{Name: "full", SHA256: admin.Hash(fullKey), Scopes: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.AdminKeys, c.DMPolicy = keys, chat.DMFriends }))
	api, ctx := starlingv1.NewAdminServiceClient(srv.Dial(t)), withKey(t.Context(), fullKey)
	alice, bob := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	_, err = api.SendMessage(ctx, &starlingv1.SendMessageRequest{FromUserId: alice.ID, ToUserId: bob.ID, ClientMsgId: "m1", Content: &starlingv1.Content{Text: "x"}})
	wantCode(t, err, codes.PermissionDenied, "as alice to bob, not friends")
	if _, err := api.SendMessage(ctx, &starlingv1.SendMessageRequest{ToUserId: bob.ID, ClientMsgId: "m1", Content: &starlingv1.Content{Text: "notice"}}); err != nil {
		t.Fatalf("system sender: %v", err)
	}
}
