// Package store is the persistence boundary of Keyward.
//
// Every state change runs inside one transaction opened by Store.Update, so
// a lifecycle step (a rotation, a soft delete) is applied whole or not at
// all, and is durable once Update returns nil. Records here are plain data:
// the domain packages own their meaning, encode their own opaque fields
// (sealed key material, rotation policies) and never see SQL.
//
// The embedded implementation is store/sqlite; store/postgres satisfies
// the same interfaces on PostgreSQL, with a schema of the same meaning.
// Both pass store/storetest.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/keyward/keyward/internal/fault"
)

// ErrNotFound is returned when a looked-up record does not exist, and by
// the Update… and Delete… methods when there is nothing to change.
var ErrNotFound = errors.New("store: not found")

// ErrUnavailable is returned when the store cannot be reached (a
// database server down or cut off); the request may be retried later.
var ErrUnavailable = fault.New(fault.Unavailable, "ServiceUnavailable", "the service cannot reach its database; retry later")

// Stats are a store's figures for the metrics: its connection pool and,
// for a store shared by nodes, the other nodes' change notifications.
type Stats struct {
	OpenConns, InUseConns, IdleConns int
	// Waits counts acquisitions that had to wait for a connection.
	Waits int64
	// Notifications counts the other nodes' change notifications received;
	// NotificationLag is the delay of the last one (commit to receipt, as
	// far as the nodes' clocks agree). Listening is false while a shared
	// store cannot hear other nodes (the caches are then dropped).
	Notifications   uint64
	NotificationLag time.Duration
	Listening       bool
}

// Clock is a store whose server keeps time for the nodes that share it:
// they compare their own clocks with it (leases are judged by the nodes'
// clocks).
type Clock interface {
	DatabaseTime(ctx context.Context) (time.Time, error)
}

// StatsReporter is a store that reports Stats.
type StatsReporter interface {
	Stats() Stats
}

// ErrConflict is returned when an insert collides with an existing record
// (a taken id or unique name), or a write names a record that must exist
// first and does not (a member of an unknown group, a version of an unknown
// key).
var ErrConflict = errors.New("store: conflict")

// The contract every implementation keeps, which store/storetest checks:
//
//   - Errors: the cases above, wrapped so that errors.Is finds them; any
//     other error is a failure of the store itself. A method that returns
//     an error inside Update leaves the transaction usable, and the caller
//     decides whether to go on or to return the error (which rolls back).
//   - Case: names that Azure treats without regard to case are compared
//     and kept unique without it: HSM names, key names, role definition
//     and assignment ids, role scopes, diagnostic setting and storage
//     account names, user principal names and object ids (kept lower-case).
//     A record keeps the spelling it was created with. Everything else
//     (principal ids, app ids, versions, meta keys) is compared exactly.
//   - Order: every List method returns its records in the order its
//     comment gives, so that pages and outputs are stable.
//   - Empty: a List method that finds nothing returns an empty (possibly
//     nil) slice and no error.
//   - Changes: each committed write is delivered to the subscribers as a
//     Change, after the commit and before Update returns; a rolled-back
//     transaction delivers nothing.

// Store opens transactions.
type Store interface {
	// Update runs fn in a read-write transaction and commits it when fn
	// returns nil. Writers are serialised.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only transaction that sees one snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Subscribe calls fn with what each later Update committed, before
	// that Update returns (see Hub.Subscribe); the result unsubscribes.
	Subscribe(fn func([]Change)) (cancel func())
	Close() error
}

// Tx is one transaction. Its methods must not be used after fn returns.
type Tx interface {
	Node
	Directory
	HSMs
	Keys
	RBAC
	Diagnostics
	Objects
	Leases
	Jobs
	SignIns
}

// NodeSettings are the node-wide ids and settings: one record per store,
// created with the schema, whose fields start empty and are filled on
// first start.
type NodeSettings struct {
	TenantID       string
	SubscriptionID string
	// Seal is the kind of node seal ("file", "pkcs11") the data was sealed
	// with; a start with another kind is refused.
	Seal string
	// SecretPepper (the key client secrets are hashed under) and
	// CheckpointKey (the audit checkpoints' Ed25519 seed) are sealed by the
	// node seal.
	SecretPepper  []byte
	CheckpointKey []byte
	// BootstrapAdmin is the id of the principal the first start created.
	BootstrapAdmin string
	// ControlPlaneSeeded is set once the default resource group and the
	// bootstrap principal's Owner assignment exist.
	ControlPlaneSeeded bool
}

