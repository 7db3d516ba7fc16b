package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/starling-im/starling/client"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

var adminCommands = map[string]command{
	"users":     cmdAdminUsers,
	"token":     cmdAdminToken,
	"revoke":    cmdAdminRevoke,
	"send":      cmdAdminSend,
	"broadcast": cmdAdminBroadcast,
	"groups":    cmdAdminGroups,
	"presence":  cmdAdminPresence,
}

// cmdAdmin runs AdminService calls with the API key of STARLING_ADMIN_KEY
// and prints each answer as JSON, for scripts.
func cmdAdmin(ctx context.Context, a *app, args []string) error {
	return subcommand("admin", adminCommands, args, func(cmd command, rest []string) error { return cmd(ctx, a, rest) })
}

// admin connects with the API key of STARLING_ADMIN_KEY.
func (a *app) admin() (*client.Admin, error) {
	key := os.Getenv("STARLING_ADMIN_KEY")
	if key == "" {
		return nil, usageErrorf("admin: set STARLING_ADMIN_KEY to an API key (see 'starling admin --help' and docs/operations.md)")
	}
	e := a.target(nil)
	opts, err := a.options(e)
	if err != nil {
		return nil, err
	}
	ad, err := client.NewAdmin(e.addr, key, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", e.addr, err)
	}
	return ad, nil
}

// adminCall connects, runs call, and prints its answer as JSON.
func adminCall(ctx context.Context, a *app, call func(context.Context, starlingv1.AdminServiceClient) (proto.Message, error)) error {
	ad, err := a.admin()
	if err != nil {
		return err
	}
	defer ad.Close()
	res, err := call(ctx, ad.Service())
	if err != nil {
		return err
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(res)
	if err != nil {
		return err
	}
	// protojson's spacing varies on purpose; scripts get one stable form.
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return err
	}
	return say(a.stdout, "%s\n", out.String())
}

var adminUserCommands = map[string]command{
	"upsert": func(ctx context.Context, a *app, args []string) error {
		fs := newFlags("admin users upsert")
		display := fs.String("display-name", "", "name shown to other users")
		pos, err := parse(fs, args, 2, 2)
		if err != nil {
			return err
		}
		return adminCall(ctx, a, func(ctx context.Context, c starlingv1.AdminServiceClient) (proto.Message, error) {
			return c.UpsertUser(ctx, &starlingv1.UpsertUserRequest{ExternalId: pos[0], Username: pos[1], DisplayName: *display})
		})
	},
	"disable": setUserDisabled("disable", true),
	"enable":  setUserDisabled("enable", false),
	"delete": func(ctx context.Context, a *app, args []string) error {
		pos, err := parse(newFlags("admin users delete"), args, 1, 1)
		if err != nil {
			return err
		}
		return adminCall(ctx, a, func(ctx context.Context, c starlingv1.AdminServiceClient) (proto.Message, error) {
			return c.DeleteUser(ctx, &starlingv1.DeleteUserRequest{UserId: pos[0]})
		})
	},
}

func setUserDisabled(name string, disabled bool) command {
	return func(ctx context.Context, a *app, args []string) error {
		pos, err := parse(newFlags("admin users "+name), args, 1, 1)
		if err != nil {
			return err
		}
		return adminCall(ctx, a, func(ctx context.Context, c starlingv1.AdminServiceClient) (proto.Message, error) {
			return c.SetUserDisabled(ctx, &starlingv1.SetUserDisabledRequest{UserId: pos[0], Disabled: disabled})
		})
	}
}

func cmdAdminUsers(ctx context.Context, a *app, args []string) error {
	return subcommand("admin users", adminUserCommands, args, func(cmd command, rest []string) error { return cmd(ctx, a, rest) })
}

func cmdAdminToken(ctx context.Context, a *app, args []string) error {
	pos, err := parse(newFlags("admin token"), args, 2, 2)
	if err != nil {
		return err
	}
	return adminCall(ctx, a, func(ctx context.Context, c starlingv1.AdminServiceClient) (proto.Message, error) {
		return c.IssueToken(ctx, &starlingv1.IssueTokenRequest{UserId: pos[0], DeviceId: pos[1]})
	})
}

