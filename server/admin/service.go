package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/auth"
	"github.com/starling-im/starling/server/chat"
	"github.com/starling-im/starling/server/gateway"
	"github.com/starling-im/starling/storage"
)

// Locator tells which node holds each user's devices (presence).
type Locator interface {
	Locate(ctx context.Context, users []string) (map[string][]string, error)
}

// Local counts a user's devices online on this node (hub.Hub).
type Local interface {
	Online(userID string) int
}

// Server serves starling.v1.AdminService. Its Interceptor must guard it.
type Server struct {
	starlingv1.UnimplementedAdminServiceServer
	Keys *Keys
	// ClientCAs, when set, let a TLS client certificate they signed open
	// AdminService as the key entry whose cert_cn it names (cert.go); nil:
	// only API keys do. The node must request client certificates
	// (tls.RequestClientCert) for any to be presented.
	ClientCAs *CAs
	Accounts  *auth.Accounts
	Chat      *chat.Service
	Kicker    gateway.Kicker
	Presence  Locator
	// Hub counts the devices online on this node: Locate places users
	// with no device anywhere on this node too.
	Hub    Local
	NodeID string
	Log    *slog.Logger

	systemReady atomic.Bool // the system sender exists
}

// MaxBatch bounds the users of one Broadcast or GetPresence.
const MaxBatch = 1000

// AdminDevice is the sender device of messages a backend sends.
const AdminDevice = "admin"

// ExternalPrefix starts the user id of a user a backend created.
const ExternalPrefix = "x."

var externalRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// scopes is the scope of each method; a method missing here is refused.
var scopes = map[string]string{
	starlingv1.AdminService_UpsertUser_FullMethodName:      ScopeUsers,
	starlingv1.AdminService_SetUserDisabled_FullMethodName: ScopeUsers,
	starlingv1.AdminService_DeleteUser_FullMethodName:      ScopeUsers,
	starlingv1.AdminService_IssueToken_FullMethodName:      ScopeTokens,
	starlingv1.AdminService_RevokeTokens_FullMethodName:    ScopeTokens,
	starlingv1.AdminService_SendMessage_FullMethodName:     ScopeMessages,
	starlingv1.AdminService_Broadcast_FullMethodName:       ScopeMessages,
	starlingv1.AdminService_CreateGroup_FullMethodName:     ScopeGroups,
	starlingv1.AdminService_SetMembers_FullMethodName:      ScopeGroups,
	starlingv1.AdminService_GetPresence_FullMethodName:     ScopePresence,
}

// IsAdminMethod reports whether a full method name is AdminService's.
func IsAdminMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/"+starlingv1.AdminService_ServiceDesc.ServiceName+"/")
}

// Interceptor authenticates AdminService calls by API key or client
// certificate, enforces the key entry's scopes, and logs every call with
// the entry's name (never the key). Put it on AdminService only
// (IsAdminMethod).
func (s *Server) Interceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	key, via, err := s.authenticate(ctx)
	if err != nil {
		s.Log.Warn("admin call refused", "method", info.FullMethod, "via", via, "err", err)
		return nil, gateway.ToError(s.Log, err)
	}
	if scope, ok := scopes[info.FullMethod]; !ok || !key.Allows(scope) {
		err := fmt.Errorf("%w: key %q, scope %q", apierr.ScopeDenied, key.Name, scope)
		s.Log.Warn("admin call refused", "key", key.Name, "via", via, "method", info.FullMethod, "err", err)
		return nil, gateway.ToError(s.Log, err)
	}
	resp, err := handler(ctx, req)
	s.Log.Info("admin call", "key", key.Name, "via", via, "method", info.FullMethod, "code", status.Code(err).String(), "took", time.Since(start))
	return resp, err
}

// UpsertUser implements AdminService.
func (s *Server) UpsertUser(ctx context.Context, req *starlingv1.UpsertUserRequest) (*starlingv1.UpsertUserResponse, error) {
	if !externalRE.MatchString(req.GetExternalId()) {
		return nil, gateway.ToError(s.Log, apierr.BadExternalID)
	}
	u, created, err := s.Accounts.UpsertUser(ctx, ExternalPrefix+req.GetExternalId(), req.GetUsername(), req.GetDisplayName())
	if err != nil {
		return nil, gateway.ToError(s.Log, err)
	}
	return &starlingv1.UpsertUserResponse{User: chat.UserProto(u), Created: created}, nil
}

