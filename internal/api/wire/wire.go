// Package wire declares the JSON shapes of Azure's role definitions and
// role assignments, as the data plane (Managed HSM local RBAC) and ARM
// (Microsoft.Authorization) send and accept them. The handlers and the
// CLI both use these types, so the two ends cannot drift apart.
//
// Field names and omitempty choices are Azure's wire format: changing one
// changes what clients see.
package wire

// RoleDefinition is a role definition on either plane.
type RoleDefinition struct {
	ID         string                   `json:"id"`
	Name       string                   `json:"name"` // the role's GUID
	Type       string                   `json:"type"`
	Properties RoleDefinitionProperties `json:"properties"`
}

// RoleDefinitionProperties are a role definition's properties. Type is
// "BuiltInRole" or "CustomRole".
type RoleDefinitionProperties struct {
	RoleName         string       `json:"roleName"`
	Description      string       `json:"description"`
	Type             string       `json:"type"`
	Permissions      []Permission `json:"permissions"`
	AssignableScopes []string     `json:"assignableScopes"`
}

// Permission is one permission block. Azure sends every list, empty
// rather than null.
type Permission struct {
	Actions        []string `json:"actions"`
	NotActions     []string `json:"notActions"`
	DataActions    []string `json:"dataActions"`
	NotDataActions []string `json:"notDataActions"`
}

// RoleDefinitionCreate is the body of a data-plane role definition PUT.
type RoleDefinitionCreate struct {
	Properties *RoleDefinitionProperties `json:"properties"`
}

// RoleAssignment is a data-plane (Managed HSM) role assignment.
type RoleAssignment struct {
	ID         string                   `json:"id"`
	Name       string                   `json:"name"`
	Type       string                   `json:"type"`
	Properties RoleAssignmentProperties `json:"properties"`
}

// RoleAssignmentProperties are a data-plane assignment's properties;
// Scope is "/", "/keys" or "/keys/{name}".
type RoleAssignmentProperties struct {
	Scope            string `json:"scope,omitempty"`
	RoleDefinitionID string `json:"roleDefinitionId"`
	PrincipalID      string `json:"principalId"`
}

// RoleAssignmentCreate is the body of a data-plane role assignment PUT.
type RoleAssignmentCreate struct {
	Properties *RoleAssignmentProperties `json:"properties"`
}

// ARMRoleAssignment is a control-plane (Microsoft.Authorization) role
// assignment.
type ARMRoleAssignment struct {
	ID         string                      `json:"id"`
	Name       string                      `json:"name"`
	Type       string                      `json:"type"`
	Properties ARMRoleAssignmentProperties `json:"properties"`
}

// ARMRoleAssignmentProperties are a control-plane assignment's
// properties; CreatedOn is RFC 3339.
type ARMRoleAssignmentProperties struct {
	RoleDefinitionID string `json:"roleDefinitionId"`
	PrincipalID      string `json:"principalId"`
	PrincipalType    string `json:"principalType"`
	Scope            string `json:"scope"`
	CreatedOn        string `json:"createdOn"`
}

// ARMRoleAssignmentCreate is the body of a control-plane role assignment
// PUT.
type ARMRoleAssignmentCreate struct {
	Properties struct {
		RoleDefinitionID string `json:"roleDefinitionId"`
		PrincipalID      string `json:"principalId"`
		PrincipalType    string `json:"principalType"`
	} `json:"properties"`
}
