package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// Admin is a backend's client of AdminService: it sends an API key, never
// a user token (see NewAdmin).
type Admin struct {
	conns *connPool
	api   starlingv1.AdminServiceClient
}

// DefaultAdminConnections is how many connections NewAdmin opens. A node
// lets one connection hold 16 calls at once (MaxConcurrentStreams, sized
// for devices); a backend issuing tokens or sending from many goroutines
// needs more in flight, and the node writes concurrent calls' rows in one
// transaction (group commit), so calls in flight are what bounds its rate.
const DefaultAdminConnections = 4

// WithAdminConnections sets how many connections NewAdmin opens and
// spreads its calls over, round robin (default DefaultAdminConnections).
// Only NewAdmin uses it.
func WithAdminConnections(n int) Option {
	return func(c *dialConfig) { c.adminConns = n }
}

// connPool spreads calls over connections (grpc.ClientConnInterface).
type connPool struct {
	conns []*grpc.ClientConn
	next  atomic.Uint64
}

func (p *connPool) pick() *grpc.ClientConn {
	return p.conns[p.next.Add(1)%uint64(len(p.conns))]
}

func (p *connPool) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return p.pick().Invoke(ctx, method, args, reply, opts...)
}

func (p *connPool) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return p.pick().NewStream(ctx, desc, method, opts...)
}

func (p *connPool) Close() error {
	var errs []error
	for _, c := range p.conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// NewAdmin prepares an admin client for target with an API key (sent as
// "x-api-key" on every call), or, with key empty, with the TLS client
// certificate of WithClientCertificate. Options are those of Dial
// (WithTLS, say); WithToken is ignored. Like Dial it does not connect
// before the first call.
func NewAdmin(target, key string, opts ...Option) (*Admin, error) {
	cfg := dialConfig{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(&cfg)
	}
	creds := insecure.NewCredentials()
	if cfg.useTLS {
		tc := cfg.tls
		if cfg.clientCert != nil {
			tc = tc.Clone()
			if tc == nil {
				tc = &tls.Config{}
			}
			tc.Certificates = append(tc.Certificates, *cfg.clientCert)
		}
		creds = credentials.NewTLS(tc)
	}
	dialOpts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if key != "" {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(apiKey(key)))
	}
	dialOpts = append(dialOpts, cfg.dialOpts...)
	n := cfg.adminConns
	if n <= 0 {
		n = DefaultAdminConnections
	}
	pool := &connPool{}
	for range n {
		// Each client its own HTTP/2 connection (and stream quota).
		conn, err := grpc.NewClient(target, dialOpts...)
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("starling: dial %s: %w", target, err)
		}
		pool.conns = append(pool.conns, conn)
	}
	return &Admin{conns: pool, api: starlingv1.NewAdminServiceClient(pool)}, nil
}

// WithClientCertificate presents cert in the TLS handshake (and turns TLS
// on, as WithTLS(nil) when WithTLS is not given): a node with
// --admin-client-ca opens AdminService to it as the key entry whose
// cert_cn the certificate names, with no API key (NewAdmin's key "").
// Only NewAdmin uses it.
func WithClientCertificate(cert tls.Certificate) Option {
	return func(c *dialConfig) { c.useTLS, c.clientCert = true, &cert }
}

// apiKey sends the key as "x-api-key".
type apiKey string

func (k apiKey) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"x-api-key": string(k)}, nil
}

// RequireTransportSecurity is false so that plaintext loopback works; use
// WithTLS for anything that crosses a network.
func (apiKey) RequireTransportSecurity() bool { return false }

// Service is the generated AdminService client, for calls this type does
// not wrap.
func (a *Admin) Service() starlingv1.AdminServiceClient { return a.api }

// Close closes the connections.
func (a *Admin) Close() error { return a.conns.Close() }

