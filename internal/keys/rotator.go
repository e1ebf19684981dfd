package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/events"
	"github.com/keyward/keyward/internal/store"
)

// Rotator carries out the keys' rotation policies: it rotates keys when a
// Rotate action falls due and has near-expiry events published for Notify
// actions (the key service publishes every event, KeyNewVersionCreated
// included). Each round looks at the latest version only, and a rotation
// makes a version created now, so a window missed while the server was
// down is caught up once, not once per missed period. Each round also
// purges the deleted keys whose retention has ended, as Azure does.
//
// A round runs only while its node holds the store lease RotationLease,
// so that of several nodes sharing a store one rotates.
type Rotator struct {
	keys *Service
	hsms func(context.Context) ([]*domain.HSM, error)
	// record is told of every action, for the audit log.
	record func(ctx context.Context, h *domain.HSM, op, key, version string, err error)
	log    *slog.Logger
	// Holder names this node in the lease; LeaseTTL is how long a round's
	// lease lasts unless renewed (Run sets it to twice its interval).
	Holder   string
	LeaseTTL time.Duration

	held atomic.Bool // whether the last round held the lease
}

// Held reports whether this node held the rotation lease at its last round.
func (r *Rotator) Held() bool { return r.held.Load() }

// RotationLease is the name of the store lease that rounds run under.
const RotationLease = "keys.rotator"

// NewRotator returns a rotator over the HSMs hsms lists; record (if not
// nil) is told of every action, for the audit log.
func NewRotator(k *Service, hsms func(context.Context) ([]*domain.HSM, error),
	record func(ctx context.Context, h *domain.HSM, op, key, version string, err error), log *slog.Logger) *Rotator {
	if record == nil {
		record = func(context.Context, *domain.HSM, string, string, string, error) {}
	}
	return &Rotator{keys: k, hsms: hsms, record: record, log: log, Holder: uuid.NewString(), LeaseTTL: 2 * time.Minute}
}

// Run rounds every interval until ctx ends, starting at once. When it
// ends it gives the lease up, so that a restarted node (or another one)
// need not wait for it to expire.
func (r *Rotator) Run(ctx context.Context, interval time.Duration) {
	r.LeaseTTL = 2 * interval
	defer func() {
		ctx := context.WithoutCancel(ctx)
		err := r.keys.store.Update(ctx, func(tx store.Tx) error { return tx.ReleaseLease(ctx, RotationLease, r.Holder) })
		if err != nil {
			r.log.Warn("releasing the rotation lease", "err", err)
		}
	}()
	for {
		if err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("key rotation round failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// RunOnce carries out every action due now, if this node holds (or can
// take) the rotation lease; otherwise it does nothing.
func (r *Rotator) RunOnce(ctx context.Context) error {
	held, err := store.TakeLease(ctx, r.keys.store, RotationLease, r.Holder, r.keys.now(), r.LeaseTTL)
	r.held.Store(held && err == nil)
	if err != nil || !held {
		return err
	}
	hsms, err := r.hsms(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range hsms {
		if h.State != domain.StateActive {
			continue
		}
		if err := r.hsm(ctx, h); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", h.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (r *Rotator) hsm(ctx context.Context, h *domain.HSM) error {
	if err := r.purgeDue(ctx, h); err != nil {
		return err
	}
	after := ""
	for {
		var items []store.KeyListItem
		err := r.keys.store.View(ctx, func(tx store.Tx) (err error) {
			items, err = tx.ListKeys(ctx, h.Name, false, after, 200)
			return err
		})
		if err != nil {
			return err
		}
		for i := range items {
			if len(items[i].Key.RotationPolicy) > 0 {
				r.key(ctx, h, &items[i])
			}
		}
		if len(items) < 200 {
			return nil
		}
		after = items[len(items)-1].Key.Name
	}
}

// purgeDue purges h's deleted keys whose retention has ended.
func (r *Rotator) purgeDue(ctx context.Context, h *domain.HSM) error {
	now := r.keys.now()
	var due []string
	after := ""
	for {
		var items []store.KeyListItem
		err := r.keys.store.View(ctx, func(tx store.Tx) (err error) {
			items, err = tx.ListKeys(ctx, h.Name, true, after, 200)
			return err
		})
		if err != nil {
			return err
		}
		for _, it := range items {
			if sp := it.Key.ScheduledPurge; !sp.IsZero() && !now.Before(sp) {
				due = append(due, it.Key.Name)
			}
		}
		if len(items) < 200 {
			break
		}
		after = items[len(items)-1].Key.Name
	}
	for _, name := range due {
		purged, err := r.keys.PurgeDue(ctx, h, name)
		if purged || err != nil {
			r.record(ctx, h, "KeyPurge", name, "", err)
		}
	}
	return nil
}

func (r *Rotator) key(ctx context.Context, h *domain.HSM, it *store.KeyListItem) {
	var p RotationPolicy
	if err := json.Unmarshal(it.Key.RotationPolicy, &p); err != nil {
		r.log.Error("unreadable rotation policy", "hsm", h.Name, "key", it.Key.Name, "err", err)
		return
	}
	now := r.keys.now()
	v := &it.Latest
	due := func(a LifetimeAction) bool {
		if a.TimeAfterCreate != "" {
			d, err := ParseDuration(a.TimeAfterCreate)
			return err == nil && !now.Before(v.Created.Add(d))
		}
		d, err := ParseDuration(a.TimeBeforeExpiry)
		return err == nil && !v.Expires.IsZero() && !now.Before(v.Expires.Add(-d))
	}
	for _, a := range p.LifetimeActions {
		if !due(a) {
			continue
		}
		switch a.Action {
		case "Rotate":
			nv, err := r.keys.Rotate(ctx, h, it.Key.Name)
			ver := ""
			if nv != nil {
				ver = nv.Version
			}
			r.record(ctx, h, "KeyRotate", it.Key.Name, ver, err)
			if err != nil {
				r.log.Error("scheduled rotation failed", "hsm", h.Name, "key", it.Key.Name, "err", err)
			}
			return // a new version: the other action is judged on it next round
		case "Notify":
			r.notify(ctx, h, it)
		}
	}
}

// notify publishes a near-expiry event once per version.
func (r *Rotator) notify(ctx context.Context, h *domain.HSM, it *store.KeyListItem) {
	var first bool
	err := r.keys.store.Update(ctx, func(tx store.Tx) (err error) {
		first, err = tx.NoteNearExpiry(ctx, it.Latest.HSM, it.Latest.Name, it.Latest.Version, r.keys.now())
		return err
	})
	if err != nil || !first {
		return
	}
	r.keys.publish(h, events.KeyNearExpiry, it.Key.Name, it.Latest.Version, it.Latest.NotBefore, it.Latest.Expires)
	r.record(ctx, h, "KeyNearExpiryEvent", it.Key.Name, it.Latest.Version, nil)
}