func cmdAdminRevoke(ctx context.Context, a *app, args []string) error {
	pos, err := parse(newFlags("admin revoke"), args, 1, 2)
	if err != nil {
		return err
	}
	device := ""
	if len(pos) == 2 {
		device = pos[1]
	}
	return adminCall(ctx, a, func(ctx context.Context, c starlingv1.AdminServiceClient) (proto.Message, error) {
		return c.RevokeTokens(ctx, &starlingv1.RevokeTokensRequest{UserId: pos[0], DeviceId: device})
	})
}

func cmdAdminSend(ctx context.Context, a *app, args []string) error {
	fs := newFlags("admin send")
	from := fs.String("from", "", "sending user id (default: the system sender)")
	to := fs.String("to", "", "recipient user id")
	group := fs.String("group", "", "recipient group id")
	id := fs.String("id", "", "client_msg_id (dedup key)")
	pos, err := parse(fs, args, 1, -1)
	if err != nil {
		return err
	}
	return adminCall(ctx, a, func(ctx context.Context, c starlingv1.AdminServiceClient) (proto.Message, error) {
		return c.SendMessage(ctx, &starlingv1.SendMessageRequest{FromUserId: *from, ToUserId: *to, ToGroupId: *group, ClientMsgId: *id, Content: &starlingv1.Content{Text: strings.Join(pos, " ")}})
	})
}

func cmdAdminBroadcast(ctx context.Context, a *app, args []string) error {
	fs := newFlags("admin broadcast")
	to := fs.String("to", "", "comma-separated recipient user ids")
	id := fs.String("id", "", "client_msg_id of the broadcast (dedup key)")
	pos, err := parse(fs, args, 1, -1)
	if err != nil {
		return err
	}
	if *to == "" {
		return usageErrorf("admin broadcast: --to is required (see 'starling admin broadcast --help')")
	}
	return adminCall(ctx, a, func(ctx context.Context, c starlingv1.AdminServiceClient) (proto.Message, error) {
		return c.Broadcast(ctx, &starlingv1.BroadcastRequest{UserIds: strings.Split(*to, ","), ClientMsgId: *id, Content: &starlingv1.Content{Text: strings.Join(pos, " ")}})
	})
}

var adminGroupCommands = map[string]command{
	"create": func(ctx context.Context, a *app, args []string) error {
		pos, err := parse(newFlags("admin groups create"), args, 2, -1)
		if err != nil {
			return err
		}
		return adminCall(ctx, a, func(ctx context.Context, c starlingv1.AdminServiceClient) (proto.Message, error) {
			return c.CreateGroup(ctx, &starlingv1.AdminServiceCreateGroupRequest{OwnerId: pos[0], Name: pos[1], MemberIds: pos[2:]})
		})
	},
	"set": func(ctx context.Context, a *app, args []string) error {
		pos, err := parse(newFlags("admin groups set"), args, 1, -1)
		if err != nil {
			return err
		}
		return adminCall(ctx, a, func(ctx context.Context, c starlingv1.AdminServiceClient) (proto.Message, error) {
			return c.SetMembers(ctx, &starlingv1.SetMembersRequest{GroupId: pos[0], UserIds: pos[1:]})
		})
	},
}

func cmdAdminGroups(ctx context.Context, a *app, args []string) error {
	return subcommand("admin groups", adminGroupCommands, args, func(cmd command, rest []string) error { return cmd(ctx, a, rest) })
}

func cmdAdminPresence(ctx context.Context, a *app, args []string) error {
	pos, err := parse(newFlags("admin presence"), args, 1, -1)
	if err != nil {
		return err
	}
	return adminCall(ctx, a, func(ctx context.Context, c starlingv1.AdminServiceClient) (proto.Message, error) {
		return c.GetPresence(ctx, &starlingv1.AdminServiceGetPresenceRequest{UserIds: pos})
	})
}
