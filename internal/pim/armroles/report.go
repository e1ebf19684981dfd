package armroles

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/armrbac"
	"github.com/keyward/keyward/internal/events"
	"github.com/keyward/keyward/internal/pim"
	"github.com/keyward/keyward/internal/store"
)

// reporting is the PIM core that receives what the lifecycle does: its
// Keyward.PIM.* CloudEvents and its alerts (RolesAssignedOutsidePimAlert,
// SequentialActivationRenewalsAlert, NoMfaOnRoleActivationAlert) are the
// core's, on the same webhook and in the same alert records.
type reporting struct {
	mu    sync.Mutex
	core  *pim.Service
	dirty chan struct{}
}

// Report sends the lifecycle's events and alerts to core. Call it once,
// before serving; Run then ends expired schedules and scans for standing
// role assignments made outside PIM.
func (s *Service) Report(core *pim.Service) {
	s.rep.mu.Lock()
	s.rep.core, s.rep.dirty = core, make(chan struct{}, 1)
	s.rep.mu.Unlock()
	s.markDirty()
	watched := []string{store.ObjectChange("armRoleAssignment"), store.ObjectChange(kindSchedule)}
	s.store.Subscribe(func(cs []store.Change) {
		for _, c := range cs {
			if slices.Contains(watched, c.Kind) || c.Kind == store.ChangeAll {
				s.markDirty()
				return
			}
		}
	})
}

func (s *Service) markDirty() {
	s.rep.mu.Lock()
	d := s.rep.dirty
	s.rep.mu.Unlock()
	select {
	case d <- struct{}{}:
	default:
	}
}

func (s *Service) core() *pim.Service {
	s.rep.mu.Lock()
	defer s.rep.mu.Unlock()
	return s.rep.core
}

// DefinitionID is the full id of role (a GUID) as seen at scope: under
// the scope's subscription.
func DefinitionID(scope, role string) string {
	parts := strings.Split(strings.Trim(NormalizeScope(scope), "/"), "/")
	prefix := ""
	if len(parts) >= 2 && strings.EqualFold(parts[0], "subscriptions") {
		prefix = "/subscriptions/" + parts[1]
	}
	return prefix + "/providers/Microsoft.Authorization/roleDefinitions/" + lastSegment(role)
}

// Target is the PIM core's name of role (a GUID) at scope.
func Target(scope, role string) pim.Target {
	return pim.RoleTarget(DefinitionID(scope, role), NormalizeScope(scope))
}

