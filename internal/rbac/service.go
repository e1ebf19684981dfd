package rbac

import (
	"context"
	"errors"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/store"
)

// Errors of role management.
var (
	ErrRoleNotFound       = fault.New(fault.NotFound, "RoleDefinitionNotFound", "the role definition does not exist")
	ErrAssignmentNotFound = fault.New(fault.NotFound, "RoleAssignmentNotFound", "Requested role assignment not found")
	ErrAssignmentExists   = fault.New(fault.Conflict, "RoleAssignmentExists", "The role assignment already exists.")
	ErrPrincipalNotFound  = fault.New(fault.Invalid, "PrincipalNotFound", "the principal does not exist in the directory")
	ErrRoleHasAssignments = fault.New(fault.Invalid, "RoleDefinitionHasAssignments", "the role definition is still assigned")
)

// Azure's limits.
const (
	MaxCustomRoles         = 50
	MaxHSMScopeAssignments = 50 // at "/" and "/keys"
	MaxKeyScopeAssignments = 10 // at each "/keys/{name}"
)

// Service manages roles and role assignments and decides requests.
type Service struct {
	store store.Store
	dir   *identity.Directory
	now   func() time.Time
	ixs   indexes
}

var _ Authorizer = (*Service)(nil)

// NewService returns the local RBAC of every HSM in s.
func NewService(s store.Store, dir *identity.Directory, now func() time.Time) *Service {
	svc := &Service{store: s, dir: dir, now: now, ixs: newIndexes()}
	s.Subscribe(svc.apply)
	return svc
}

// Assignment grants a role to a principal at a scope.
type Assignment struct {
	ID          string
	Scope       string
	RoleID      string
	PrincipalID string
	Created     time.Time
	Start, End  time.Time
	Source      string
	// CreatedBy is the principal that made the assignment.
	CreatedBy string
}

func assignmentFromStore(a *store.RoleAssignment) Assignment {
	return Assignment{ID: a.ID, Scope: a.Scope, RoleID: a.RoleDefinitionID, PrincipalID: a.PrincipalID,
		Created: a.Created, Start: a.Start, End: a.End, Source: a.Source, CreatedBy: a.CreatedBy}
}

func roleFromStore(d *store.RoleDefinition) Role {
	r := Role{ID: d.ID, Name: d.Name, Description: d.Description, AssignableScopes: d.AssignableScopes}
	for _, p := range d.Permissions {
		r.Permissions = append(r.Permissions, Permission{Actions: p.Actions, NotActions: p.NotActions,
			DataActions: toActions(p.DataActions), NotDataActions: toActions(p.NotDataActions)})
	}
	return r
}

func toActions(ss []string) []Action {
	out := make([]Action, 0, len(ss))
	for _, s := range ss {
		out = append(out, Action(s))
	}
	return out
}

func toStrings(as []Action) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, string(a))
	}
	return out
}

var guidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func checkGUID(what, id string) error {
	if !guidPattern.MatchString(id) {
		return fault.Invalidf("the %s name %q is not a valid GUID", what, id)
	}
	return nil
}

var keyScopePattern = regexp.MustCompile(`^/keys/[0-9a-zA-Z-]{1,127}$`)

// CleanScope validates an assignment scope ("/", "/keys" or "/keys/{name}")
// and returns it in canonical form.
func CleanScope(scope string) (string, error) {
	s := "/" + strings.Trim(scope, "/")
	if strings.EqualFold(s, "/keys") {
		return "/keys", nil
	}
	if s == "/" {
		return s, nil
	}
	if keyScopePattern.MatchString(s) && strings.EqualFold(s[:6], "/keys/") {
		return "/keys/" + s[6:], nil
	}
	return "", fault.Invalidf("the scope %q is not valid: use /, /keys or /keys/{key name}", scope)
}

