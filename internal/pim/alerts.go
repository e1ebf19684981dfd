package pim

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/events"
	"github.com/keyward/keyward/internal/store"
)

// Alert types (Entra's alert definition ids' suffixes).
const (
	AlertOutsidePIM  = "RolesAssignedOutsidePimAlert"
	AlertSequential  = "SequentialActivationRenewalsAlert"
	AlertNoMFA       = "NoMfaOnRoleActivationAlert"
	maxIncidents     = 1000
	defaultInterval  = time.Hour
	defaultThreshold = 3
)

// Incident is one occurrence of an alert.
type Incident struct {
	ID          string    `json:"id"`
	PrincipalID string    `json:"principalId,omitempty"`
	Target      Target    `json:"target"`
	At          time.Time `json:"at"`
	// Sequential activations.
	ActivationCount int       `json:"activationCount,omitempty"`
	SequenceStart   time.Time `json:"sequenceStart"`
	SequenceEnd     time.Time `json:"sequenceEnd"`
}

// Alert is the state of one alert type.
type Alert struct {
	Type         string     `json:"type"`
	IsActive     bool       `json:"isActive"`
	IsEnabled    bool       `json:"isEnabled"`
	Incidents    []Incident `json:"incidents"`
	LastModified time.Time  `json:"lastModified"`
	LastScanned  time.Time  `json:"lastScanned"`
	// Sequential activations: how close activations must follow one
	// another, and how many make an incident.
	TimeIntervalBetweenActivations string `json:"timeIntervalBetweenActivations,omitempty"`
	SequentialActivationThreshold  int    `json:"sequentialActivationCounterThreshold,omitempty"`
}

// AlertTypes lists the alert types.
var AlertTypes = []string{AlertOutsidePIM, AlertSequential, AlertNoMFA}

func defaultAlert(typ string) *Alert {
	a := &Alert{Type: typ, IsEnabled: true, Incidents: []Incident{}}
	if typ == AlertSequential {
		a.TimeIntervalBetweenActivations, a.SequentialActivationThreshold = "PT1H", defaultThreshold
	}
	return a
}

func (s *Service) alert(ctx context.Context, tx store.Tx, typ string) (*Alert, error) {
	a, err := get[Alert](ctx, tx, objAlert, typ, errNoAlert)
	if errors.Is(err, errNoAlert) {
		return defaultAlert(typ), nil
	}
	return a, err
}

var errNoAlert = errors.New("pim: no alert")

// Alerts returns every alert's state.
func (s *Service) Alerts(ctx context.Context) ([]*Alert, error) {
	var out []*Alert
	err := s.view(ctx, func(tx store.Tx) error {
		out = nil
		for _, typ := range AlertTypes {
			a, err := s.alert(ctx, tx, typ)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	return out, err
}

// AlertConfig changes an alert: enabled, active (false dismisses), and
// the sequential-activation settings ("" and 0 keep them).
type AlertConfig struct {
	IsEnabled, IsActive *bool
	Interval            string
	Threshold           int
}

// ConfigureAlert applies cfg to the alert typ.
func (s *Service) ConfigureAlert(ctx context.Context, typ string, cfg AlertConfig) (*Alert, error) {
	var a *Alert
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) (err error) {
		known := false
		for _, t := range AlertTypes {
			if strings.EqualFold(t, typ) {
				typ, known = t, true
			}
		}
		if !known {
			return ErrBadRequest.With("There is no alert %q.", typ)
		}
		if a, err = s.alert(ctx, tx, typ); err != nil {
			return err
		}
		if cfg.Interval != "" {
			if d, err := ParseDuration(cfg.Interval); err != nil || d <= 0 {
				return ErrBadRequest.With("timeIntervalBetweenActivations %q is not an ISO 8601 duration.", cfg.Interval)
			}
			a.TimeIntervalBetweenActivations = cfg.Interval
		}
		if cfg.Threshold < 0 || cfg.Threshold == 1 || cfg.Threshold > 100 {
			return ErrBadRequest.With("sequentialActivationCounterThreshold must be 2 to 100.")
		}
		if cfg.Threshold > 0 {
			a.SequentialActivationThreshold = cfg.Threshold
		}
		if cfg.IsEnabled != nil {
			a.IsEnabled = *cfg.IsEnabled
		}
		if cfg.IsActive != nil {
			a.IsActive = *cfg.IsActive
		}
		a.LastModified = s.now()
		return put(ctx, tx, objAlert, a.Type, a)
	})
	return a, err
}

// raiseTx adds an incident to alert typ in tx unless one with the same id
// exists, and returns the event to publish after the commit.
func (s *Service) raiseTx(ctx context.Context, tx store.Tx, typ string, t Target, in Incident) []events.Event {
	a, err := s.alert(ctx, tx, typ)
	if err != nil || !a.IsEnabled {
		return nil
	}
	in.Target = t
	if in.ID == "" {
		in.ID = strings.ToLower(t.Key() + "|" + in.PrincipalID)
	}
	for _, x := range a.Incidents {
		if x.ID == in.ID && typ != AlertSequential {
			return nil
		}
	}
	a.Incidents = append(a.Incidents, in)
	if len(a.Incidents) > maxIncidents {
		a.Incidents = a.Incidents[len(a.Incidents)-maxIncidents:]
	}
	a.IsActive, a.LastModified, a.LastScanned = true, s.now(), s.now()
	if err := put(ctx, tx, objAlert, a.Type, a); err != nil {
		s.cfg.Log.Error("pim: recording an alert", "alert", typ, "err", err)
		return nil
	}
	d := events.PIMData{PrincipalID: in.PrincipalID, AlertType: typ}
	targetData(t, &d)
	return []events.Event{events.NewPIM(EventAlertRaised, s.cfg.Source, typ, s.now(), d)}
}

func (s *Service) raise(ctx context.Context, typ string, t Target, in Incident) {
	var evs []events.Event
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		evs = s.raiseTx(ctx, tx, typ, t, in)
		return nil
	})
	if err != nil {
		s.cfg.Log.Error("pim: raising an alert", "alert", typ, "err", err)
		return
	}
	s.publish(evs)
}