// SetUserDisabled implements AdminService.
func (s *Server) SetUserDisabled(ctx context.Context, req *starlingv1.SetUserDisabledRequest) (*starlingv1.SetUserDisabledResponse, error) {
	revoked, err := s.Accounts.SetUserDisabled(ctx, req.GetUserId(), req.GetDisabled())
	if err != nil {
		return nil, gateway.ToError(s.Log, err)
	}
	s.kick(ctx, req.GetUserId(), revoked)
	return &starlingv1.SetUserDisabledResponse{RevokedTokens: int32(len(revoked))}, nil
}

// DeleteUser implements AdminService.
func (s *Server) DeleteUser(ctx context.Context, req *starlingv1.DeleteUserRequest) (*starlingv1.DeleteUserResponse, error) {
	revoked, err := s.Accounts.DeleteUser(ctx, req.GetUserId())
	s.kick(ctx, req.GetUserId(), revoked)
	if err != nil {
		return nil, gateway.ToError(s.Log, err)
	}
	return &starlingv1.DeleteUserResponse{}, nil
}

// IssueToken implements AdminService.
func (s *Server) IssueToken(ctx context.Context, req *starlingv1.IssueTokenRequest) (*starlingv1.IssueTokenResponse, error) {
	token, exp, err := s.Accounts.IssueToken(ctx, req.GetUserId(), req.GetDeviceId())
	if err != nil {
		return nil, gateway.ToError(s.Log, err)
	}
	return &starlingv1.IssueTokenResponse{Token: token, ExpiresAt: timestamppb.New(exp)}, nil
}

// RevokeTokens implements AdminService.
func (s *Server) RevokeTokens(ctx context.Context, req *starlingv1.RevokeTokensRequest) (*starlingv1.RevokeTokensResponse, error) {
	revoked, err := s.Accounts.RevokeTokens(ctx, req.GetUserId(), req.GetDeviceId())
	if err != nil {
		return nil, gateway.ToError(s.Log, err)
	}
	s.kick(ctx, req.GetUserId(), revoked)
	if req.GetDeviceId() != "" && len(revoked) == 0 {
		// Nothing live was revoked, yet a stream may still be open on a
		// token revoked before: close it all the same.
		s.Kicker.Kick(ctx, req.GetUserId(), req.GetDeviceId(), starlingv1.DisconnectReason_DISCONNECT_REASON_LOGGED_OUT)
	}
	return &starlingv1.RevokeTokensResponse{RevokedTokens: int32(len(revoked))}, nil
}

// kick closes the streams of the devices whose sessions were revoked, on
// whichever node holds them.
func (s *Server) kick(ctx context.Context, user string, revoked []storage.Session) {
	var devices []string
	for _, r := range revoked {
		if !slices.Contains(devices, r.DeviceID) {
			devices = append(devices, r.DeviceID)
		}
	}
	for _, d := range devices {
		s.Kicker.Kick(ctx, user, d, starlingv1.DisconnectReason_DISCONNECT_REASON_LOGGED_OUT)
	}
}

// SendMessage implements AdminService.
func (s *Server) SendMessage(ctx context.Context, req *starlingv1.SendMessageRequest) (*starlingv1.SendMessageResponse, error) {
	from := req.GetFromUserId()
	if from == "" {
		if err := s.ensureSystem(ctx); err != nil {
			return nil, gateway.ToError(s.Log, err)
		}
		from = chat.SystemUserID
	}
	r, err := s.send(ctx, chat.SendRequest{
		From:        auth.Identity{UserID: from, DeviceID: AdminDevice},
		ToUser:      req.GetToUserId(),
		ToGroup:     req.GetToGroupId(),
		ClientMsgID: req.GetClientMsgId(),
		Content:     req.GetContent(),
		Trusted:     true,
	})
	if err != nil {
		return nil, gateway.ToError(s.Log, err)
	}
	return &starlingv1.SendMessageResponse{Message: r.Message, Duplicate: r.Duplicate}, nil
}

