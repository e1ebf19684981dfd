// Package armrbac is Azure RBAC for the control plane: built-in roles with
// actions and notActions, role assignments at scopes of the resource tree
// (/subscriptions/{s}[/resourceGroups/{rg}[/providers/{ns}/{type}/{name}]])
// that apply to everything below them, and the decision. It shares nothing
// with the HSMs' local RBAC: a control-plane role grants no data action,
// and a data-plane role no control-plane action.
package armrbac

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/rbac"
	"github.com/keyward/keyward/internal/store"
)

// Role is a control-plane role definition.
type Role struct {
	ID, Name, Description string
	Actions, NotActions   []string
}

// The built-in roles, with Azure's ids.
const (
	OwnerID                 = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
	ContributorID           = "b24988ac-6180-42a0-ab88-20f7382dd24c"
	ReaderID                = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
	UserAccessAdminID       = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
	ManagedHSMContributorID = "18500a29-7fe2-46b2-a342-b16a415e101d"
)

// builtInRoles are Azure's general roles and Managed HSM contributor.
// Managed HSM contributor also gets diagnostic settings, so that the
// security team of the seed story can turn on logging for its HSMs.
var builtInRoles = []Role{
	{ID: OwnerID, Name: "Owner", Description: "Grants full access to manage all resources, including the ability to assign roles.",
		Actions: []string{"*"}},
	{ID: ContributorID, Name: "Contributor", Description: "Grants full access to manage all resources, but does not allow you to assign roles.",
		Actions: []string{"*"}, NotActions: []string{"Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write", "Microsoft.Authorization/elevateAccess/Action"}},
	{ID: ReaderID, Name: "Reader", Description: "View all resources, but does not allow you to make any changes.",
		Actions: []string{"*/read"}},
	{ID: UserAccessAdminID, Name: "User Access Administrator", Description: "Lets you manage user access to Azure resources.",
		Actions: []string{"*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"}},
	{ID: ManagedHSMContributorID, Name: "Managed HSM contributor", Description: "Lets you manage managed HSM pools, but not access to them.",
		Actions: []string{"Microsoft.KeyVault/managedHSMs/*", "Microsoft.KeyVault/deletedManagedHsms/*", "Microsoft.KeyVault/locations/deletedManagedHsms/*",
			"Microsoft.KeyVault/locations/managedHsmOperationResults/*", "Microsoft.Authorization/*/read", "Microsoft.Resources/subscriptions/resourceGroups/read",
			"Microsoft.Insights/diagnosticSettings/*", "Microsoft.Storage/storageAccounts/read"}},
}

// Permits reports whether the role grants the control-plane action. As in
// Azure, "*" in Actions covers no data action: those need DataActions,
// which control-plane roles here do not have.
func (r *Role) Permits(action string) bool {
	if rbac.IsAction(rbac.Action(action)) {
		return false
	}
	allowed := false
	for _, a := range r.Actions {
		if rbac.MatchAction(a, action) {
			allowed = true
			break
		}
	}
	for _, na := range r.NotActions {
		if allowed && rbac.MatchAction(na, action) {
			return false
		}
	}
	return allowed
}

// BuiltInRoles returns the built-in roles, a copy the caller may change.
func BuiltInRoles() []Role {
	out := make([]Role, len(builtInRoles))
	for i := range builtInRoles {
		out[i] = builtInRoles[i].clone()
	}
	return out
}

// clone returns a copy of r that shares no slice with it.
func (r Role) clone() Role {
	r.Actions, r.NotActions = slices.Clone(r.Actions), slices.Clone(r.NotActions)
	return r
}

// RoleByID finds a built-in role by its GUID or full definition id and
// returns a copy of it.
func RoleByID(id string) (*Role, bool) {
	r := builtInByID(id)
	if r == nil {
		return nil, false
	}
	c := r.clone()
	return &c, true
}

// builtInByID is RoleByID without the copy, for the decisions: the
// table is never written.
func builtInByID(id string) *Role {
	id = id[strings.LastIndex(id, "/")+1:]
	for i := range builtInRoles {
		if strings.EqualFold(builtInRoles[i].ID, id) {
			return &builtInRoles[i]
		}
	}
	return nil
}

