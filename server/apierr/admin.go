package apierr

import "google.golang.org/grpc/codes"

// AdminService and push tokens (server/admin).
var (
	// NoAPIKey: an AdminService call without an "x-api-key", with a key
	// the node does not know, or with a revoked one. User tokens never
	// open AdminService.
	NoAPIKey = def(codes.Unauthenticated, "AdminService needs a valid API key in the x-api-key metadata, or a client certificate of a known name")
	// BadClientCert: an AdminService call over TLS with a client
	// certificate that the node's admin CAs (--admin-client-ca) did not
	// sign, that expired, or that names no admin key entry (cert_cn).
	BadClientCert = def(codes.Unauthenticated, "the client certificate is not one AdminService accepts")
	// ScopeDenied: the API key is valid but lacks the call's scope.
	ScopeDenied = def(codes.PermissionDenied, "the API key lacks the scope of this call")
	// UserDisabled: the user was disabled by the backend.
	UserDisabled = def(codes.FailedPrecondition, "the user is disabled")
	// BadExternalID: UpsertUser's external_id is malformed.
	BadExternalID = def(codes.InvalidArgument, "external_id must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'")
	// TooManyRecipients: a Broadcast or presence query names too many users.
	TooManyRecipients = def(codes.InvalidArgument, "too many user ids in one call")
	// BadPushToken: RegisterPushToken's platform or token is malformed.
	BadPushToken = def(codes.InvalidArgument, "platform must be apns or fcm, token 1-4096 printable ASCII bytes")
)