// send sends through the chat pipeline and waits for the commit and
// fan-out (or ctx).
func (s *Server) send(ctx context.Context, req chat.SendRequest) (chat.SendResult, error) {
	done := make(chan chat.SendResult, 1)
	if err := s.Chat.Send(ctx, req, func(r chat.SendResult) { done <- r }); err != nil {
		return chat.SendResult{}, err
	}
	select {
	case r := <-done:
		return r, r.Err
	case <-ctx.Done():
		return chat.SendResult{}, fmt.Errorf("%w: %w", apierr.Unavailable, ctx.Err())
	}
}

func (s *Server) ensureSystem(ctx context.Context) error {
	if s.systemReady.Load() {
		return nil
	}
	if err := s.Chat.EnsureSystemUser(ctx); err != nil {
		return err
	}
	s.systemReady.Store(true)
	return nil
}

// Broadcast implements AdminService.
func (s *Server) Broadcast(ctx context.Context, req *starlingv1.BroadcastRequest) (*starlingv1.BroadcastResponse, error) {
	users := req.GetUserIds()
	if len(users) > MaxBatch {
		return nil, gateway.ToError(s.Log, fmt.Errorf("%w: %d, limit %d", apierr.TooManyRecipients, len(users), MaxBatch))
	}
	if n := len(req.GetClientMsgId()); n == 0 || n > 64 {
		return nil, gateway.ToError(s.Log, fmt.Errorf("%w: got %d bytes", apierr.BadClientMsgID, n))
	}
	if err := s.ensureSystem(ctx); err != nil {
		return nil, gateway.ToError(s.Log, err)
	}
	results := make([]*starlingv1.BroadcastResult, len(users))
	var wg sync.WaitGroup
	for i, u := range users {
		results[i] = &starlingv1.BroadcastResult{UserId: u}
		wg.Add(1)
		answer := func(r chat.SendResult) {
			defer wg.Done()
			if r.Err != nil {
				st := status.Convert(gateway.ToError(s.Log, r.Err))
				results[i].Code, results[i].Error = int32(st.Code()), st.Message()
				return
			}
			results[i].Message = r.Message
		}
		err := s.Chat.Send(ctx, chat.SendRequest{
			From:        auth.Identity{UserID: chat.SystemUserID, DeviceID: AdminDevice},
			ToUser:      u,
			ClientMsgID: recipientMsgID(req.GetClientMsgId(), u),
			Content:     req.GetContent(),
			Trusted:     true,
		}, answer)
		if err != nil {
			answer(chat.SendResult{Err: err})
		}
	}
	wg.Wait() // every queued send is answered, even when ctx ends
	return &starlingv1.BroadcastResponse{Results: results}, nil
}

// recipientMsgID is one recipient's client_msg_id of a broadcast: the
// system sender's dedup key is per sender, so each conversation needs its
// own, and a resent broadcast maps to the same ones.
func recipientMsgID(broadcast, user string) string {
	sum := sha256.Sum256([]byte(broadcast + "\x00" + user))
	return "b." + hex.EncodeToString(sum[:24])
}