// Node is the node-settings part of a transaction.
type Node interface {
	// GetNode returns the node settings. It never returns ErrNotFound:
	// fields never set are zero.
	GetNode(ctx context.Context) (*NodeSettings, error)
	// UpdateNode replaces every node setting, so the caller reads them
	// with GetNode in the same transaction first (writers are serialised:
	// nothing another transaction set is lost). It publishes ChangeNode
	// with ID "".
	UpdateNode(ctx context.Context, n *NodeSettings) error
}

// Principal kinds.
const (
	KindUser             = "user"
	KindGroup            = "group"
	KindServicePrincipal = "servicePrincipal"
	KindManagedIdentity  = "managedIdentity"
)

// Principal is a directory object: a user, a group, a service principal or
// a managed identity.
type Principal struct {
	ID           string
	Kind         string
	DisplayName  string
	AppID        string // service principals and managed identities
	UPN          string // users
	MailNickname string // groups
	PasswordHash string // users; an encoded salted hash
	// DirectoryRoles are tenant-wide roles such as "Global Administrator".
	DirectoryRoles []string
	Created        time.Time
}

// Credential is a client secret of a service principal, kept as a hash.
type Credential struct {
	ID          string
	PrincipalID string
	DisplayName string
	Hash        string
	Hint        string // the first characters, as Entra shows them
	Created     time.Time
	Expires     time.Time
}

// TokenKey is a token-signing key, sealed by the node seal.
type TokenKey struct {
	ID      string
	Sealed  []byte
	Created time.Time
}

// Authenticator is a user's TOTP authenticator (RFC 6238). The secret is
// sealed by the node seal.
type Authenticator struct {
	ID          string
	PrincipalID string
	Sealed      []byte
	// Confirmed is set once a code from the authenticator was accepted;
	// before that it does not count as a second factor.
	Confirmed bool
	// LastStep is the last time step (Unix time / 30 s) whose code was
	// accepted: a code of that step or an earlier one is a replay.
	LastStep int64
	Created  time.Time
}

// RefreshToken is a refresh token issued at a user's sign-in, kept as a
// hash. AMR and AuthTime are the sign-in's, carried to every access token
// it gets.
type RefreshToken struct {
	ID          string
	PrincipalID string
	Hash        string
	AMR         []string
	AuthTime    time.Time
	Expires     time.Time
}

// SignIns is the part of a transaction that holds users' authenticators
// and refresh tokens. Both go with their principal when it is deleted.
type SignIns interface {
	// PutAuthenticator adds or replaces the user's authenticator;
	// ErrConflict for an unknown principal.
	PutAuthenticator(ctx context.Context, a *Authenticator) error
	// GetAuthenticator returns the user's authenticator; ErrNotFound if none.
	GetAuthenticator(ctx context.Context, principalID string) (*Authenticator, error)
	// DeleteAuthenticator removes the user's authenticator; ErrNotFound if none.
	DeleteAuthenticator(ctx context.Context, principalID string) error
	// InsertRefreshToken adds a refresh token; ErrConflict for a taken id
	// or an unknown principal.
	InsertRefreshToken(ctx context.Context, t *RefreshToken) error
	// GetRefreshToken finds a refresh token by id; ErrNotFound if none.
	GetRefreshToken(ctx context.Context, id string) (*RefreshToken, error)
	// DeleteRefreshToken removes a refresh token; ErrNotFound if none.
	DeleteRefreshToken(ctx context.Context, id string) error
	// DeleteRefreshTokens removes every refresh token of a principal, and
	// those expired before a time (zero: none), returning how many.
	DeleteRefreshTokens(ctx context.Context, principalID string, expiredBefore time.Time) (int, error)
}

// Membership is a direct membership of a group, which counts from Since
// until Until; zero bounds are none (a membership added with AddMember
// has neither).
type Membership struct {
	GroupID  string
	MemberID string
	Since    time.Time
	Until    time.Time
}

// CountsAt reports whether the membership counts at t.
func (m Membership) CountsAt(t time.Time) bool {
	return (m.Since.IsZero() || !t.Before(m.Since)) && (m.Until.IsZero() || t.Before(m.Until))
}

