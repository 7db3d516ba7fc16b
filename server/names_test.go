package server_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/servertest"
)

// hostileNames hold characters that would control the terminal of whoever
// is shown the name (C0 and C1 controls, DEL) or reorder the text around it
// (bidi overrides, isolates, marks).
var hostileNames = []string{
	"ad\rmin",
	"admin\x1b[2K",
	"a\nb",
	"tab\there",
	"nul\x00",
	"del\x7f",
	"csi\u009b2K",
	"nel\u0085x",
	"\u202eevil",
	"x\u202ay",
	"iso\u2066late\u2069",
	"mark\u200e",
	"mark\u200f",
	"alm\u061c",
	"line\u2028sep",
}

// Names others are shown are refused with INVALID_ARGUMENT when they hold
// control or bidi characters; ordinary text, right-to-left scripts
// included, is kept.
func TestControlCharactersInNames(t *testing.T) {
	srv := servertest.Start(t)
	ctx := t.Context()
	authc := starlingv1.NewAuthServiceClient(srv.Dial(t))
	groupc := starlingv1.NewGroupServiceClient(srv.Dial(t))
	owner := srv.NewUser(t, "owner")
	tok := servertest.WithToken(ctx, srv.Login(t, owner, "d"))

	for i, name := range hostileNames {
		_, err := authc.Register(ctx, &starlingv1.RegisterRequest{Username: "user" + string(rune('a'+i)), Password: servertest.Password, DisplayName: name})
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != apierr.BadDisplayName.Message {
			t.Errorf("display name %q: %v; want %v %q", name, err, codes.InvalidArgument, apierr.BadDisplayName.Message)
		}
		_, err = groupc.CreateGroup(tok, &starlingv1.CreateGroupRequest{Name: name})
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != apierr.BadGroupName.Message {
			t.Errorf("group name %q: %v; want %v %q", name, err, codes.InvalidArgument, apierr.BadGroupName.Message)
		}
	}

	for i, name := range []string{"Zoë", "שלום עולם", "مرحبا", "日本語 🙂", `back\slash`, "  padded\t"} {
		res, err := authc.Register(ctx, &starlingv1.RegisterRequest{Username: "okuser" + string(rune('a'+i)), Password: servertest.Password, DisplayName: name})
		if err != nil {
			t.Errorf("display name %q refused: %v", name, err)
		} else if name == "  padded\t" && res.GetUser().GetDisplayName() != "padded" {
			t.Errorf("display name %q stored as %q; want it trimmed", name, res.GetUser().GetDisplayName())
		}
		if _, err := groupc.CreateGroup(tok, &starlingv1.CreateGroupRequest{Name: name}); err != nil {
			t.Errorf("group name %q refused: %v", name, err)
		}
	}
}