// checkNoMFA raises NoMfaOnRoleActivationAlert when a policy lets a
// target with eligibilities be activated without MFA.
func (s *Service) checkNoMFA(ctx context.Context, p *Policy) {
	if hasEnabled(p.Rule(RuleEnablementEndUser), EnableMFA) {
		return
	}
	els, err := s.Instances(ctx, Eligibility, func(sc *Schedule) bool { return sc.Target.Same(p.Target) })
	if err != nil || len(els) == 0 {
		return
	}
	s.raise(ctx, AlertNoMFA, p.Target, Incident{At: s.now()})
}

// noteActivation raises SequentialActivationRenewalsAlert when principal
// activated the same target threshold times, each within the interval of
// the one before, and NoMfaOnRoleActivationAlert when the activation's
// policy does not require MFA.
func (s *Service) noteActivation(ctx context.Context, req *Request) {
	if p, err := s.Policy(ctx, req.Target); err == nil {
		s.checkNoMFA(ctx, p)
	}
	var a *Alert
	if err := s.view(ctx, func(tx store.Tx) (err error) { a, err = s.alert(ctx, tx, AlertSequential); return err }); err != nil || !a.IsEnabled {
		return
	}
	interval, err := ParseDuration(a.TimeIntervalBetweenActivations)
	if err != nil {
		interval = defaultInterval
	}
	scheds, err := s.Schedules(ctx, Assignment, func(sc *Schedule) bool {
		return sc.AssignmentType == Activated && sc.PrincipalID == req.PrincipalID && sc.Target.Same(req.Target)
	})
	if err != nil || len(scheds) == 0 {
		return
	}
	sort.Slice(scheds, func(i, j int) bool { return scheds[i].Start.Before(scheds[j].Start) })
	n := 1
	for i := len(scheds) - 1; i > 0; i-- {
		if scheds[i].Start.Sub(scheds[i-1].Start) > interval {
			break
		}
		n++
	}
	if n < a.SequentialActivationThreshold {
		return
	}
	first, last := scheds[len(scheds)-n], scheds[len(scheds)-1]
	s.raise(ctx, AlertSequential, req.Target, Incident{ID: strings.ToLower(req.Target.Key() + "|" + req.PrincipalID + "|" + last.ID),
		PrincipalID: req.PrincipalID, At: s.now(), ActivationCount: n, SequenceStart: first.Start, SequenceEnd: last.Start})
}

// scanOutsidePIM raises RolesAssignedOutsidePimAlert for each standing
// member of a group that PIM governs (one with an eligibility) who holds
// no PIM assignment.
func (s *Service) scanOutsidePIM(ctx context.Context) error {
	var evs []events.Event
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		evs = nil
		scheds, err := list[Schedule](ctx, tx, objSchedule)
		if err != nil {
			return err
		}
		governed := map[string]Target{}
		assigned := map[string]bool{}
		now := s.now()
		for _, sc := range scheds {
			if sc.Target.Kind != KindGroup || sc.Target.AccessID != "member" {
				continue
			}
			if sc.Kind == Eligibility && sc.InForce(now) {
				governed[sc.Target.GroupID] = sc.Target
			}
			if sc.Kind == Assignment && sc.Status == StatusProvisioned {
				assigned[sc.Target.GroupID+"|"+sc.PrincipalID] = true
			}
		}
		for g, t := range governed {
			ms, err := tx.GroupMemberships(ctx, g)
			if err != nil {
				return err
			}
			for _, m := range ms {
				if m.Since.IsZero() && m.Until.IsZero() && !assigned[g+"|"+m.MemberID] {
					evs = append(evs, s.raiseTx(ctx, tx, AlertOutsidePIM, t, Incident{PrincipalID: m.MemberID, At: now})...)
				}
			}
		}
		return nil
	})
	if err == nil {
		s.publish(evs)
	}
	return err
}
