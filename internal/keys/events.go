package keys

import (
	"time"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/events"
)

// SetEvents makes the service publish key events to p once the change
// behind each has committed, whoever asked for it: KeyNewVersionCreated
// for every new version (create, import, rotate, as Event Grid sends it)
// and KeyNearExpiry for the rotator's Notify actions. source names an HSM
// in events (its resource id). Call it before the service is used.
func (s *Service) SetEvents(p *events.Publisher, source func(*domain.HSM) string) {
	s.events = eventSink{p, source}
}

type eventSink struct {
	p      *events.Publisher
	source func(*domain.HSM) string
}

func (s *Service) publish(h *domain.HSM, typ, name, version string, nbf, exp time.Time) {
	if s.events.p == nil {
		return
	}
	unix := func(t time.Time) *int64 {
		if t.IsZero() {
			return nil
		}
		u := t.Unix()
		return &u
	}
	src := s.events.source(h)
	s.events.p.Publish(events.New(typ, src, s.now(), events.Data{ID: src + "/keys/" + name + "/" + version,
		VaultName: h.Name, ObjectName: name, Version: version, NBF: unix(nbf), EXP: unix(exp)}))
}