// Directory is the directory part of a transaction.
type Directory interface {
	// InsertPrincipal adds a principal; a taken id, app id or user
	// principal name (without regard to case) is ErrConflict.
	InsertPrincipal(ctx context.Context, p *Principal) error
	// GetPrincipal finds a principal by id; ErrNotFound if none.
	GetPrincipal(ctx context.Context, id string) (*Principal, error)
	// PrincipalByAppID finds a principal by exact app id; ErrNotFound if none.
	PrincipalByAppID(ctx context.Context, appID string) (*Principal, error)
	// PrincipalByUPN finds a user by name, ignoring case; ErrNotFound if none.
	PrincipalByUPN(ctx context.Context, upn string) (*Principal, error)
	// ListPrincipals lists principals of one kind, ordered by display name
	// then id.
	ListPrincipals(ctx context.Context, kind string) ([]*Principal, error)
	// DeletePrincipal removes a principal with its credentials and
	// memberships (either side); ErrNotFound if none.
	DeletePrincipal(ctx context.Context, id string) error
	// SetDirectoryRoles replaces a principal's directory roles;
	// ErrNotFound if there is no such principal.
	SetDirectoryRoles(ctx context.Context, id string, roles []string) error

	// AddMember adds a direct member; ErrConflict if it is one already, or
	// if either principal does not exist.
	AddMember(ctx context.Context, groupID, memberID string) error
	// RemoveMember removes a direct member; ErrNotFound if it is not one.
	RemoveMember(ctx context.Context, groupID, memberID string) error
	// Members lists a group's direct members' ids, in id order.
	Members(ctx context.Context, groupID string) ([]string, error)
	// GroupsOf lists the groups that list memberID directly, in id order.
	GroupsOf(ctx context.Context, memberID string) ([]string, error)
	// Members and GroupsOf list every direct membership, bounded or not:
	// the directory judges windows by its clock.

	// PutMembership adds a direct member whose membership counts only in
	// [Since, Until) (a zero bound is no bound), or replaces the window of
	// an existing membership; ErrConflict if either principal does not
	// exist. PIM activations make such memberships.
	PutMembership(ctx context.Context, m *Membership) error
	// Memberships lists memberID's direct memberships, in group id order.
	Memberships(ctx context.Context, memberID string) ([]Membership, error)
	// GroupMemberships lists a group's direct memberships, in member id
	// order.
	GroupMemberships(ctx context.Context, groupID string) ([]Membership, error)

	// InsertCredential adds a secret; ErrConflict for a taken id or an
	// unknown principal.
	InsertCredential(ctx context.Context, c *Credential) error
	// Credentials lists a principal's secrets, oldest first.
	Credentials(ctx context.Context, principalID string) ([]*Credential, error)
	// DeleteCredential removes a secret; ErrNotFound if none.
	DeleteCredential(ctx context.Context, id string) error

	// InsertTokenKey adds a signing key; ErrConflict for a taken id.
	InsertTokenKey(ctx context.Context, k *TokenKey) error
	// TokenKeys lists the signing keys, newest first (then by id).
	TokenKeys(ctx context.Context) ([]*TokenKey, error)
}

// HSM is one Managed HSM pool.
type HSM struct {
	ID       string
	Name     string
	State    string
	DomainID string
	// DomainKey is the HSM's domain key, sealed by the node seal.
	DomainKey       []byte
	Admins          []string
	RetentionDays   int
	PurgeProtection bool
	Created         time.Time
	ResourceGroup   string
	Location        string
	Tags            map[string]string
	// Deleted is set while the HSM is soft-deleted.
	Deleted time.Time
	// ExchangeKey (sealed by the node seal) and ExchangeCert are the
	// security-domain transfer key of an HSM waiting for an upload.
	ExchangeKey  []byte
	ExchangeCert []byte
}

// HSMs is the HSM part of a transaction.
type HSMs interface {
	// InsertHSM adds an HSM; a name taken without regard to case is
	// ErrConflict.
	InsertHSM(ctx context.Context, h *HSM) error
	// GetHSM finds an HSM by name, ignoring case; the record carries the
	// name as created. ErrNotFound if none.
	GetHSM(ctx context.Context, name string) (*HSM, error)
	// ListHSMs lists every HSM, soft-deleted ones included, by name.
	ListHSMs(ctx context.Context) ([]*HSM, error)
	// UpdateHSM changes an HSM's state, security domain, exchange key, tags
	// and deletion time; h.Name is the name as stored (from GetHSM).
	// ErrNotFound if none.
	UpdateHSM(ctx context.Context, h *HSM) error
	// DeleteHSM removes an HSM (named without regard to case) with its
	// keys, roles and diagnostic settings; ErrNotFound if none.
	DeleteHSM(ctx context.Context, name string) error
	// RolesSeeded reports whether the HSM's initial role assignments were
	// made (SetRolesSeeded); ErrNotFound if there is no such HSM. A new
	// HSM has not.
	RolesSeeded(ctx context.Context, name string) (bool, error)
	// SetRolesSeeded records that the HSM's initial role assignments were
	// made; ErrNotFound if there is no such HSM. It publishes ChangeHSM.
	SetRolesSeeded(ctx context.Context, name string) error
}