// RoleByName finds a built-in role by name, ignoring case (Azure's own is
// "Managed HSM contributor"), and returns a copy of it.
func RoleByName(name string) (*Role, bool) {
	for i := range builtInRoles {
		if strings.EqualFold(builtInRoles[i].Name, name) {
			c := builtInRoles[i].clone()
			return &c, true
		}
	}
	return nil, false
}

// Assignment grants a role at a scope.
type Assignment struct {
	ID            string    `json:"id"` // the full ARM id
	Name          string    `json:"name"`
	Scope         string    `json:"scope"`
	RoleID        string    `json:"roleId"`
	PrincipalID   string    `json:"principalId"`
	PrincipalType string    `json:"principalType"`
	Created       time.Time `json:"created"`
	// Start and End bound a time-limited assignment (a PIM activation);
	// zero means unbounded. Decisions ignore an assignment outside its
	// window, judged at decision time, so it ends by itself.
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
}

// Live reports whether the assignment is in force at t.
func (a *Assignment) Live(t time.Time) bool {
	return (a.Start.IsZero() || !t.Before(a.Start)) && (a.End.IsZero() || t.Before(a.End))
}

const kind = "armRoleAssignment"

// Errors.
var (
	ErrDenied             = fault.New(fault.Forbidden, "AuthorizationFailed", "The client does not have authorization to perform this action.")
	ErrAssignmentNotFound = fault.New(fault.NotFound, "RoleAssignmentNotFound", "The role assignment does not exist.")
	ErrAssignmentExists   = fault.New(fault.Conflict, "RoleAssignmentExists", "The role assignment already exists.")
)

// Service manages assignments and decides requests.
type Service struct {
	store store.Store
	dir   *identity.Directory
	now   func() time.Time
	// exists reports whether a scope names an existing subscription,
	// resource group or resource; assignments elsewhere are refused.
	exists func(ctx context.Context, scope string) bool

	// cache holds every assignment; nil after a change. Its one
	// invalidation path is the store subscription (apply). A fill that
	// raced with a change is not kept: fills remember the generation.
	mu    sync.Mutex
	gen   uint64
	cache []Assignment
}

// NewService returns the control-plane RBAC.
// exists tells which scopes may hold assignments (nil: any).
func NewService(s store.Store, dir *identity.Directory, now func() time.Time, exists func(ctx context.Context, scope string) bool) *Service {
	if exists == nil {
		exists = func(context.Context, string) bool { return true }
	}
	svc := &Service{store: s, dir: dir, now: now, exists: exists}
	s.Subscribe(svc.apply)
	return svc
}

func (s *Service) all(ctx context.Context) ([]Assignment, error) {
	s.mu.Lock()
	c, gen := s.cache, s.gen
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	var out []Assignment
	if err := s.store.View(ctx, func(tx store.Tx) (err error) { out, err = list(ctx, tx); return err }); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.gen == gen {
		s.cache = out
	}
	s.mu.Unlock()
	return out, nil
}

