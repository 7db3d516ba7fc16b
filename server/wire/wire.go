// Package wire is the server's gRPC codec: protobuf, plus bytes that were
// encoded once and are written to many streams. A group message pushed to a
// thousand devices is the same message a thousand times; encoding it once
// (Shared) and assembling each device's Push frame from the encoded
// messages removes most of the fan-out's encoding cost.
// Compression, if a client asks for it, still happens per stream, after the
// codec.
package wire

import (
	"fmt"
	"sync"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Shared is a message many streams send unchanged. Encoding happens on the
// first Bytes call; the result is kept for the others. Safe for concurrent
// use.
type Shared struct {
	Msg proto.Message

	once sync.Once
	b    []byte
	err  error
}

// Encoded is a frame already in wire form: the codec passes it through as
// it is.
type Encoded []byte

// Bytes returns the message's wire form, encoding it the first time.
func (s *Shared) Bytes() (Encoded, error) {
	s.once.Do(func() { s.b, s.err = proto.Marshal(s.Msg) })
	return s.b, s.err
}

// Codec is the protobuf codec that also accepts Encoded.
type Codec struct {
	proto encoding.CodecV2
}

// NewCodec returns the codec, delegating everything but Encoded to gRPC's
// own protobuf codec.
func NewCodec() *Codec {
	return &Codec{proto: encoding.GetCodecV2(grpcproto.Name)}
}

// Marshal implements encoding.CodecV2.
func (c *Codec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(Encoded); ok {
		// The bytes are shared by every stream that sends them: gRPC must not
		// recycle them, and SliceBuffer's Free does nothing.
		return mem.BufferSlice{mem.SliceBuffer(e)}, nil
	}
	out, err := c.proto.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("wire: %w", err)
	}
	return out, nil
}

// Unmarshal implements encoding.CodecV2. Bytes that are not a valid
// encoding decode as the empty message rather than an error: gRPC would
// report the error as Internal (a server fault) and end the call, while the
// fault is the client's. Empty, the request is refused by the handler's
// own validation as INVALID_ARGUMENT (an empty Stream frame, a Register
// without a username), and a stream stays open.
func (c *Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if err := c.proto.Unmarshal(data, v); err != nil {
		m, ok := v.(proto.Message)
		if !ok {
			return err
		}
		proto.Reset(m)
	}
	return nil
}

// Name implements encoding.CodecV2: it is the protobuf codec, for clients.
func (c *Codec) Name() string { return grpcproto.Name }