// Key is a named key of an HSM: what is common to all its versions.
type Key struct {
	HSM            string
	Name           string
	Created        time.Time
	Deleted        time.Time // zero while the key is live
	ScheduledPurge time.Time
	RotationPolicy []byte // owned by the keys package
}

// KeyVersion is one version of a key. Public and Sealed are opaque here.
type KeyVersion struct {
	HSM     string
	Name    string
	Version string
	Seq     int64 // orders versions; the highest is the latest
	Kty     string
	Ops     []string
	Enabled bool
	// NotBefore and Expires are zero when unset.
	NotBefore  time.Time
	Expires    time.Time
	Created    time.Time
	Updated    time.Time
	Tags       map[string]string
	Exportable bool
	// ReleasePolicy is the version's secure key release policy, owned by
	// the keys package; empty for none.
	ReleasePolicy []byte
	Public        []byte
	Sealed        []byte
}

// KeyListItem is a key with its latest version.
type KeyListItem struct {
	Key    Key
	Latest KeyVersion
}

// Keys is the key part of a transaction.
//
// Key names are compared without regard to case; hsm is the HSM's name as
// stored. A key with no version is not listed by ListKeys.
type Keys interface {
	// GetKey finds a key, live or deleted; ErrNotFound if none.
	GetKey(ctx context.Context, hsm, name string) (*Key, error)
	// PutKey inserts the key row, or replaces its deletion times and
	// rotation policy (the stored name and creation time stay).
	PutKey(ctx context.Context, k *Key) error
	// PurgeKey removes the key and all of its versions; ErrNotFound if none.
	PurgeKey(ctx context.Context, hsm, name string) error
	// ListKeys lists the live (deleted false) or deleted keys named after
	// `after` (without regard to case), with their latest versions, in name
	// order without regard to case, at most limit of them.
	ListKeys(ctx context.Context, hsm string, deleted bool, after string, limit int) ([]KeyListItem, error)

	// InsertKeyVersion adds a version; ErrConflict for a taken version id
	// or sequence number, or a key row that does not exist.
	InsertKeyVersion(ctx context.Context, v *KeyVersion) error
	// UpdateKeyVersion changes a version's ops, enabled, nbf, exp, updated,
	// release policy
	// and tags; ErrNotFound if none.
	UpdateKeyVersion(ctx context.Context, v *KeyVersion) error
	// GetKeyVersion finds a version by its exact id; ErrNotFound if none.
	GetKeyVersion(ctx context.Context, hsm, name, version string) (*KeyVersion, error)
	// LatestKeyVersion returns the version with the highest sequence
	// number; ErrNotFound if the key has none.
	LatestKeyVersion(ctx context.Context, hsm, name string) (*KeyVersion, error)
	// ListKeyVersions lists versions in creation order, from the one after
	// seq `after` on, at most limit of them.
	ListKeyVersions(ctx context.Context, hsm, name string, after int64, limit int) ([]KeyVersion, error)
	// NoteNearExpiry records that the near-expiry notice of a version went
	// out at `at`, unless one was recorded before, and reports whether
	// this call recorded it (so that each version is notified once);
	// ErrNotFound if there is no such version. It publishes ChangeKey.
	NoteNearExpiry(ctx context.Context, hsm, name, version string, at time.Time) (bool, error)
}

// Permission is one permission block of a role definition.
type Permission struct {
	Actions        []string `json:"actions"`
	NotActions     []string `json:"notActions"`
	DataActions    []string `json:"dataActions"`
	NotDataActions []string `json:"notDataActions"`
}

// RoleDefinition is a custom role of an HSM. Built-in roles are not
// stored: they are data in the rbac package.
type RoleDefinition struct {
	HSM              string
	ID               string // a GUID
	Name             string
	Description      string
	Permissions      []Permission
	AssignableScopes []string
	Created          time.Time
	Updated          time.Time
}

