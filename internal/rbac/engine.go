package rbac

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/store"
)

// index is the evaluated state of one HSM's roles and assignments, built
// once after each change so that a decision costs a few map lookups.
type index struct {
	roles       map[string]*Role // by lower-case id: built-ins and custom roles
	byPrincipal map[string][]grant
	all         []*store.RoleAssignment
}

type grant struct {
	assignment, role string // ids, for the audit record
	scope            string // lower case
	// actions is the set of vocabulary actions the role grants, worked out
	// once from its patterns, so a decision needs no pattern matching.
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
	ix := &index{roles: map[string]*Role{}, byPrincipal: map[string][]grant{}, all: assignments}
	for i := range builtInRoles {
		r := builtInRoles[i]
		ix.roles[strings.ToLower(r.ID)] = &r
	}
	for _, d := range customs {
		r := roleFromStore(d)
		ix.roles[strings.ToLower(r.ID)] = &r
	}
	granted := map[*Role]map[Action]bool{}
	for _, a := range assignments {
		role, ok := ix.roles[strings.ToLower(a.RoleDefinitionID)]
		if !ok {
			continue // cannot happen: deleting an assigned role is refused
		}
		if granted[role] == nil {
			granted[role] = grantedActions(role)
		}
		ix.byPrincipal[a.PrincipalID] = append(ix.byPrincipal[a.PrincipalID],
			grant{assignment: a.ID, role: role.ID, scope: strings.ToLower(a.Scope), actions: granted[role], start: a.Start, end: a.End,
				created: a.Created, createdBy: a.CreatedBy})
	}
	return ix
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

// indexes holds one index per HSM (by lower-cased name), rebuilt lazily
// after invalidation. A build that raced with a change is not kept.
type indexes struct {
	mu  sync.Mutex
	gen map[string]uint64
	// all counts the flushes (store.ChangeAll), which drop every index: a
	// build that started before one is not kept either.
	all uint64
	ix  map[string]*index
}

func (s *Service) index(ctx context.Context, h *domain.HSM) (*index, error) {
	name := strings.ToLower(h.Name)
	s.ixs.mu.Lock()
	ix, ok := s.ixs.ix[name]
	gen, all := s.ixs.gen[name], s.ixs.all
	s.ixs.mu.Unlock()
	if ok {
		return ix, nil
	}
	var customs []*store.RoleDefinition
	var assignments []*store.RoleAssignment
	err := s.store.View(ctx, func(tx store.Tx) (err error) {
		if customs, err = tx.ListRoleDefinitions(ctx, h.Name); err != nil {
			return err
		}
		assignments, err = tx.ListRoleAssignments(ctx, h.Name)
		return err
	})
	if err != nil {
		return nil, err
	}
	ix = buildIndex(customs, assignments)
	s.ixs.mu.Lock()
	if s.ixs.gen[name] == gen && s.ixs.all == all {
		s.ixs.ix[name] = ix
	}
	s.ixs.mu.Unlock()
	return ix, nil
}

// apply is the service's store subscription, the one path by which role
// changes reach decisions: a committed change to an HSM's roles, or to
// the HSM itself, drops its index.
func (s *Service) apply(changes []store.Change) {
	for _, c := range changes {
		switch c.Kind {
		case store.ChangeRole, store.ChangeHSM:
			s.invalidate(c.HSM)
		case store.ChangeAll:
			s.ixs.mu.Lock()
			s.ixs.all++
			clear(s.ixs.ix)
			s.ixs.mu.Unlock()
		}
	}
}

// invalidate drops an HSM's index; the next request rebuilds it.
func (s *Service) invalidate(hsm string) {
	hsm = strings.ToLower(hsm)
	s.ixs.mu.Lock()
	s.ixs.gen[hsm]++
	delete(s.ixs.ix, hsm)
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