func rfc(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// requestEvent posts a request's event; decision is set on ApprovalDecided.
func (s *Service) requestEvent(typ string, r Request, decision string) {
	core := s.core()
	if core == nil {
		return
	}
	d := events.PIMData{PrincipalID: r.PrincipalID, RequestorID: r.RequestorID, RoleDefinitionID: DefinitionID(r.Scope, r.RoleID),
		Scope: r.Scope, RequestID: r.Name, Action: pim.ParseAction(r.RequestType), Status: r.Status, Justification: r.Justification,
		Decision: decision}
	if typ == pim.EventActivated {
		d.Start, d.End = rfc(r.Start), rfc(r.End)
	}
	core.Publish(typ, r.ID, d)
}

// reported posts what a request that succeeded did, and raises the
// alerts it causes.
func (s *Service) reported(ctx context.Context, r Request) {
	core := s.core()
	if core == nil {
		return
	}
	switch {
	case r.Status == StatusPendingApproval:
		s.requestEvent(pim.EventApprovalRequested, r, "")
	case r.Status == StatusRevoked:
		s.requestEvent(pim.EventDeactivated, r, "")
	case r.Status != StatusProvisioned:
	case r.Level == Eligibility:
		s.requestEvent(pim.EventEligibilityCreated, r, "")
		s.checkNoMFA(ctx, r.Scope, r.RoleID, r.PrincipalID)
	default:
		s.requestEvent(pim.EventActivated, r, "")
		if r.RequestType == SelfActivate {
			s.checkNoMFA(ctx, r.Scope, r.RoleID, r.PrincipalID)
			s.noteActivation(ctx, core, r)
		}
	}
}

// checkNoMFA raises NoMfaOnRoleActivationAlert when the policy of role at
// scope lets it be activated without MFA and it has an eligibility in
// force there or below: for principalID, the one who was made eligible or
// activated, or for none ("") after a policy change.
func (s *Service) checkNoMFA(ctx context.Context, scope, role, principalID string) {
	core := s.core()
	if core == nil {
		return
	}
	p, err := s.Policy(ctx, scope, role)
	if err != nil || slices.Contains(p.evaluation().activationNeeds, "MultiFactorAuthentication") {
		return
	}
	var scheds []Schedule
	if err := s.store.View(ctx, func(tx store.Tx) (err error) { scheds, err = listSchedules(ctx, tx); return err }); err != nil {
		return
	}
	now := s.now()
	if slices.ContainsFunc(scheds, func(x Schedule) bool {
		return x.Level == Eligibility && strings.EqualFold(x.RoleID, p.RoleID) && (covers(p.Scope, x.Scope) || covers(x.Scope, p.Scope)) && x.Live(now)
	}) {
		core.RaiseAlert(ctx, pim.AlertNoMFA, Target(p.Scope, p.RoleID), principalID)
	}
}

// noteActivation counts the principal's activations of the role at the
// scope for SequentialActivationRenewalsAlert.
func (s *Service) noteActivation(ctx context.Context, core *pim.Service, r Request) {
	var scheds []Schedule
	if err := s.store.View(ctx, func(tx store.Tx) (err error) { scheds, err = listSchedules(ctx, tx); return err }); err != nil {
		return
	}
	var starts []time.Time
	for _, x := range scheds {
		if x.Level == Assignment && x.AssignmentType == Activated && x.PrincipalID == r.PrincipalID && x.RoleID == r.RoleID && strings.EqualFold(x.Scope, r.Scope) {
			starts = append(starts, x.Start)
		}
	}
	core.NoteActivations(ctx, Target(r.Scope, r.RoleID), r.PrincipalID, starts, lastSegment(r.TargetScheduleID))
}

const leaseName = "pim.armroles"

// Run ends expired schedules (Expire) every interval while it holds the
// store's lease, and scans for role assignments made outside PIM
// (ScanOutsidePIM) after role assignments or schedules changed, until ctx
// is done. Access does not wait for it: armrbac ignores an assignment
// past its end at each decision.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	holder := uuid.NewString()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		held, _ := store.TakeLease(ctx, s.store, leaseName, holder, s.now(), 10*interval+10*time.Second)
		if held {
			_ = s.Expire(ctx)
			s.rep.mu.Lock()
			d := s.rep.dirty
			s.rep.mu.Unlock()
			select {
			case <-d:
				_ = s.ScanOutsidePIM(ctx)
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Expire posts Keyward.PIM.Expired for each schedule that reached its end
// by itself (not one a request ended) and removes the role assignment of
// an active one. A schedule is expired once: its Updated moves to its end
// or later (a request that ends one sets both to the same time).
func (s *Service) Expire(ctx context.Context) error {
	var ended []Schedule
	err := s.store.Update(ctx, func(tx store.Tx) error {
		ended = nil
		now := s.now().UTC()
		scheds, err := listSchedules(ctx, tx)
		if err != nil {
			return err
		}
		for _, x := range scheds {
			if x.End.IsZero() || now.Before(x.End) || !x.Updated.Before(x.End) {
				continue
			}
			if x.OriginAssignmentID != "" {
				if err := armrbac.DeleteTx(ctx, tx, x.OriginAssignmentID); err != nil {
					return err
				}
			}
			x.Updated = now
			if err := putSchedule(ctx, tx, x); err != nil {
				return err
			}
			ended = append(ended, x)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if core := s.core(); core != nil {
		for _, x := range ended {
			core.Publish(pim.EventExpired, x.ID, events.PIMData{PrincipalID: x.PrincipalID, RoleDefinitionID: DefinitionID(x.Scope, x.RoleID),
				Scope: x.Scope, RequestID: lastSegment(x.RequestID), Status: "Expired", Start: rfc(x.Start), End: rfc(x.End)})
		}
	}
	return nil
}

// ScanOutsidePIM raises RolesAssignedOutsidePimAlert for each standing
// role assignment (no start, no end: not one PIM made) of a role that is
// PIM-governed at its scope: an eligibility in force for the role exists
// there or above.
func (s *Service) ScanOutsidePIM(ctx context.Context) error {
	core := s.core()
	if core == nil {
		return nil
	}
	var found []armrbac.Assignment
	err := s.store.View(ctx, func(tx store.Tx) error {
		found = nil
		now := s.now()
		scheds, err := listSchedules(ctx, tx)
		if err != nil {
			return err
		}
		as, err := armrbac.ListTx(ctx, tx)
		if err != nil {
			return err
		}
		for _, a := range as {
			if !a.Start.IsZero() || !a.End.IsZero() {
				continue
			}
			if slices.ContainsFunc(scheds, func(x Schedule) bool {
				return x.Level == Eligibility && strings.EqualFold(x.RoleID, a.RoleID) && covers(x.Scope, a.Scope) && x.Live(now)
			}) {
				found = append(found, a)
			}
		}
		return nil
	})
	for _, a := range found {
		core.RaiseAlert(ctx, pim.AlertOutsidePIM, Target(a.Scope, a.RoleID), a.PrincipalID)
	}
	return err
}
