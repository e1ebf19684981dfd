// Package rbac decides whether a caller may perform a data action on a
// scope of an HSM.
//
// Every data-plane operation declares one Managed HSM data action (the
// strings of Azure's local RBAC, such as
// "Microsoft.KeyVault/managedHsm/keys/sign/action") and the scope it acts
// on ("/", "/keys" or "/keys/{name}"). An Authorizer answers allow or deny;
// anything it does not allow is denied.
package rbac

import (
	"context"
	"slices"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
)

// Action is a Managed HSM data action.
type Action string

const prefix = "Microsoft.KeyVault/managedHsm/"

// The data actions of Managed HSM local RBAC.
const (
	KeysRead           Action = prefix + "keys/read/action"
	KeysWrite          Action = prefix + "keys/write/action"
	KeysCreate         Action = prefix + "keys/create"
	KeysDelete         Action = prefix + "keys/delete"
	KeysImport         Action = prefix + "keys/import/action"
	KeysRotate         Action = prefix + "keys/rotate/action"
	KeysBackup         Action = prefix + "keys/backup/action"
	KeysRestore        Action = prefix + "keys/restore/action"
	KeysEncrypt        Action = prefix + "keys/encrypt/action"
	KeysDecrypt        Action = prefix + "keys/decrypt/action"
	KeysWrap           Action = prefix + "keys/wrap/action"
	KeysUnwrap         Action = prefix + "keys/unwrap/action"
	KeysSign           Action = prefix + "keys/sign/action"
	KeysVerify         Action = prefix + "keys/verify/action"
	KeysRelease        Action = prefix + "keys/release/action"
	KeysExport         Action = prefix + "keys/export/action"
	KeysDerive         Action = prefix + "keys/derive/action"
	DeletedKeysRead    Action = prefix + "keys/deletedKeys/read/action"
	DeletedKeysRecover Action = prefix + "keys/deletedKeys/recover/action"
	DeletedKeysPurge   Action = prefix + "keys/deletedKeys/delete"
	RNG                Action = prefix + "rng/action"

	RoleAssignmentsRead   Action = prefix + "roleAssignments/read/action"
	RoleAssignmentsWrite  Action = prefix + "roleAssignments/write/action"
	RoleAssignmentsDelete Action = prefix + "roleAssignments/delete/action"
	RoleDefinitionsRead   Action = prefix + "roleDefinitions/read/action"
	RoleDefinitionsWrite  Action = prefix + "roleDefinitions/write/action"
	RoleDefinitionsDelete Action = prefix + "roleDefinitions/delete/action"

	SecurityDomainDownload     Action = prefix + "securitydomain/download/action"
	SecurityDomainDownloadRead Action = prefix + "securitydomain/download/read"
	SecurityDomainUpload       Action = prefix + "securitydomain/upload/action"
	SecurityDomainUploadRead   Action = prefix + "securitydomain/upload/read"
	SecurityDomainTransferKey  Action = prefix + "securitydomain/transferkey/read"

	BackupStart   Action = prefix + "backup/start/action"
	BackupStatus  Action = prefix + "backup/status/action"
	RestoreStart  Action = prefix + "restore/start/action"
	RestoreStatus Action = prefix + "restore/status/action"
)

// actions is the vocabulary of data actions: the DataAction enum of the
// 2025-07-01 RBAC API plus the two that built-in roles use beyond it
// (rotate and derive). Custom roles may name only these, or wildcards
// that match some of them.
var actions = []Action{
	KeysRead, KeysWrite, KeysCreate, KeysDelete, KeysImport, KeysRotate, KeysBackup, KeysRestore,
	KeysEncrypt, KeysDecrypt, KeysWrap, KeysUnwrap, KeysSign, KeysVerify, KeysRelease, KeysExport, KeysDerive,
	DeletedKeysRead, DeletedKeysRecover, DeletedKeysPurge, RNG,
	RoleAssignmentsRead, RoleAssignmentsWrite, RoleAssignmentsDelete,
	RoleDefinitionsRead, RoleDefinitionsWrite, RoleDefinitionsDelete,
	SecurityDomainDownload, SecurityDomainDownloadRead, SecurityDomainUpload, SecurityDomainUploadRead, SecurityDomainTransferKey,
	BackupStart, BackupStatus, RestoreStart, RestoreStatus,
}

// Actions returns the vocabulary of data actions (a copy): the
// DataAction enum of the 2025-07-01 RBAC API plus rotate and derive,
// which built-in roles use beyond it. Custom roles may name only these,
// or wildcards that match some of them.
func Actions() []Action { return slices.Clone(actions) }

// IsAction reports whether a is one of the data actions.
func IsAction(a Action) bool { return slices.Contains(actions, a) }

// Request is one authorization question.
type Request struct {
	HSM    *domain.HSM
	Caller *identity.Caller
	Action Action
	Scope  string
}

// Authorizer decides requests. Implementations deny whatever they do not
// explicitly allow.
type Authorizer interface {
	Authorize(ctx context.Context, req Request) error
}

// ErrDenied is the local-RBAC refusal; returned errors carry the action
// and scope in Azure's message form.
var ErrDenied = fault.New(fault.Forbidden, "AccessDenied", "not authorized")

// Denied returns ErrDenied for req, naming the action, the scope and the
// caller as Azure's message does.
func Denied(req Request) error {
	who := "an anonymous caller"
	if req.Caller != nil {
		who = req.Caller.ObjectID
	}
	return ErrDenied.With("Not authorized to access %s on %s (caller %s)", req.Action, req.Scope, who)
}
