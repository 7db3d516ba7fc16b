package bus

import (
	"errors"
	"testing"
)

type nopHandler struct{ got int }

func (h *nopHandler) Deliver(Delivery)    { h.got++ }
func (h *nopHandler) Announce(Announce)   { h.got++ }
func (h *nopHandler) Kick(Kick)           { h.got++ }
func (h *nopHandler) Signal(Signal)       { h.got++ }
func (h *nopHandler) GroupChanged(string) { h.got++ }
func (h *nopHandler) Lost()               { h.got++ }

// A payload that is not one of ours (another program on the channel, a
// truncated message) is refused, never half-delivered.
func TestDispatchRefusesMalformedPayloads(t *testing.T) {
	h := &nopHandler{}
	for _, b := range [][]byte{
		nil,
		{9},                           // unknown kind
		{kindDelivery, 0x0a, 0x05},    // a bytes field shorter than its length
		{kindAnnounce, 0x10},          // a varint cut short
		{kindDelivery, 0x0a, 1, 0xff}, // a message that is not a Message
	} {
		if err := dispatch(b, h); err == nil {
			t.Errorf("payload %x accepted", b)
		}
	}
	if h.got != 0 {
		t.Fatalf("%d malformed payloads reached the handler", h.got)
	}
	if !errors.Is(dispatch(nil, h), errBadPayload) {
		t.Fatal("an empty payload is not errBadPayload")
	}
}

// A batch with one malformed delivery is refused whole.
func TestDispatchRefusesMalformedBatch(t *testing.T) {
	h := &nopHandler{}
	good, err := encodeDelivery(Delivery{Msg: nil, Users: []string{"u"}})
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{kindBatch}
	b = append(b, 0x0a, byte(len(good)-1))
	b = append(b, good[1:]...)
	b = append(b, 0x0a, 0x03, 0x0a, 0x05, 0x01) // a delivery whose message field is cut short
	if err := dispatch(b, h); err == nil || h.got != 0 {
		t.Fatalf("malformed batch: err %v, %d delivered", err, h.got)
	}
}
