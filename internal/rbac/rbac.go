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
)

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

// Denied returns ErrDenied for req.
func Denied(req Request) error {
	return ErrDenied.With("Not authorized to access %s on %s", req.Action, req.Scope)
}

// InitialAdmins allows everything to the HSM's initial administrators
// (directly or through a group) and nothing to anyone else. It is the rule
// until role assignments exist.
type InitialAdmins struct {
	Dir *identity.Directory
}

// Authorize implements Authorizer.
func (a InitialAdmins) Authorize(ctx context.Context, req Request) error {
	if req.Caller == nil {
		return Denied(req)
	}
	if slices.Contains(req.HSM.Admins, req.Caller.ObjectID) {
		return nil
	}
	groups, err := a.Dir.GroupsOf(ctx, req.Caller.ObjectID)
	if err != nil {
		return err
	}
	for _, g := range groups {
		if slices.Contains(req.HSM.Admins, g) {
			return nil
		}
	}
	return Denied(req)
}
