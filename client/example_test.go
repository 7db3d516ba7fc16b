package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/starling-im/starling/client"
)

// A device logs in, opens its stream, sends a message and prints what
// arrives, its own message included, until the context ends.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	c, err := client.Dial("127.0.0.1:7070") // client.WithTLS(nil) across a network
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Login(ctx, "alice", "correct horse battery", "laptop"); err != nil {
		log.Fatal(err) // status.Code(err) == codes.Unauthenticated: wrong password
	}
	bob, err := c.GetUserByName(ctx, "bob")
	if err != nil {
		log.Fatal(err)
	}

	// A persistent StateStore (client.WithStateStore) lets the next run
	// resume where this one stopped.
	s, err := c.Open(ctx)
	if err != nil {
		log.Fatal(err) // errors.Is(err, client.ErrUnauthenticated): log in again
	}
	defer s.Close()

	ack, err := s.SendText(ctx, client.ToUser(bob.GetUserId()), "hi bob")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored as", ack.GetConversationId(), "seq", ack.GetSeq())

	for m := range s.Messages() {
		fmt.Printf("%s #%d %s: %s\n", m.GetConversationId(), m.GetSeq(), m.GetSenderId(), m.GetContent().GetText())
	}
	// Messages is closed: the session ended. s.Err() says why, e.g.
	// errors.Is(s.Err(), client.ErrLoggedOut).
	fmt.Println("session ended:", s.Err())
}
