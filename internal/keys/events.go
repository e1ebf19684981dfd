package keys

import (
	"time"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/events"
)

// Events is where the service publishes key events, once the change behind
// each has committed, whoever asked for it: KeyNewVersionCreated for every
// new version (create, import, rotate, as Event Grid sends it) and
// KeyNearExpiry for the rotator's Notify actions. Source names an HSM in
// events (its resource id). The zero Events publishes nothing.
type Events struct {
	Publisher *events.Publisher
	Source    func(*domain.HSM) string
}

func (s *Service) publish(h *domain.HSM, typ, name, version string, nbf, exp time.Time) {
	if s.events.Publisher == nil {
		return
	}
	unix := func(t time.Time) *int64 {
		if t.IsZero() {
			return nil
		}
		u := t.Unix()
		return &u
	}
	src := s.events.Source(h)
	s.events.Publisher.Publish(events.New(typ, src, s.now(), events.Data{ID: src + "/keys/" + name + "/" + version,
		VaultName: h.Name, ObjectName: name, Version: version, NBF: unix(nbf), EXP: unix(exp)}))
}