// Roles returns the built-in roles followed by the HSM's custom roles.
func (s *Service) Roles(ctx context.Context, h *domain.HSM) ([]Role, error) {
	out := BuiltInRoles()
	var customs []*store.RoleDefinition
	err := s.store.View(ctx, func(tx store.Tx) (err error) { customs, err = tx.ListRoleDefinitions(ctx, h.Name); return err })
	for _, d := range customs {
		out = append(out, roleFromStore(d))
	}
	return out, err
}

// Role returns the role with id (a GUID).
func (s *Service) Role(ctx context.Context, h *domain.HSM, id string) (Role, error) {
	if r, ok := builtInByID(id); ok {
		return r, nil
	}
	var d *store.RoleDefinition
	err := s.store.View(ctx, func(tx store.Tx) (err error) { d, err = tx.GetRoleDefinition(ctx, h.Name, id); return err })
	if errors.Is(err, store.ErrNotFound) {
		return Role{}, ErrRoleNotFound.With("the role definition %s does not exist", id)
	}
	if err != nil {
		return Role{}, err
	}
	return roleFromStore(d), nil
}

// RoleByName finds a role by its name, ignoring case; the names Azure's
// documentation uses for some built-ins are accepted too.
func (s *Service) RoleByName(ctx context.Context, h *domain.HSM, name string) (Role, error) {
	if id, ok := roleAliases[strings.ToLower(name)]; ok {
		return s.Role(ctx, h, id)
	}
	roles, err := s.Roles(ctx, h)
	if err != nil {
		return Role{}, err
	}
	for _, r := range roles {
		if strings.EqualFold(r.Name, name) {
			return r, nil
		}
	}
	return Role{}, ErrRoleNotFound.With("no role is named %q", name)
}

// PutRole creates or replaces the custom role id.
func (s *Service) PutRole(ctx context.Context, h *domain.HSM, id string, r Role) (Role, error) {
	if err := checkGUID("role definition", id); err != nil {
		return Role{}, err
	}
	if _, ok := builtInByID(id); ok {
		return Role{}, fault.Invalidf("built-in roles cannot be changed")
	}
	r.ID, r.BuiltIn = id, false
	if err := validateCustomRole(&r); err != nil {
		return Role{}, err
	}
	now := s.now().UTC().Truncate(time.Second)
	err := s.store.Update(ctx, func(tx store.Tx) error {
		customs, err := tx.ListRoleDefinitions(ctx, h.Name)
		if err != nil {
			return err
		}
		exists := false
		for _, c := range customs {
			if equalFold(c.ID, id) {
				exists = true
			} else if strings.EqualFold(c.Name, r.Name) {
				return fault.Invalidf("a role named %q already exists", r.Name)
			}
		}
		if !exists && len(customs) >= MaxCustomRoles {
			return fault.Invalidf("an HSM has at most %d custom roles", MaxCustomRoles)
		}
		d := &store.RoleDefinition{HSM: h.Name, ID: id, Name: r.Name, Description: r.Description,
			AssignableScopes: r.AssignableScopes, Created: now, Updated: now}
		for _, p := range r.Permissions {
			d.Permissions = append(d.Permissions, store.Permission{Actions: p.Actions, NotActions: p.NotActions,
				DataActions: toStrings(p.DataActions), NotDataActions: toStrings(p.NotDataActions)})
		}
		return tx.PutRoleDefinition(ctx, d)
	})
	if err != nil {
		return Role{}, err
	}
	return r, nil
}

