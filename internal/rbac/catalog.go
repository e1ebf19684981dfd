package rbac

import "slices"

// Role is a role definition: built-in or custom.
type Role struct {
	ID          string // a GUID; the wire id is Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/{ID}
	Name        string
	Description string
	BuiltIn     bool
	Permissions []Permission
	// AssignableScopes is always ["/"] in Managed HSM.
	AssignableScopes []string
}

// Permission grants DataActions except NotDataActions. Actions and
// NotActions (control-plane actions) exist on the wire and are empty for
// every Managed HSM role.
type Permission struct {
	Actions, NotActions         []string
	DataActions, NotDataActions []Action
}

// The built-in role ids, as Azure assigns them.
const (
	AdministratorID       = "a290e904-7015-4bba-90c8-60543313cdb4"
	CryptoOfficerID       = "515eb02d-2335-4d2d-92f2-b1cbdf9c3778"
	CryptoUserID          = "21dbd100-6940-42c2-9190-5d6cb909625b"
	PolicyAdministratorID = "4bd23610-cdcf-4971-bdee-bdc562cc28e4"
	CryptoAuditorID       = "2c18b078-7c48-4d3a-af88-5a3a1b3f82b3"
	ServiceEncryptionID   = "33413926-3206-4cdd-b39a-83574fe37a17"
	ServiceReleaseID      = "21dbd100-6940-42c2-9190-5d6cb909625c"
	BackupUserID          = "7b127d3c-77bd-4e3e-bbe0-dbb8971fa7f8"
	RestoreUserID         = "6efe6056-5259-49d2-8b3d-d3d73544b20b"
)

func builtIn(id, name string, actions ...Action) Role {
	return Role{ID: id, Name: name, BuiltIn: true, AssignableScopes: []string{"/"},
		Permissions: []Permission{{Actions: []string{}, NotActions: []string{}, DataActions: actions, NotDataActions: []Action{}}}}
}

var roleManagement = []Action{
	RoleAssignmentsDelete, RoleAssignmentsRead, RoleAssignmentsWrite,
	RoleDefinitionsRead, RoleDefinitionsWrite, RoleDefinitionsDelete,
}

// builtInRoles are Managed HSM's built-in roles with the exact data
// actions a real Managed HSM lists for them (shared/reference/azure-mhsm-roles.md).
// The Administrator manages roles, the security domain and backups but
// cannot use or create keys; the Crypto Officer recovers, purges and
// exports; the Crypto User does everything else with keys.
var builtInRoles = []Role{
	builtIn(AdministratorID, "Managed HSM Administrator", append(append([]Action{}, roleManagement...),
		SecurityDomainDownload, SecurityDomainDownloadRead, SecurityDomainUpload, SecurityDomainUploadRead,
		SecurityDomainTransferKey, BackupStart, RestoreStart, BackupStatus, RestoreStatus)...),
	builtIn(CryptoOfficerID, "Managed HSM Crypto Officer", append(append([]Action{}, roleManagement...),
		DeletedKeysRead, DeletedKeysPurge, DeletedKeysRecover, KeysExport)...),
	builtIn(CryptoUserID, "Managed HSM Crypto User",
		RoleDefinitionsRead, RoleAssignmentsRead, KeysRead, KeysWrite, KeysDelete, KeysCreate, KeysRotate,
		KeysImport, KeysRelease, KeysBackup, KeysRestore, KeysEncrypt, KeysDecrypt, KeysWrap, KeysUnwrap,
		KeysSign, KeysVerify, KeysDerive, RNG),
	builtIn(PolicyAdministratorID, "Managed HSM Policy Administrator", roleManagement...),
	builtIn(CryptoAuditorID, "Managed HSM Crypto Auditor", RoleAssignmentsRead, RoleDefinitionsRead, KeysRead, DeletedKeysRead),
	builtIn(ServiceEncryptionID, "Managed HSM Crypto Service Encryption User", KeysRead, KeysWrap, KeysUnwrap),
	builtIn(ServiceReleaseID, "Managed HSM Crypto Service Release User", KeysRelease),
	builtIn(BackupUserID, "Managed HSM Backup User", BackupStart, BackupStatus, KeysBackup),
	builtIn(RestoreUserID, "Managed HSM Restore User", RestoreStart, RestoreStatus, KeysRestore),
}

// BuiltInRoles returns Managed HSM's built-in roles, a copy the caller
// may change.
func BuiltInRoles() []Role {
	out := make([]Role, len(builtInRoles))
	for i := range builtInRoles {
		out[i] = builtInRoles[i].clone()
	}
	return out
}

// clone returns a copy of r that shares no slice with it.
func (r Role) clone() Role {
	r.AssignableScopes = slices.Clone(r.AssignableScopes)
	if r.Permissions != nil {
		ps := make([]Permission, len(r.Permissions))
		for i, p := range r.Permissions {
			ps[i] = Permission{Actions: slices.Clone(p.Actions), NotActions: slices.Clone(p.NotActions),
				DataActions: slices.Clone(p.DataActions), NotDataActions: slices.Clone(p.NotDataActions)}
		}
		r.Permissions = ps
	}
	return r
}

// roleAliases are the names Azure's documentation uses for built-ins whose
// service name differs; lookups by name accept them too.
var roleAliases = map[string]string{
	"managed hsm backup":                    BackupUserID,
	"managed hsm restore":                   RestoreUserID,
	"managed hsm crypto service encryption": ServiceEncryptionID,
	"managed hsm crypto service release":    ServiceReleaseID,
}

func builtInByID(id string) (Role, bool) {
	for _, r := range builtInRoles {
		if equalFold(r.ID, id) {
			return r, true
		}
	}
	return Role{}, false
}
