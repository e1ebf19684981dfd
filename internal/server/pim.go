package server

import (
	"context"
	"time"

	"github.com/keyward/keyward/internal/events"
	"github.com/keyward/keyward/internal/pim"
	"github.com/keyward/keyward/internal/pim/armroles"
)

// buildPIM makes the PIM service (PIM for Groups on Graph; the resource
// manager registers the role provisioner on it) and gives it to Graph.
func (s *Server) buildPIM(publisher *events.Publisher, clock func() time.Time, tenant string) {
	p := pim.New(pim.Config{Store: s.store, Now: clock, Groups: s.dir.GroupsOf, Events: publisher,
		Source: "/tenants/" + tenant + "/providers/Keyward.PIM", Log: s.log})
	s.graph.SetPIM(p)
	s.pim = p
	// The loop ends expired access about every second (faster when tests
	// run the rotation faster).
	s.pimLoop = func(ctx context.Context) {
		interval := time.Second
		if s.cfg.RotationInterval > 0 && s.cfg.RotationInterval < interval {
			interval = s.cfg.RotationInterval
		}
		p.Run(ctx, interval)
	}
}

// rolePIM connects PIM for Azure roles (armroles, served on the resource
// manager) to the core: its Keyward.PIM.* events and its alerts are the
// core's, and the PIM loop also ends its expired schedules and scans for
// standing role assignments made outside PIM.
func (s *Server) rolePIM(r *armroles.Service) *armroles.Service {
	r.Report(s.pim)
	loop := s.pimLoop
	s.pimLoop = func(ctx context.Context) {
		interval := time.Second
		if s.cfg.RotationInterval > 0 && s.cfg.RotationInterval < interval {
			interval = s.cfg.RotationInterval
		}
		go r.Run(ctx, interval)
		loop(ctx)
	}
	return r
}

// PIM returns the PIM core (tests read and configure its alerts).
func (s *Server) PIM() *pim.Service { return s.pim }
