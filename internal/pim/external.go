package pim

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/events"
	"github.com/keyward/keyward/internal/store"
)

// A lifecycle kept outside the Service (PIM for Azure roles, package
// armroles, keeps its own requests and schedules) reports through these
// methods, so its events and alerts are the Service's: the same
// CloudEvents source and publisher, the same alert records that Alerts
// returns and ConfigureAlert changes.

// Publish posts a Keyward.PIM.* CloudEvent (typ one of the Event* types)
// about subject (a request or schedule id) with data d, which must never
// carry a secret.
func (s *Service) Publish(typ, subject string, d events.PIMData) {
	s.publish([]events.Event{events.NewPIM(typ, s.cfg.Source, subject, s.now(), d)})
}

// RaiseAlert records an incident of alert typ (one of AlertTypes) on t
// for principalID, unless that incident is recorded already, and posts
// Keyward.PIM.AlertRaised; a disabled alert records nothing.
func (s *Service) RaiseAlert(ctx context.Context, typ string, t Target, principalID string) {
	s.raise(ctx, typ, t, Incident{PrincipalID: strings.ToLower(principalID), At: s.now()})
}

// NoteActivations raises SequentialActivationRenewalsAlert on t when the
// principal's activations of it (their start times, in any order; lastID
// names the latest) end in a run of at least the alert's threshold, each
// within timeIntervalBetweenActivations of the one before. Call it after
// each activation.
func (s *Service) NoteActivations(ctx context.Context, t Target, principalID string, starts []time.Time, lastID string) {
	if len(starts) == 0 {
		return
	}
	var a *Alert
	if err := s.view(ctx, func(tx store.Tx) (err error) { a, err = s.alert(ctx, tx, AlertSequential); return err }); err != nil || !a.IsEnabled {
		return
	}
	interval, err := ParseDuration(a.TimeIntervalBetweenActivations)
	if err != nil {
		interval = defaultInterval
	}
	starts = append([]time.Time(nil), starts...)
	sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
	n := 1
	for i := len(starts) - 1; i > 0 && starts[i].Sub(starts[i-1]) <= interval; i-- {
		n++
	}
	if n < a.SequentialActivationThreshold {
		return
	}
	principalID = strings.ToLower(principalID)
	s.raise(ctx, AlertSequential, t, Incident{ID: strings.ToLower(t.Key() + "|" + principalID + "|" + lastID), PrincipalID: principalID,
		At: s.now(), ActivationCount: n, SequenceStart: starts[len(starts)-n], SequenceEnd: starts[len(starts)-1]})
}