func validateCustomRole(r *Role) error {
	if strings.TrimSpace(r.Name) == "" || len(r.Name) > 512 {
		return fault.Invalidf("roleName is required (at most 512 characters)")
	}
	for _, b := range builtInRoles {
		if strings.EqualFold(b.Name, r.Name) {
			return fault.Invalidf("%q is the name of a built-in role", r.Name)
		}
	}
	if len(r.AssignableScopes) == 0 {
		r.AssignableScopes = []string{"/"}
	}
	for _, sc := range r.AssignableScopes {
		if sc != "/" {
			return fault.Invalidf("custom roles are assignable at scope / only, not %q", sc)
		}
	}
	granted := 0
	for i, p := range r.Permissions {
		if len(p.Actions) > 0 || len(p.NotActions) > 0 {
			return fault.Invalidf("Managed HSM roles grant data actions only: actions and notActions must be empty")
		}
		for _, a := range append(slices.Clone(p.DataActions), p.NotDataActions...) {
			if strings.TrimSpace(string(a)) == "*" {
				// Azure takes an explicit list: a bare "*" would also grant
				// every data action added in a later version.
				return fault.Invalidf(`a custom role names its data actions: a bare "*" is not accepted; list the actions, or use a narrower wildcard such as Microsoft.KeyVault/managedHsm/keys/read/*`)
			}
			if !knownAction(a) {
				return fault.Invalidf("%q is not a Managed HSM data action", a)
			}
		}
		granted += len(p.DataActions)
		r.Permissions[i].Actions, r.Permissions[i].NotActions = []string{}, []string{}
		if r.Permissions[i].NotDataActions == nil {
			r.Permissions[i].NotDataActions = []Action{}
		}
	}
	if granted == 0 {
		return fault.Invalidf("a custom role must grant at least one data action")
	}
	return nil
}

// knownAction accepts an action of the vocabulary, or a wildcard pattern
// that matches at least one of them.
func knownAction(pattern Action) bool {
	for _, a := range actions {
		if matchAction(string(pattern), a) {
			return true
		}
	}
	return false
}

// DeleteRole removes a custom role that is no longer assigned.
func (s *Service) DeleteRole(ctx context.Context, h *domain.HSM, id string) (Role, error) {
	if _, ok := builtInByID(id); ok {
		return Role{}, fault.Invalidf("built-in roles cannot be deleted")
	}
	var r Role
	err := s.store.Update(ctx, func(tx store.Tx) error {
		d, err := tx.GetRoleDefinition(ctx, h.Name, id)
		if errors.Is(err, store.ErrNotFound) {
			return ErrRoleNotFound.With("the role definition %s does not exist", id)
		}
		if err != nil {
			return err
		}
		all, err := tx.ListRoleAssignments(ctx, h.Name)
		if err != nil {
			return err
		}
		for _, a := range all {
			if equalFold(a.RoleDefinitionID, id) {
				return ErrRoleHasAssignments.With("the role %q is still assigned (assignment %s): delete its assignments first", d.Name, a.ID)
			}
		}
		r = roleFromStore(d)
		return tx.DeleteRoleDefinition(ctx, h.Name, id)
	})
	if err != nil {
		return Role{}, err
	}
	return r, nil
}

// Assign creates a role assignment. a.ID, a.Scope, a.RoleID and
// a.PrincipalID are required; Start, End and Source are optional.
func (s *Service) Assign(ctx context.Context, h *domain.HSM, a Assignment) (Assignment, error) {
	if err := checkGUID("role assignment", a.ID); err != nil {
		return Assignment{}, err
	}
	scope, err := CleanScope(a.Scope)
	if err != nil {
		return Assignment{}, err
	}
	a.Scope = scope
	role, err := s.Role(ctx, h, a.RoleID)
	if errors.Is(err, ErrRoleNotFound) {
		return Assignment{}, fault.Invalidf("the role definition %s does not exist", a.RoleID)
	}
	if err != nil {
		return Assignment{}, err
	}
	a.RoleID = role.ID
	if a.PrincipalID == "" {
		return Assignment{}, fault.Invalidf("principalId is required")
	}
	if _, err := s.dir.Get(ctx, a.PrincipalID); errors.Is(err, identity.ErrNotFound) {
		return Assignment{}, ErrPrincipalNotFound.With("Principal %s does not exist in the directory %s.", a.PrincipalID, s.dir.TenantID())
	} else if err != nil {
		return Assignment{}, err
	}
	if !a.Start.IsZero() && !a.End.IsZero() && !a.Start.Before(a.End) {
		return Assignment{}, fault.Invalidf("the assignment must start before it ends")
	}
	if a.Source == "" {
		a.Source = "direct"
	}
	a.Created = s.now().UTC().Truncate(time.Second)
	err = s.store.Update(ctx, func(tx store.Tx) error { return insertAssignment(ctx, tx, h, a) })
	if err != nil {
		return Assignment{}, err
	}
	return a, nil
}

