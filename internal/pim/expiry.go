package pim

import (
	"context"
	"time"

	"github.com/keyward/keyward/internal/events"
	"github.com/keyward/keyward/internal/store"
)

// approvalWindow is how long a request waits for approval (Azure: 24 h).
const approvalWindow = 24 * time.Hour

const leaseName = "pim.expiry"

// Held reports whether this node held the expiry lease at Run's last round.
func (s *Service) Held() bool { return s.held.Load() }

// Run ends expired access every interval (default one second) while it
// holds the store's PIM lease, and scans for alerts when the directory
// changed, until ctx is done. Access checks do not wait for it: a
// membership stops counting at its end by itself.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		held, err := store.TakeLease(ctx, s.cfg.Store, leaseName, s.cfg.Holder, s.now(), 10*interval+10*time.Second)
		s.held.Store(held && err == nil)
		if err != nil && ctx.Err() == nil {
			s.cfg.Log.Error("pim: taking the expiry lease", "err", err)
		}
		if held {
			if err := s.Expire(ctx); err != nil && ctx.Err() == nil {
				s.cfg.Log.Error("pim: ending expired access", "err", err)
			}
			select {
			case <-s.dirty:
				if err := s.scanOutsidePIM(ctx); err != nil && ctx.Err() == nil {
					s.cfg.Log.Error("pim: scanning for alerts", "err", err)
				}
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

// Expire ends the schedules whose end has passed (Expired), takes their
// access away, and times out requests that waited too long for approval.
func (s *Service) Expire(ctx context.Context) error {
	due := false
	if err := s.view(ctx, func(tx store.Tx) error {
		now := s.now()
		scheds, err := list[Schedule](ctx, tx, objSchedule)
		if err != nil {
			return err
		}
		for _, sc := range scheds {
			due = due || (sc.Status == StatusProvisioned && !sc.End.IsZero() && !now.Before(sc.End))
		}
		reqs, err := list[Request](ctx, tx, objRequest)
		for _, r := range reqs {
			due = due || (r.Status == StatusPendingApproval && now.Sub(r.Created) >= approvalWindow)
		}
		return err
	}); err != nil || !due {
		return err
	}
	var evs []events.Event
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		evs = nil
		now := s.now()
		scheds, err := list[Schedule](ctx, tx, objSchedule)
		if err != nil {
			return err
		}
		for _, sc := range scheds {
			if sc.Status != StatusProvisioned || sc.End.IsZero() || now.Before(sc.End) {
				continue
			}
			if sc.Kind == Assignment {
				prov, err := s.prov(sc.Target.Kind)
				if err != nil {
					return err
				}
				if err := prov.Revoke(ctx, tx, sc.Target, sc.PrincipalID, sc.RequestID); err != nil {
					return err
				}
			}
			sc.Status, sc.Updated = StatusExpired, now
			if err := put(ctx, tx, objSchedule, sc.ID, sc); err != nil {
				return err
			}
			evs = append(evs, s.scheduleEvent(EventExpired, sc))
		}
		reqs, err := list[Request](ctx, tx, objRequest)
		if err != nil {
			return err
		}
		for _, r := range reqs {
			if r.Status == StatusPendingApproval && now.Sub(r.Created) >= approvalWindow {
				r.Status, r.Completed = StatusTimedOut, now
				if err := put(ctx, tx, objRequest, r.ID, r); err != nil {
					return err
				}
				if a, err := get[Approval](ctx, tx, objApproval, r.ID, ErrApprovalNotFound); err == nil {
					for i := range a.Stages {
						if a.Stages[i].Status != StageCompleted {
							a.Stages[i].Status = StageExpired
						}
					}
					if err := put(ctx, tx, objApproval, a.ID, a); err != nil {
						return err
					}
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
