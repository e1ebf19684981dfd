package rbac

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/store"
)

// index is the evaluated state of one HSM's roles and assignments, built
// once after each change so that a decision costs a few map lookups.
type index struct {
	roles map[string]*Role // by lower-case id: built-ins and custom roles
	// granted is, by lower-case role id, the set of vocabulary actions
	// each role grants, worked out once from its patterns.
	granted     map[string]map[Action]bool
	byPrincipal map[string][]grant
	all         []*store.RoleAssignment // in the store's order (listOrder)
}

type grant struct {
	assignment, role string // ids, for the audit record
	scope            string // lower case
	// actions is the set of vocabulary actions the role grants (shared
	// with index.granted), so a decision needs no pattern matching.
	actions    map[Action]bool
	start, end time.Time
	created    time.Time
	createdBy  string
}

// grantedActions evaluates a role's patterns against the vocabulary.
func grantedActions(r *Role) map[Action]bool {
	out := map[Action]bool{}
	for _, a := range actions {
		if r.Permits(a) {
			out[a] = true
		}
	}
	return out
}

// equalFold compares ids and actions, which Azure treats case-insensitively.
func equalFold(a, b string) bool { return strings.EqualFold(a, b) }

// MatchAction reports whether pattern (which may contain "*" wildcards
// matching any run of characters) matches action, ignoring case, as Azure
// matches actions in role definitions.
func MatchAction(pattern, action string) bool { return matchAction(pattern, Action(action)) }

func matchAction(pattern string, action Action) bool {
	p, a := strings.ToLower(pattern), strings.ToLower(string(action))
	parts := strings.Split(p, "*")
	if len(parts) == 1 {
		return p == a
	}
	if !strings.HasPrefix(a, parts[0]) {
		return false
	}
	a = a[len(parts[0]):]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(a, mid)
		if i < 0 {
			return false
		}
		a = a[i+len(mid):]
	}
	return strings.HasSuffix(a, parts[len(parts)-1])
}

// Permits reports whether the role grants action: some permission block
// lists it among its data actions and does not exclude it.
func (r *Role) Permits(action Action) bool {
	for _, p := range r.Permissions {
		allowed := false
		for _, d := range p.DataActions {
			if matchAction(string(d), action) {
				allowed = true
				break
			}
		}
		for _, nd := range p.NotDataActions {
			if allowed && matchAction(string(nd), action) {
				allowed = false
			}
		}
		if allowed {
			return true
		}
	}
	return false
}

// scopeContains reports whether an assignment at scope covers resource.
func scopeContains(scope, resource string) bool {
	return lowerScopeContains(strings.ToLower(scope), strings.ToLower(resource))
}

func lowerScopeContains(scope, resource string) bool {
	return scope == "/" || scope == resource ||
		len(resource) > len(scope) && resource[len(scope)] == '/' && resource[:len(scope)] == scope
}

func buildIndex(customs []*store.RoleDefinition, assignments []*store.RoleAssignment) *index {
	ix := &index{roles: map[string]*Role{}, granted: map[string]map[Action]bool{}, byPrincipal: map[string][]grant{}, all: assignments}
	for i := range builtInRoles {
		r := builtInRoles[i]
		ix.roles[strings.ToLower(r.ID)] = &r
	}
	for _, d := range customs {
		r := roleFromStore(d)
		ix.roles[strings.ToLower(r.ID)] = &r
	}
	for id, r := range ix.roles {
		ix.granted[id] = grantedActions(r)
	}
	for _, a := range assignments {
		if g, ok := ix.grant(a); ok {
			ix.byPrincipal[a.PrincipalID] = append(ix.byPrincipal[a.PrincipalID], g)
		}
	}
	return ix
}

// grant returns what assignment a grants, if its role exists (it does:
// deleting an assigned role is refused).
func (ix *index) grant(a *store.RoleAssignment) (grant, bool) {
	id := strings.ToLower(a.RoleDefinitionID)
	role, ok := ix.roles[id]
	if !ok {
		return grant{}, false
	}
	return grant{assignment: a.ID, role: role.ID, scope: strings.ToLower(a.Scope), actions: ix.granted[id], start: a.Start, end: a.End,
		created: a.Created, createdBy: a.CreatedBy}, true
}

