package gateway

import (
	"context"
	"log/slog"

	"google.golang.org/protobuf/types/known/timestamppb"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/auth"
	"github.com/starling-im/starling/server/chat"
)

// AuthServer serves starling.v1.AuthService.
type AuthServer struct {
	starlingv1.UnimplementedAuthServiceServer
	Accounts *auth.Accounts
	Kicker   Kicker
	Log      *slog.Logger
}

// Kicker closes a device's stream on whichever node holds it
// (bus.Router).
type Kicker interface {
	Kick(ctx context.Context, user, device string, reason starlingv1.DisconnectReason)
}

// Register creates a user.
func (s *AuthServer) Register(ctx context.Context, req *starlingv1.RegisterRequest) (*starlingv1.RegisterResponse, error) {
	u, err := s.Accounts.Register(ctx, req.GetUsername(), req.GetPassword(), req.GetDisplayName())
	if err != nil {
		return nil, toError(s.Log, err)
	}
	return &starlingv1.RegisterResponse{User: chat.UserProto(u)}, nil
}

// Login issues a token.
func (s *AuthServer) Login(ctx context.Context, req *starlingv1.LoginRequest) (*starlingv1.LoginResponse, error) {
	token, exp, u, err := s.Accounts.Login(ctx, req.GetUsername(), req.GetPassword(), req.GetDeviceId())
	if err != nil {
		return nil, toError(s.Log, err)
	}
	return &starlingv1.LoginResponse{Token: token, ExpiresAt: timestamppb.New(exp), User: chat.UserProto(u), DeviceId: req.GetDeviceId()}, nil
}

// Logout revokes the caller's token and closes its stream.
func (s *AuthServer) Logout(ctx context.Context, _ *starlingv1.LogoutRequest) (*starlingv1.LogoutResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, toError(s.Log, err)
	}
	if err := logout(ctx, s.Accounts, s.Kicker, id); err != nil {
		return nil, toError(s.Log, err)
	}
	return &starlingv1.LogoutResponse{}, nil
}

// logout is shared by the unary call and the Logout frame: revoke first, so
// a reconnect racing the kick is refused; then close the device's stream,
// on this node or the one that holds it.
func logout(ctx context.Context, accounts *auth.Accounts, k Kicker, id auth.Identity) error {
	if err := accounts.Logout(ctx, id); err != nil {
		return err
	}
	k.Kick(ctx, id.UserID, id.DeviceID, starlingv1.DisconnectReason_DISCONNECT_REASON_LOGGED_OUT)
	return nil
}

func identity(ctx context.Context) (auth.Identity, error) {
	id, ok := auth.FromContext(ctx)
	if !ok {
		// The interceptor guarantees one; reaching here is a wiring bug.
		return auth.Identity{}, apierr.NoToken
	}
	return id, nil
}

// UserServer serves starling.v1.UserService.
type UserServer struct {
	starlingv1.UnimplementedUserServiceServer
	Chat *chat.Service
	Log  *slog.Logger
}

// GetUser finds a user.
func (s *UserServer) GetUser(ctx context.Context, req *starlingv1.GetUserRequest) (*starlingv1.GetUserResponse, error) {
	u, err := s.Chat.GetUser(ctx, req.GetUserId(), req.GetUsername())
	if err != nil {
		return nil, toError(s.Log, err)
	}
	return &starlingv1.GetUserResponse{User: u}, nil
}
