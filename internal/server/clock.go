package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
)

// maxClockSkew is how far a node's clock may stray from the database's
// before the node stops taking leases. Leased work (rotation, automatic
// purge, ending PIM access, backup jobs) judges time by the node's clock:
// a node running ahead would take a live lease from another node and
// purge keys whose retention has not ended.
const maxClockSkew = 2 * time.Second

// clockCheckEvery is how often the skew is measured.
const clockCheckEvery = 10 * time.Second

// ErrClockSkew refuses a lease to a node whose clock strays.
var ErrClockSkew = fault.New(fault.Unavailable, "ServiceUnavailable",
	"this node's clock is not in step with the database's: it does no scheduled work until its time is synchronised")

// clockGuard measures the skew between this node's clock and a shared
// store's, and keeps the node out of leased work while it is too large
// (or not yet known).
type clockGuard struct {
	db    store.Clock
	local func() time.Time
	log   *slog.Logger

	skew  atomic.Int64 // local minus database, in nanoseconds
	known atomic.Bool
	bad   atomic.Bool // logged as out of step, not yet back
}

func newClockGuard(db store.Clock, local func() time.Time, log *slog.Logger) *clockGuard {
	return &clockGuard{db: db, local: local, log: log}
}

// measure reads the database's clock and keeps the skew, taking the
// middle of the round trip as the moment it was read.
func (g *clockGuard) measure(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	before := g.local()
	db, err := g.db.DatabaseTime(ctx)
	if err != nil {
		return fmt.Errorf("server: reading the database's clock: %w", err)
	}
	after := g.local()
	skew := before.Add(after.Sub(before) / 2).Sub(db)
	g.skew.Store(int64(skew))
	g.known.Store(true)
	if out := skew > maxClockSkew || skew < -maxClockSkew; out != g.bad.Swap(out) {
		if out {
			g.log.Error("this node's clock is out of step with the database's: no scheduled work here until it is synchronised",
				"skew", skew.Round(time.Millisecond), "max", maxClockSkew)
		} else {
			g.log.Info("this node's clock is in step with the database's again", "skew", skew.Round(time.Millisecond))
		}
	}
	return nil
}

// run measures every clockCheckEvery until ctx ends.
func (g *clockGuard) run(ctx context.Context) {
	t := time.NewTicker(clockCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := g.measure(ctx); err != nil && ctx.Err() == nil {
				g.log.Warn("measuring the clock skew", "err", err)
			}
		}
	}
}

// allow says whether the node may take leases now.
func (g *clockGuard) allow() error {
	if !g.known.Load() || g.bad.Load() {
		return ErrClockSkew
	}
	return nil
}

// Skew is the last measured skew (local minus database).
func (g *clockGuard) Skew() time.Duration { return time.Duration(g.skew.Load()) }

// leaseGuarded is a store whose transactions take leases only while allow
// says so; everything else passes through.
type leaseGuarded struct {
	store.Store
	allow func() error
}

func (s leaseGuarded) Update(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.Update(ctx, func(tx store.Tx) error { return fn(guardedTx{Tx: tx, allow: s.allow}) })
}

type guardedTx struct {
	store.Tx
	allow func() error
}

func (t guardedTx) TakeLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	if err := t.allow(); err != nil {
		return false, err
	}
	return t.Tx.TakeLease(ctx, name, holder, now, ttl)
}
