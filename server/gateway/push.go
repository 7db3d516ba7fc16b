package gateway

import (
	"context"
	"log/slog"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/storage"
)

// PushTokens stores devices' push tokens.
type PushTokens interface {
	PutPushToken(ctx context.Context, t storage.PushToken) error
	DeletePushToken(ctx context.Context, userID, deviceID string) error
}

// PushServer serves starling.v1.PushService. Logout forgets the token
// (auth.Accounts.Logout).
type PushServer struct {
	starlingv1.UnimplementedPushServiceServer
	Store PushTokens
	Log   *slog.Logger
}

// maxPushTokenBytes bounds a push token: APNs tokens are 64 hex digits,
// FCM tokens a few hundred bytes.
const maxPushTokenBytes = 4096

func validPushToken(platform, token string) bool {
	if platform != "apns" && platform != "fcm" {
		return false
	}
	if token == "" || len(token) > maxPushTokenBytes {
		return false
	}
	for i := 0; i < len(token); i++ {
		if token[i] < 0x21 || token[i] > 0x7e {
			return false
		}
	}
	return true
}

// RegisterPushToken stores the calling device's push token.
func (s *PushServer) RegisterPushToken(ctx context.Context, req *starlingv1.RegisterPushTokenRequest) (*starlingv1.RegisterPushTokenResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, toError(s.Log, err)
	}
	if !validPushToken(req.GetPlatform(), req.GetToken()) {
		return nil, toError(s.Log, apierr.BadPushToken)
	}
	t := storage.PushToken{UserID: id.UserID, DeviceID: id.DeviceID, Platform: req.GetPlatform(), Token: req.GetToken(), UpdatedAt: time.Now().UTC()}
	if err := s.Store.PutPushToken(ctx, t); err != nil {
		return nil, toError(s.Log, apierr.FromStorage("gateway: register push token", err))
	}
	return &starlingv1.RegisterPushTokenResponse{}, nil
}

// UnregisterPushToken forgets the calling device's push token.
func (s *PushServer) UnregisterPushToken(ctx context.Context, _ *starlingv1.UnregisterPushTokenRequest) (*starlingv1.UnregisterPushTokenResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, toError(s.Log, err)
	}
	if err := s.Store.DeletePushToken(ctx, id.UserID, id.DeviceID); err != nil {
		return nil, toError(s.Log, apierr.FromStorage("gateway: unregister push token", err))
	}
	return &starlingv1.UnregisterPushTokenResponse{}, nil
}