// insertAssignment stores a checked assignment in tx, refusing a taken id,
// a duplicate grant and an assignment past the limit of its scope. It
// reads the assignment of that id and those at the scope, never all of
// them: an HSM may hold a hundred thousand.
func insertAssignment(ctx context.Context, tx store.Tx, h *domain.HSM, a Assignment) error {
	if _, err := tx.GetRoleAssignment(ctx, h.Name, a.ID); err == nil {
		return ErrAssignmentExists.With("The role assignment %s already exists.", a.ID)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	scopes := []string{a.Scope}
	if a.Scope == "/" || a.Scope == "/keys" { // they share one limit
		scopes = []string{"/", "/keys"}
	}
	near, err := tx.ListRoleAssignmentsAt(ctx, h.Name, scopes...)
	if err != nil {
		return err
	}
	atScope := 0
	for _, x := range near {
		if x.PrincipalID == a.PrincipalID && equalFold(x.RoleDefinitionID, a.RoleID) && strings.EqualFold(x.Scope, a.Scope) {
			return ErrAssignmentExists.With("The role assignment already exists (as %s).", x.ID)
		}
		if strings.EqualFold(x.Scope, a.Scope) || (a.Scope == "/" || a.Scope == "/keys") && (x.Scope == "/" || x.Scope == "/keys") {
			atScope++
		}
	}
	limit := MaxKeyScopeAssignments
	if a.Scope == "/" || a.Scope == "/keys" {
		limit = MaxHSMScopeAssignments
	}
	if atScope >= limit {
		return fault.Invalidf("at most %d role assignments are allowed at scope %s", limit, a.Scope)
	}
	return tx.InsertRoleAssignment(ctx, &store.RoleAssignment{HSM: h.Name, ID: a.ID, Scope: a.Scope,
		RoleDefinitionID: a.RoleID, PrincipalID: a.PrincipalID, Created: a.Created, Start: a.Start, End: a.End, Source: a.Source,
		CreatedBy: a.CreatedBy})
}

// Assignment returns one assignment.
func (s *Service) Assignment(ctx context.Context, h *domain.HSM, id string) (Assignment, error) {
	var a *store.RoleAssignment
	err := s.store.View(ctx, func(tx store.Tx) (err error) { a, err = tx.GetRoleAssignment(ctx, h.Name, id); return err })
	if errors.Is(err, store.ErrNotFound) {
		return Assignment{}, ErrAssignmentNotFound
	}
	if err != nil {
		return Assignment{}, err
	}
	return assignmentFromStore(a), nil
}

// Unassign deletes an assignment and returns it.
func (s *Service) Unassign(ctx context.Context, h *domain.HSM, id string) (Assignment, error) {
	var a *store.RoleAssignment
	err := s.store.Update(ctx, func(tx store.Tx) (err error) {
		if a, err = tx.GetRoleAssignment(ctx, h.Name, id); err != nil {
			return err
		}
		return tx.DeleteRoleAssignment(ctx, h.Name, id)
	})
	if errors.Is(err, store.ErrNotFound) {
		return Assignment{}, ErrAssignmentNotFound
	}
	if err != nil {
		return Assignment{}, err
	}
	return assignmentFromStore(a), nil
}

// Filter selects assignments relative to a scope, as Azure's $filter.
type Filter struct {
	Scope string
	// AtScope keeps assignments at or above Scope (atScope()); otherwise
	// assignments below it are listed too.
	AtScope bool
	// PrincipalID keeps one principal's assignments ("principalId eq").
	PrincipalID string
}

// Assignments lists the assignments f selects.
func (s *Service) Assignments(ctx context.Context, h *domain.HSM, f Filter) ([]Assignment, error) {
	scope, err := CleanScope(f.Scope)
	if err != nil {
		return nil, err
	}
	ix, err := s.index(ctx, h)
	if err != nil {
		return nil, err
	}
	out := []Assignment{}
	for _, a := range ix.all {
		above := scopeContains(a.Scope, scope)
		below := scopeContains(scope, a.Scope)
		if !above && (f.AtScope || !below) {
			continue
		}
		if f.PrincipalID != "" && !equalFold(a.PrincipalID, f.PrincipalID) {
			continue
		}
		out = append(out, assignmentFromStore(a))
	}
	return out, nil
}

// EnsureAssigned gives principal each role at "/" unless it already holds
// it there. It is how an HSM's initial administrators get their role.
func (s *Service) EnsureAssigned(ctx context.Context, h *domain.HSM, principal string, roleIDs ...string) error {
	have, err := s.Assignments(ctx, h, Filter{Scope: "/", AtScope: true, PrincipalID: principal})
	if err != nil {
		return err
	}
	for _, id := range roleIDs {
		if slices.ContainsFunc(have, func(a Assignment) bool { return equalFold(a.RoleID, id) }) {
			continue
		}
		if _, err := s.Assign(ctx, h, Assignment{ID: uuid.NewString(), Scope: "/", RoleID: id, PrincipalID: principal}); err != nil {
			return err
		}
	}
	return nil
}

// SeedInitialRoles gives an HSM's initial administrators the Managed HSM
// Administrator role at "/", as Azure does when it creates an HSM, plus
// any extra roles to extra (the dev bootstrap principal). It runs once per
// HSM: later changes by the administrators are never undone.
func (s *Service) SeedInitialRoles(ctx context.Context, h *domain.HSM, extra map[string][]string) error {
	return s.store.Update(ctx, func(tx store.Tx) error { return s.SeedInitialRolesTx(ctx, tx, h, extra) })
}

// SeedInitialRolesTx is SeedInitialRoles inside tx, so that the caller can
// create the HSM and seed its administrators in one transaction: a crash
// cannot leave an HSM that nobody administers.
func (s *Service) SeedInitialRolesTx(ctx context.Context, tx store.Tx, h *domain.HSM, extra map[string][]string) error {
	if seeded, err := tx.RolesSeeded(ctx, h.Name); err != nil || seeded {
		return err
	}
	grants := [][2]string{}
	for _, admin := range h.Admins {
		grants = append(grants, [2]string{admin, AdministratorID})
	}
	principals := slices.Sorted(maps.Keys(extra))
	for _, p := range principals {
		for _, role := range extra[p] {
			grants = append(grants, [2]string{p, role})
		}
	}
	now := s.now().UTC().Truncate(time.Second)
	for _, g := range grants {
		principal, role := g[0], g[1]
		if _, err := tx.GetPrincipal(ctx, principal); errors.Is(err, store.ErrNotFound) {
			return ErrPrincipalNotFound.With("Principal %s does not exist in the directory %s.", principal, s.dir.TenantID())
		} else if err != nil {
			return err
		}
		atRoot, err := tx.ListRoleAssignmentsAt(ctx, h.Name, "/")
		if err != nil {
			return err
		}
		if slices.ContainsFunc(atRoot, func(a *store.RoleAssignment) bool {
			return a.Scope == "/" && a.PrincipalID == principal && equalFold(a.RoleDefinitionID, role)
		}) {
			continue
		}
		a := Assignment{ID: uuid.NewString(), Scope: "/", RoleID: role, PrincipalID: principal, Source: "direct", Created: now}
		if err := insertAssignment(ctx, tx, h, a); err != nil {
			return err
		}
	}
	return tx.SetRolesSeeded(ctx, h.Name)
}
