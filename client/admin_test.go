package client_test

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/admin"
	"github.com/starling-im/starling/server/servertest"
)

const backendKey = "sk_client_test_0123456789abcdef0123456789abcdef"

// TestAdminBot: a backend creates a bot user, mints its token, and the bot
// holds a Stream like any device: it receives what a user sends it and
// answers; the backend also sends a system notice and revokes the bot.
func TestAdminBot(t *testing.T) {
	keys, err := admin.NewKeys(admin.Key{Name: "backend", SHA256: admin.Hash(backendKey), Scopes: []string{admin.ScopeAll}})
	if err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.AdminKeys = keys }))
	ctx := t.Context()

	backend, err := client.NewAdmin(srv.Target(), backendKey)
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	bot, created, err := backend.UpsertUser(ctx, "helpbot", "helpbot", "Help Bot")
	if err != nil || !created {
		t.Fatalf("upsert bot: %v %v", created, err)
	}
	token, _, err := backend.IssueToken(ctx, bot.GetUserId(), "bot-1")
	if err != nil {
		t.Fatal(err)
	}
	botClient, err := client.Dial(srv.Target(), client.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	defer botClient.Close()
	botSession := open(t, botClient)

	register(t, srv, "alice")
	alice := login(t, srv, "alice", "phone")
	aliceSession := open(t, alice)
	send(t, aliceSession, client.ToUser(bot.GetUserId()), "help!")
	question := receive(t, botSession, 1)[0]
	send(t, botSession, client.ToUser(question.GetSenderId()), "how can I help?")
	// Alice's session gets her own message back first.
	wantTexts(t, receive(t, aliceSession, 2), "help!", "how can I help?")

	// A system notice to alice, and the bot's presence.
	if _, _, err := backend.Send(ctx, &starlingv1.SendMessageRequest{ToUserId: question.GetSenderId(), ClientMsgId: "n1", Content: &starlingv1.Content{Text: "notice"}}); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, aliceSession, 1)[0]; m.GetSenderId() != "system" || m.GetContent().GetText() != "notice" {
		t.Fatalf("notice %v", m)
	}
	online, err := backend.Presence(ctx, bot.GetUserId())
	if err != nil || !online[bot.GetUserId()] {
		t.Fatalf("bot presence %v %v", online, err)
	}
	// Revoked, the bot's session ends as logged out.
	if n, err := backend.RevokeTokens(ctx, bot.GetUserId(), ""); err != nil || n != 1 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	<-botSession.Done()
	if !errors.Is(botSession.Err(), client.ErrLoggedOut) {
		t.Fatalf("bot session ended with %v, want ErrLoggedOut", botSession.Err())
	}

	// A wrong key is refused.
	wrong, err := client.NewAdmin(srv.Target(), "sk_wrong", client.WithAdminConnections(1))
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	_, _, err = wrong.IssueToken(ctx, bot.GetUserId(), "bot-2")
	wantCode(t, err, codes.Unauthenticated)
}