// list reads every assignment in tx.
func list(ctx context.Context, tx store.Tx) ([]Assignment, error) {
	objs, err := tx.ListObjects(ctx, kind, "")
	if err != nil {
		return nil, err
	}
	out := make([]Assignment, 0, len(objs))
	for _, o := range objs {
		var a Assignment
		if err := json.Unmarshal(o.Data, &a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// apply is the store subscription: a committed change to an assignment
// drops the cache.
func (s *Service) apply(changes []store.Change) {
	for _, c := range changes {
		if c.Kind == store.ObjectChange(kind) || c.Kind == store.ChangeAll {
			s.mu.Lock()
			s.gen++
			s.cache = nil
			s.mu.Unlock()
			return
		}
	}
}

// covers reports whether an assignment at scope applies to resource.
func covers(scope, resource string) bool {
	scope, resource = strings.ToLower(strings.TrimSuffix(scope, "/")), strings.ToLower(strings.TrimSuffix(resource, "/"))
	return scope == resource || strings.HasPrefix(resource, scope+"/")
}

// Decide reports whether the caller (or a group it is in) holds a role
// that grants action at scope.
func (s *Service) Decide(ctx context.Context, caller *identity.Caller, action, scope string) (bool, error) {
	permits, err := s.Permits(ctx, caller, action)
	if err != nil {
		return false, err
	}
	return permits(scope), nil
}

// Permits returns whether the caller may perform action at a given scope,
// reading the caller's groups and the assignments once: for filtering a
// list down to what the caller may read.
func (s *Service) Permits(ctx context.Context, caller *identity.Caller, action string) (func(scope string) bool, error) {
	if caller == nil {
		return func(string) bool { return false }, nil
	}
	as, err := s.all(ctx)
	if err != nil {
		return nil, err
	}
	groups, err := s.dir.GroupsOf(ctx, caller.ObjectID)
	if err != nil {
		return nil, err
	}
	principals := append([]string{caller.ObjectID}, groups...)
	now := s.now()
	var granting []string // scopes of assignments that grant action to the caller
	for _, a := range as {
		if !slices.Contains(principals, a.PrincipalID) || !a.Live(now) {
			continue
		}
		if r := builtInByID(a.RoleID); r != nil && r.Permits(action) {
			granting = append(granting, a.Scope)
		}
	}
	return func(scope string) bool {
		return slices.ContainsFunc(granting, func(g string) bool { return covers(g, scope) })
	}, nil
}

// Grant is an authorization decision, with the assignment (and its role)
// that allowed it, for the audit record.
type Grant struct {
	Allowed              bool
	AssignmentID, RoleID string
}

// Check answers whether caller may perform action at scope, and through
// which assignment: the caller's own, or one of a group it belongs to.
func (s *Service) Check(ctx context.Context, caller *identity.Caller, action, scope string) (Grant, error) {
	if caller == nil {
		return Grant{}, nil
	}
	as, err := s.all(ctx)
	if err != nil {
		return Grant{}, err
	}
	groups, err := s.dir.GroupsOf(ctx, caller.ObjectID)
	if err != nil {
		return Grant{}, err
	}
	principals := append([]string{caller.ObjectID}, groups...)
	now := s.now()
	for _, a := range as {
		if !slices.Contains(principals, a.PrincipalID) || !covers(a.Scope, scope) || !a.Live(now) {
			continue
		}
		if r := builtInByID(a.RoleID); r != nil && r.Permits(action) {
			return Grant{Allowed: true, AssignmentID: a.ID, RoleID: a.RoleID}, nil
		}
	}
	return Grant{}, nil
}

// Authorize returns ErrDenied in Azure's words unless Decide allows.
func (s *Service) Authorize(ctx context.Context, caller *identity.Caller, action, scope string) error {
	_, err := s.Authorized(ctx, caller, action, scope)
	return err
}

// Authorized is Authorize that also returns the decision.
func (s *Service) Authorized(ctx context.Context, caller *identity.Caller, action, scope string) (Grant, error) {
	g, err := s.Check(ctx, caller, action, scope)
	if err != nil || g.Allowed {
		return g, err
	}
	who := "anonymous"
	if caller != nil {
		who = caller.ObjectID
	}
	return g, ErrDenied.With("The client '%s' with object id '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid.",
		who, who, action, scope)
}

var guid = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// AssignmentID is the ARM id of an assignment.
func AssignmentID(scope, name string) string {
	return strings.TrimSuffix(scope, "/") + "/providers/Microsoft.Authorization/roleAssignments/" + name
}

// Assign creates an assignment.
func (s *Service) Assign(ctx context.Context, a Assignment) (Assignment, error) {
	if !guid.MatchString(a.Name) {
		return Assignment{}, fault.Invalidf("the role assignment name %q is not a GUID", a.Name)
	}
	r, ok := RoleByID(a.RoleID)
	if !ok {
		return Assignment{}, fault.Errorf(fault.Invalid, "RoleDefinitionDoesNotExist", "The specified role definition with ID '%s' does not exist.", a.RoleID)
	}
	if !s.exists(ctx, a.Scope) {
		return Assignment{}, fault.Errorf(fault.Invalid, "InvalidScope", "The scope '%s' does not name an existing subscription, resource group or resource.", a.Scope)
	}
	if _, err := s.dir.Get(ctx, a.PrincipalID); err != nil {
		return Assignment{}, fault.Errorf(fault.Invalid, "PrincipalNotFound", "Principal %s does not exist in the directory %s.", a.PrincipalID, s.dir.TenantID())
	}
	a.RoleID, a.ID, a.Created = r.ID, AssignmentID(a.Scope, a.Name), s.now().UTC()
	err := s.store.Update(ctx, func(tx store.Tx) error { return AssignTx(ctx, tx, a) })
	return a, err
}

// AssignTx stores a checked assignment (its ID, RoleID and Created set)
// in tx, refusing a name in use or the same role for the same principal at
// the same scope; the check and the write are one transaction, so two
// concurrent requests cannot both pass it.
func AssignTx(ctx context.Context, tx store.Tx, a Assignment) error {
	existing, err := list(ctx, tx)
	if err != nil {
		return err
	}
	for _, x := range existing {
		if !x.End.IsZero() && !a.Created.Before(x.End) {
			// An ended time-limited assignment gives way.
			if err := tx.DeleteObject(ctx, kind, x.ID); err != nil {
				return err
			}
			continue
		}
		if strings.EqualFold(x.Name, a.Name) || (x.PrincipalID == a.PrincipalID && x.RoleID == a.RoleID && strings.EqualFold(x.Scope, a.Scope)) {
			return ErrAssignmentExists
		}
	}
	data, _ := json.Marshal(a)
	return tx.PutObject(ctx, &store.Object{Kind: kind, ID: a.ID, Data: data})
}

// Get returns the assignment with ARM id id.
func (s *Service) Get(ctx context.Context, id string) (Assignment, error) {
	as, err := s.all(ctx)
	if err != nil {
		return Assignment{}, err
	}
	for _, a := range as {
		if strings.EqualFold(a.ID, id) {
			return a, nil
		}
	}
	return Assignment{}, ErrAssignmentNotFound
}

// Delete removes an assignment.
func (s *Service) Delete(ctx context.Context, id string) (Assignment, error) {
	a, err := s.Get(ctx, id)
	if err != nil {
		return Assignment{}, err
	}
	err = s.store.Update(ctx, func(tx store.Tx) error { return tx.DeleteObject(ctx, kind, a.ID) })
	if errors.Is(err, store.ErrNotFound) {
		return Assignment{}, ErrAssignmentNotFound
	}
	return a, err
}

// List returns the assignments at, above and below scope (above only with
// atScope), of one principal when principal is set.
func (s *Service) List(ctx context.Context, scope string, atScope bool, principal string) ([]Assignment, error) {
	as, err := s.all(ctx)
	if err != nil {
		return nil, err
	}
	out := []Assignment{}
	now := s.now()
	for _, a := range as {
		if !a.End.IsZero() && !now.Before(a.End) {
			continue // ended
		}
		if !covers(a.Scope, scope) && (atScope || !covers(scope, a.Scope)) {
			continue
		}
		if principal != "" && !strings.EqualFold(a.PrincipalID, principal) {
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

// Forget removes every assignment at or below scope (a deleted resource).
func (s *Service) Forget(ctx context.Context, scope string) error {
	return s.store.Update(ctx, func(tx store.Tx) error { return ForgetTx(ctx, tx, scope) })
}

// ForgetTx is Forget inside tx, for a caller that removes the resource in
// the same transaction.
func ForgetTx(ctx context.Context, tx store.Tx, scope string) error {
	as, err := list(ctx, tx)
	if err != nil {
		return err
	}
	for _, a := range as {
		if covers(scope, a.Scope) {
			if err := tx.DeleteObject(ctx, kind, a.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeleteTx removes the assignment with ARM id id inside tx, for a caller
// that ends it with its own change (a PIM deactivation); an assignment
// already gone is not an error.
func DeleteTx(ctx context.Context, tx store.Tx, id string) error {
	err := tx.DeleteObject(ctx, kind, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// ListTx reads every assignment in tx, ended ones included.
func ListTx(ctx context.Context, tx store.Tx) ([]Assignment, error) { return list(ctx, tx) }