// UpsertUser creates the user with the backend's external id (its
// Starling id is "x." + externalID) or updates its names; created tells
// which.
func (a *Admin) UpsertUser(ctx context.Context, externalID, username, displayName string) (u *starlingv1.User, created bool, err error) {
	res, err := a.api.UpsertUser(ctx, &starlingv1.UpsertUserRequest{ExternalId: externalID, Username: username, DisplayName: displayName})
	if err != nil {
		return nil, false, err
	}
	return res.GetUser(), res.GetCreated(), nil
}

// SetUserDisabled disables a user (closing its streams) or enables it.
func (a *Admin) SetUserDisabled(ctx context.Context, userID string, disabled bool) error {
	_, err := a.api.SetUserDisabled(ctx, &starlingv1.SetUserDisabledRequest{UserId: userID, Disabled: disabled})
	return err
}

// DeleteUser disables a user for good and scrubs its names.
func (a *Admin) DeleteUser(ctx context.Context, userID string) error {
	_, err := a.api.DeleteUser(ctx, &starlingv1.DeleteUserRequest{UserId: userID})
	return err
}

// IssueToken mints a token for a device of a user.
func (a *Admin) IssueToken(ctx context.Context, userID, deviceID string) (token string, expires time.Time, err error) {
	res, err := a.api.IssueToken(ctx, &starlingv1.IssueTokenRequest{UserId: userID, DeviceId: deviceID})
	if err != nil {
		return "", time.Time{}, err
	}
	return res.GetToken(), res.GetExpiresAt().AsTime(), nil
}

// RevokeTokens revokes a device's tokens (every device's when deviceID is
// empty) and closes their streams; it returns how many were revoked.
func (a *Admin) RevokeTokens(ctx context.Context, userID, deviceID string) (int, error) {
	res, err := a.api.RevokeTokens(ctx, &starlingv1.RevokeTokensRequest{UserId: userID, DeviceId: deviceID})
	return int(res.GetRevokedTokens()), err
}

// Send sends a message through the normal pipeline; req.FromUserId empty
// sends as the system sender.
func (a *Admin) Send(ctx context.Context, req *starlingv1.SendMessageRequest) (m *starlingv1.Message, duplicate bool, err error) {
	res, err := a.api.SendMessage(ctx, req)
	if err != nil {
		return nil, false, err
	}
	return res.GetMessage(), res.GetDuplicate(), nil
}

// Broadcast sends a system notice to each user; results are per user.
func (a *Admin) Broadcast(ctx context.Context, clientMsgID string, content *starlingv1.Content, userIDs ...string) ([]*starlingv1.BroadcastResult, error) {
	res, err := a.api.Broadcast(ctx, &starlingv1.BroadcastRequest{UserIds: userIDs, ClientMsgId: clientMsgID, Content: content})
	return res.GetResults(), err
}

// CreateGroup creates a group owned by ownerID.
func (a *Admin) CreateGroup(ctx context.Context, ownerID, name string, memberIDs ...string) (*starlingv1.Group, error) {
	res, err := a.api.CreateGroup(ctx, &starlingv1.AdminServiceCreateGroupRequest{OwnerId: ownerID, Name: name, MemberIds: memberIDs})
	return res.GetGroup(), err
}

// SetMembers makes a group's members exactly userIDs (and its owner).
func (a *Admin) SetMembers(ctx context.Context, groupID string, userIDs ...string) (added, removed []string, err error) {
	res, err := a.api.SetMembers(ctx, &starlingv1.SetMembersRequest{GroupId: groupID, UserIds: userIDs})
	return res.GetAddedUserIds(), res.GetRemovedUserIds(), err
}

// Presence tells which users have a device online.
func (a *Admin) Presence(ctx context.Context, userIDs ...string) (map[string]bool, error) {
	res, err := a.api.GetPresence(ctx, &starlingv1.AdminServiceGetPresenceRequest{UserIds: userIDs})
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(res.GetUsers()))
	for _, u := range res.GetUsers() {
		out[u.GetUserId()] = u.GetOnline()
	}
	return out, nil
}