// RoleAssignment grants a role to a principal at a scope of an HSM.
type RoleAssignment struct {
	HSM              string
	ID               string // a GUID
	Scope            string // "/", "/keys" or "/keys/{name}"
	RoleDefinitionID string // a GUID
	PrincipalID      string
	Created          time.Time
	// Start and End bound when the assignment counts; zero means no bound.
	// Just-in-time activations set them.
	Start time.Time
	End   time.Time
	// Source says where the assignment came from: "direct", or a PIM
	// activation's request id.
	Source string
	// CreatedBy is the object id of the principal that made the
	// assignment ("" for the service itself, or before it was recorded).
	CreatedBy string
}

// RBAC is the role part of a transaction.
//
// Ids are compared without regard to case; hsm is the HSM's name as stored.
type RBAC interface {
	// PutRoleDefinition inserts or replaces a custom role.
	PutRoleDefinition(ctx context.Context, d *RoleDefinition) error
	// GetRoleDefinition finds a custom role; ErrNotFound if none.
	GetRoleDefinition(ctx context.Context, hsm, id string) (*RoleDefinition, error)
	// ListRoleDefinitions lists an HSM's custom roles by name, then id.
	ListRoleDefinitions(ctx context.Context, hsm string) ([]*RoleDefinition, error)
	// DeleteRoleDefinition removes a custom role; ErrNotFound if none.
	DeleteRoleDefinition(ctx context.Context, hsm, id string) error

	// InsertRoleAssignment adds an assignment; ErrConflict for a taken id.
	// Duplicate grants are the caller's to refuse.
	InsertRoleAssignment(ctx context.Context, a *RoleAssignment) error
	// GetRoleAssignment finds an assignment; ErrNotFound if none.
	GetRoleAssignment(ctx context.Context, hsm, id string) (*RoleAssignment, error)
	// ListRoleAssignments lists every assignment of an HSM, oldest first,
	// then by id.
	ListRoleAssignments(ctx context.Context, hsm string) ([]*RoleAssignment, error)
	// ListRoleAssignmentsAt lists an HSM's assignments at any of scopes
	// (compared without regard to case), oldest first, then by id: the
	// few a new assignment is checked against, without reading them all.
	ListRoleAssignmentsAt(ctx context.Context, hsm string, scopes ...string) ([]*RoleAssignment, error)
	// DeleteRoleAssignment removes an assignment; ErrNotFound if none.
	DeleteRoleAssignment(ctx context.Context, hsm, id string) error
}

// StorageAccount is a blob storage account registered with the server, so
// that diagnostic settings can send logs to it.
type StorageAccount struct {
	Name          string
	ResourceGroup string
	BlobEndpoint  string
	// CredentialKind is "key" (shared key) or "sas"; Secret, sealed by the
	// node seal, is the account key or the SAS token.
	CredentialKind string
	Secret         []byte
	Created        time.Time
}

// DiagnosticSetting sends an HSM's AuditEvent logs to a storage account.
type DiagnosticSetting struct {
	HSM            string
	Name           string
	StorageAccount string
	Enabled        bool
	// Created is when the setting was last put: a setting delivers the
	// records written after it (a put replaces its delivery).
	Created time.Time
}

// Diagnostics is the logging-configuration part of a transaction.
type Diagnostics interface {
	// PutStorageAccount inserts an account or updates it in its own
	// resource group; an account of another group is ErrConflict, never
	// moved. Names are unique without regard to case.
	PutStorageAccount(ctx context.Context, a *StorageAccount) error
	// GetStorageAccount finds an account, ignoring case; ErrNotFound if none.
	GetStorageAccount(ctx context.Context, name string) (*StorageAccount, error)
	// ListStorageAccounts lists every account by name.
	ListStorageAccounts(ctx context.Context) ([]*StorageAccount, error)
	// DeleteStorageAccount removes an account; ErrNotFound if none.
	DeleteStorageAccount(ctx context.Context, name string) error

	// PutDiagnosticSetting inserts or replaces a setting (names without
	// regard to case).
	PutDiagnosticSetting(ctx context.Context, d *DiagnosticSetting) error
	// GetDiagnosticSetting finds a setting; ErrNotFound if none.
	GetDiagnosticSetting(ctx context.Context, hsm, name string) (*DiagnosticSetting, error)
	// ListDiagnosticSettings lists an HSM's settings, or every HSM's with
	// hsm "", by HSM then name.
	ListDiagnosticSettings(ctx context.Context, hsm string) ([]*DiagnosticSetting, error)
	// DeleteDiagnosticSetting removes a setting; ErrNotFound if none.
	DeleteDiagnosticSetting(ctx context.Context, hsm, name string) error

	// ShipperCursor returns the audit sequence number up to which the logs
	// of setting (of hsm; both without regard to case) were delivered;
	// ErrNotFound if none was saved. Deleting the setting or its HSM
	// leaves the cursor.
	ShipperCursor(ctx context.Context, hsm, setting string) (uint64, error)
	// SetShipperCursor inserts or replaces a delivery cursor. It publishes
	// ChangeNode with the HSM and the setting's name.
	SetShipperCursor(ctx context.Context, hsm, setting string, delivered uint64) error
}