// patched returns a copy of ix in which the assignments named by changed
// (lower-case id → the assignment now, or nil when it is gone) replace
// their earlier state. It costs a copy of the principal map and of the
// list, not a read of every assignment: with 100,000 of them, a rebuild
// reads for a third of a second.
func (ix *index) patched(changed map[string]*store.RoleAssignment) *index {
	next := &index{roles: ix.roles, granted: ix.granted, byPrincipal: maps.Clone(ix.byPrincipal),
		all: make([]*store.RoleAssignment, 0, len(ix.all)+len(changed))}
	affected := map[string]bool{}
	for _, a := range ix.all {
		if _, ok := changed[strings.ToLower(a.ID)]; ok {
			affected[a.PrincipalID] = true
			continue
		}
		next.all = append(next.all, a)
	}
	for _, a := range changed {
		if a == nil {
			continue
		}
		affected[a.PrincipalID] = true
		i, _ := slices.BinarySearchFunc(next.all, a, listOrder)
		next.all = slices.Insert(next.all, i, a)
	}
	for p := range affected {
		var gs []grant
		for _, g := range ix.byPrincipal[p] {
			if _, ok := changed[strings.ToLower(g.assignment)]; !ok {
				gs = append(gs, g)
			}
		}
		for _, a := range changed {
			if a != nil && a.PrincipalID == p {
				if g, ok := next.grant(a); ok {
					gs = append(gs, g)
				}
			}
		}
		slices.SortFunc(gs, func(a, b grant) int { // as a rebuild orders them
			if c := a.created.Compare(b.created); c != 0 {
				return c
			}
			return strings.Compare(strings.ToLower(a.assignment), strings.ToLower(b.assignment))
		})
		if len(gs) == 0 {
			delete(next.byPrincipal, p)
		} else {
			next.byPrincipal[p] = gs
		}
	}
	return next
}

// listOrder is the store's order of assignments: oldest first, then by
// id.
func listOrder(a, b *store.RoleAssignment) int {
	if c := a.Created.Compare(b.Created); c != 0 {
		return c
	}
	return strings.Compare(strings.ToLower(a.ID), strings.ToLower(b.ID))
}

// decide reports whether any of principals holds action on resource at
// now. Actions come from the operation table, so they are in the
// vocabulary that grant.actions was computed over. Only the grants accept
// accepts count (all, when accept is nil).
func (ix *index) decide(principals []string, action Action, resource string, now time.Time, accept func(*grant) bool) *grant {
	resource = strings.ToLower(resource)
	for _, p := range principals {
		grants := ix.byPrincipal[p]
		for i := range grants {
			g := &grants[i]
			if !g.actions[action] || !lowerScopeContains(g.scope, resource) || accept != nil && !accept(g) {
				continue
			}
			if !g.start.IsZero() && now.Before(g.start) || !g.end.IsZero() && !now.Before(g.end) {
				continue
			}
			return g
		}
	}
	return nil
}

// indexes holds one index per HSM (by lower-cased name). A committed
// change to an HSM's assignments is noted as pending and patched in by
// the next decision; any other change drops the index, rebuilt by the
// next decision. An index built or patched while a change arrived is not
// kept.
type indexes struct {
	mu  sync.Mutex
	gen map[string]uint64
	// all counts the flushes (store.ChangeAll), which drop every index: a
	// build that started before one is not kept either.
	all uint64
	ix  map[string]*index
	// pending holds the ids of roles and assignments changed since the
	// HSM's index was built; past maxPending, the index is rebuilt.
	pending map[string]map[string]bool
	// building serializes the builds of one HSM's index, so that requests
	// arriving together after a change wait for one build instead of each
	// making its own.
	building map[string]*sync.Mutex
}

const maxPending = 1024

func newIndexes() indexes {
	return indexes{gen: map[string]uint64{}, ix: map[string]*index{}, pending: map[string]map[string]bool{},
		building: map[string]*sync.Mutex{}}
}