// CreateGroup implements AdminService: chat.CreateGroup, then the roles
// of members (one ROLE_CHANGED system message for the admins).
func (s *Server) CreateGroup(ctx context.Context, req *starlingv1.AdminServiceCreateGroupRequest) (*starlingv1.AdminServiceCreateGroupResponse, error) {
	ids := slices.Clone(req.GetMemberIds())
	var admins bool
	for _, m := range req.GetMembers() {
		switch m.GetRole() {
		case starlingv1.GroupRole_GROUP_ROLE_UNSPECIFIED, starlingv1.GroupRole_GROUP_ROLE_MEMBER:
		case starlingv1.GroupRole_GROUP_ROLE_ADMIN:
			if m.GetUserId() == req.GetOwnerId() {
				return nil, gateway.ToError(s.Log, fmt.Errorf("%w: %q is owner_id", apierr.OwnerRoleFixed, m.GetUserId()))
			}
			admins = true
		default:
			return nil, gateway.ToError(s.Log, fmt.Errorf("%w: %s for %q (the owner is owner_id)", apierr.BadGroupRole, m.GetRole(), m.GetUserId()))
		}
		ids = append(ids, m.GetUserId())
	}
	name := req.GetName()
	out, err := s.Chat.CreateGroup(ctx, req.GetOwnerId(), chat.GroupSettings{Name: &name}, ids)
	if err != nil {
		return nil, gateway.ToError(s.Log, err)
	}
	if !admins {
		return &starlingv1.AdminServiceCreateGroupResponse{Group: out.Group}, nil
	}
	specs := []chat.MemberSpec{{UserID: req.GetOwnerId()}}
	for _, id := range req.GetMemberIds() {
		specs = append(specs, chat.MemberSpec{UserID: id})
	}
	specs = append(specs, memberSpecs(req.GetMembers())...)
	set, err := s.Chat.SetMembers(ctx, out.Group.GetGroupId(), dedupSpecs(specs))
	if err != nil {
		return nil, gateway.ToError(s.Log, err)
	}
	return &starlingv1.AdminServiceCreateGroupResponse{Group: set.Group}, nil
}

// SetMembers implements AdminService.
func (s *Server) SetMembers(ctx context.Context, req *starlingv1.SetMembersRequest) (*starlingv1.SetMembersResponse, error) {
	specs := make([]chat.MemberSpec, 0, len(req.GetUserIds())+len(req.GetMembers()))
	for _, id := range req.GetUserIds() {
		specs = append(specs, chat.MemberSpec{UserID: id})
	}
	specs = append(specs, memberSpecs(req.GetMembers())...)
	out, err := s.Chat.SetMembers(ctx, req.GetGroupId(), specs)
	if err != nil {
		return nil, gateway.ToError(s.Log, err)
	}
	return &starlingv1.SetMembersResponse{AddedUserIds: out.Added, RemovedUserIds: out.Removed, RoleChangedUserIds: out.RoleChanged, Group: out.Group}, nil
}

func memberSpecs(ms []*starlingv1.AdminGroupMember) []chat.MemberSpec {
	out := make([]chat.MemberSpec, len(ms))
	for i, m := range ms {
		out[i] = chat.MemberSpec{UserID: m.GetUserId(), Role: m.GetRole()}
	}
	return out
}

// dedupSpecs keeps the last spec of each user: CreateGroup's member_ids
// and members may name a user twice, as its CreateGroup call allows.
func dedupSpecs(specs []chat.MemberSpec) []chat.MemberSpec {
	at := map[string]int{}
	var out []chat.MemberSpec
	for _, sp := range specs {
		if i, ok := at[sp.UserID]; ok {
			out[i] = sp
			continue
		}
		at[sp.UserID] = len(out)
		out = append(out, sp)
	}
	return out
}

// GetPresence implements AdminService.
func (s *Server) GetPresence(ctx context.Context, req *starlingv1.AdminServiceGetPresenceRequest) (*starlingv1.AdminServiceGetPresenceResponse, error) {
	users := req.GetUserIds()
	if len(users) > MaxBatch {
		return nil, gateway.ToError(s.Log, fmt.Errorf("%w: %d, limit %d", apierr.TooManyRecipients, len(users), MaxBatch))
	}
	where, err := s.Presence.Locate(ctx, users)
	if err != nil {
		return nil, gateway.ToError(s.Log, fmt.Errorf("%w: presence: %w", apierr.Unavailable, err))
	}
	online := map[string]bool{}
	for node, us := range where {
		for _, u := range us {
			// Elsewhere means a device there; here, the hub knows.
			if node != s.NodeID || s.Hub.Online(u) > 0 {
				online[u] = true
			}
		}
	}
	out := &starlingv1.AdminServiceGetPresenceResponse{Users: make([]*starlingv1.AdminUserPresence, len(users))}
	for i, u := range users {
		out.Users[i] = &starlingv1.AdminUserPresence{UserId: u, Online: online[u]}
	}
	return out, nil
}