// Object is a control-plane record kept as a JSON document: resource
// groups, control-plane role assignments, managed identities, federated
// credentials. Its owner package defines Data.
type Object struct {
	Kind string
	ID   string // lower-case ARM id, unique within the kind
	Data []byte
}

// Objects is the document part of a transaction.
//
// Ids are kept lower-case: they are ARM ids, which Azure compares without
// regard to case.
type Objects interface {
	// PutObject inserts or replaces an object.
	PutObject(ctx context.Context, o *Object) error
	// GetObject finds an object; ErrNotFound if none.
	GetObject(ctx context.Context, kind, id string) (*Object, error)
	// ListObjects lists a kind's objects whose id starts with prefix
	// (without regard to case), in id order.
	ListObjects(ctx context.Context, kind, prefix string) ([]*Object, error)
	// DeleteObject removes an object; ErrNotFound if none.
	DeleteObject(ctx context.Context, kind, id string) error
}

// Leases is the lease part of a transaction. Background work that must run
// on one node at a time (key rotation, later PIM expiry) holds a named
// lease while it runs, and renews it before it expires. On SQLite the one
// node always gets it; with PostgreSQL the nodes compete for it.
type Leases interface {
	// TakeLease gives the lease name to holder until now+ttl when it is
	// free, expired or already holder's, and reports whether holder has
	// it. Another holder's live lease is left alone (false, nil).
	TakeLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error)
	// ReleaseLease frees holder's lease name; a lease that another holder
	// took meanwhile, or no lease, is left as it is (nil).
	ReleaseLease(ctx context.Context, name, holder string) error
}

// TakeLease takes or renews a lease in its own transaction (see
// Leases.TakeLease).
func TakeLease(ctx context.Context, s Store, name, holder string, now time.Time, ttl time.Duration) (held bool, err error) {
	err = s.Update(ctx, func(tx Tx) (err error) {
		held, err = tx.TakeLease(ctx, name, holder, now, ttl)
		return err
	})
	return held, err
}

// Job is a backup or restore job of an HSM. Its status lives here, not in
// the memory of the node running it, so it survives a restart and any
// node can report it.
type Job struct {
	ID        string
	HSM       string
	Kind      string // "backup", "restore", …: the owner's words
	Status    string // the owner's; "InProgress" while it runs
	Details   string
	FolderURI string
	// ErrorKind, ErrorCode and ErrorMessage describe a failure (a
	// fault.Kind, Azure's error code and the client-safe message).
	ErrorKind    string
	ErrorCode    string
	ErrorMessage string
	Start        time.Time
	End          time.Time
	// Node names the cluster node that runs the job ("" before nodes
	// had names).
	Node string
}

// JobRunning is the Status of a job that has not ended.
const JobRunning = "InProgress"

// Jobs is the job part of a transaction.
type Jobs interface {
	// InsertJob adds a job; ErrConflict for a taken id.
	InsertJob(ctx context.Context, j *Job) error
	// UpdateJob replaces a job's status, details, folder, error and end;
	// ErrNotFound if none.
	UpdateJob(ctx context.Context, j *Job) error
	// GetJob finds a job of hsm (named as stored) by its exact id;
	// ErrNotFound if none, or if the job is another HSM's.
	GetJob(ctx context.Context, hsm, id string) (*Job, error)
	// RunningJobs lists the jobs whose Status is JobRunning, of one HSM
	// or, with hsm "", of all, oldest first.
	RunningJobs(ctx context.Context, hsm string) ([]*Job, error)
}