func (s *Service) index(ctx context.Context, h *domain.HSM) (*index, error) {
	name := strings.ToLower(h.Name)
	if ix, ok := s.current(name); ok {
		return ix, nil
	}
	s.ixs.mu.Lock()
	b := s.ixs.building[name]
	if b == nil {
		b = &sync.Mutex{}
		s.ixs.building[name] = b
	}
	s.ixs.mu.Unlock()
	b.Lock()
	defer b.Unlock()
	if ix, ok := s.current(name); ok { // built while this one waited
		return ix, nil
	}

	s.ixs.mu.Lock()
	old, gen, all := s.ixs.ix[name], s.ixs.gen[name], s.ixs.all
	ids := slices.Collect(maps.Keys(s.ixs.pending[name]))
	s.ixs.mu.Unlock()
	var ix *index
	err := s.store.View(ctx, func(tx store.Tx) error {
		if old != nil && len(ids) <= maxPending {
			changed, err := changedAssignments(ctx, tx, h.Name, old, ids)
			if err != nil || changed != nil {
				ix = old.patched(changed)
				return err
			}
		}
		customs, err := tx.ListRoleDefinitions(ctx, h.Name)
		if err != nil {
			return err
		}
		assignments, err := tx.ListRoleAssignments(ctx, h.Name)
		if err != nil {
			return err
		}
		ix = buildIndex(customs, assignments)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.ixs.mu.Lock()
	if s.ixs.gen[name] == gen && s.ixs.all == all {
		s.ixs.ix[name] = ix
		delete(s.ixs.pending, name)
	}
	s.ixs.mu.Unlock()
	return ix, nil
}

// current returns the HSM's index if it is up to date.
func (s *Service) current(name string) (*index, bool) {
	s.ixs.mu.Lock()
	defer s.ixs.mu.Unlock()
	ix, ok := s.ixs.ix[name]
	return ix, ok && len(s.ixs.pending[name]) == 0
}

// changedAssignments reads the assignments named by ids as they are now
// (nil: gone). It returns nil when an id names a custom role definition:
// a role's change alters every grant of it, so the index is rebuilt.
func changedAssignments(ctx context.Context, tx store.Tx, hsm string, ix *index, ids []string) (map[string]*store.RoleAssignment, error) {
	changed := make(map[string]*store.RoleAssignment, len(ids))
	for _, id := range ids {
		if _, ok := ix.roles[id]; ok {
			return nil, nil
		}
		a, err := tx.GetRoleAssignment(ctx, hsm, id)
		if errors.Is(err, store.ErrNotFound) {
			if _, err = tx.GetRoleDefinition(ctx, hsm, id); err == nil {
				return nil, nil // a new custom role
			}
			if !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			a, err = nil, nil
		}
		if err != nil {
			return nil, err
		}
		changed[id] = a
	}
	return changed, nil
}

// apply is the service's store subscription, the one path by which role
// changes reach decisions: a committed change to an HSM's roles is noted
// as pending; one to the HSM itself drops its index.
func (s *Service) apply(changes []store.Change) {
	s.ixs.mu.Lock()
	defer s.ixs.mu.Unlock()
	for _, c := range changes {
		hsm := strings.ToLower(c.HSM)
		switch {
		case c.Kind == store.ChangeRole && c.ID != "":
			s.ixs.gen[hsm]++
			p := s.ixs.pending[hsm]
			if p == nil {
				p = map[string]bool{}
				s.ixs.pending[hsm] = p
			}
			if len(p) <= maxPending {
				p[strings.ToLower(c.ID)] = true
			}
		case c.Kind == store.ChangeRole, c.Kind == store.ChangeHSM:
			s.ixs.gen[hsm]++
			delete(s.ixs.ix, hsm)
			delete(s.ixs.pending, hsm)
		case c.Kind == store.ChangeAll:
			s.ixs.all++
			clear(s.ixs.ix)
			clear(s.ixs.pending)
		}
	}
}

// invalidate drops an HSM's index; the next request rebuilds it.
func (s *Service) invalidate(hsm string) {
	hsm = strings.ToLower(hsm)
	s.ixs.mu.Lock()
	s.ixs.gen[hsm]++
	delete(s.ixs.ix, hsm)
	delete(s.ixs.pending, hsm)
	s.ixs.mu.Unlock()
}

// Decision is the outcome of an authorization, for the audit record.
type Decision struct {
	Allowed bool
	// AssignmentID and RoleID name the assignment that allowed the request.
	AssignmentID, RoleID string
}

// Decide answers req: the caller, or a group it belongs to directly or
// through other groups, must hold a role that grants the action at a scope
// containing the resource, now. A refusal is a Decision, not an error.
func (s *Service) Decide(ctx context.Context, req Request) (Decision, error) {
	return s.decide(ctx, req, nil)
}

// DecideApart is Decide for a second person's approval: it counts only
// assignments made before the time given and by another principal than
// notBy, so that whoever asks cannot make their own approver, by a direct
// grant or one to a group.
func (s *Service) DecideApart(ctx context.Context, req Request, before time.Time, notBy string) (Decision, error) {
	// Assignments keep their creation time to the second: one made in the
	// request's second counts as made before it.
	cutoff := before.Truncate(time.Second)
	return s.decide(ctx, req, func(g *grant) bool { return g.createdBy != notBy && !g.created.After(cutoff) })
}

// decide is Decide counting only the assignments accept accepts (all,
// when it is nil).
func (s *Service) decide(ctx context.Context, req Request, accept func(*grant) bool) (Decision, error) {
	if req.Caller == nil {
		return Decision{}, nil
	}
	ix, err := s.index(ctx, req.HSM)
	if err != nil {
		return Decision{}, err
	}
	groups, err := s.dir.GroupsOf(ctx, req.Caller.ObjectID)
	if err != nil {
		return Decision{}, err
	}
	principals := append([]string{req.Caller.ObjectID}, groups...)
	if g := ix.decide(principals, req.Action, req.Scope, s.now(), accept); g != nil {
		return Decision{Allowed: true, AssignmentID: g.assignment, RoleID: g.role}, nil
	}
	return Decision{}, nil
}

// Authorize implements Authorizer with Decide.
func (s *Service) Authorize(ctx context.Context, req Request) error {
	d, err := s.Decide(ctx, req)
	if err != nil {
		return err
	}
	if !d.Allowed {
		return Denied(req)
	}
	return nil
}
