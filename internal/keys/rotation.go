package keys

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/store"
)

// RotationPolicy says when a key rotates and how long new versions live.
// Durations are ISO 8601 strings such as "P90D", as on the wire.
type RotationPolicy struct {
	LifetimeActions []LifetimeAction `json:"lifetimeActions"`
	// ExpiryTime is the lifetime given to each new version ("" for none).
	ExpiryTime string    `json:"expiryTime,omitempty"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
}

// LifetimeAction triggers an action a duration after a version's creation
// or before its expiry: "Rotate" makes a new version, "Notify" publishes a
// near-expiry event.
type LifetimeAction struct {
	Action           string `json:"action"`
	TimeAfterCreate  string `json:"timeAfterCreate,omitempty"`
	TimeBeforeExpiry string `json:"timeBeforeExpiry,omitempty"`
}

var isoDuration = regexp.MustCompile(`^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$`)

// ParseDuration reads an ISO 8601 duration of years, months, days, hours,
// minutes and seconds. Years count 365 days and months 30, as Azure does
// when it checks policy minimums.
func ParseDuration(s string) (time.Duration, error) {
	m := isoDuration.FindStringSubmatch(s)
	if m == nil || s == "P" || s[len(s)-1] == 'T' {
		return 0, fault.Invalidf("%q is not an ISO 8601 duration such as P90D", s)
	}
	units := []time.Duration{365 * 24 * time.Hour, 30 * 24 * time.Hour, 24 * time.Hour, time.Hour, time.Minute, time.Second}
	var d time.Duration
	for i, u := range units {
		if m[i+1] == "" {
			continue
		}
		n, err := strconv.ParseInt(m[i+1], 10, 32)
		if err != nil {
			return 0, fault.Invalidf("%q is out of range", s)
		}
		d += time.Duration(n) * u
	}
	return d, nil
}

const (
	minExpiry       = 28 * 24 * time.Hour
	minRotateAfter  = 7 * 24 * time.Hour
	minBeforeExpiry = 7 * 24 * time.Hour
)

// validate applies Managed HSM's rules for rotation policies.
func (p *RotationPolicy) validate() error {
	var expiry time.Duration
	if p.ExpiryTime != "" {
		d, err := ParseDuration(p.ExpiryTime)
		if err != nil {
			return err
		}
		if d < minExpiry {
			return fault.Invalidf("expiryTime must be at least 28 days")
		}
		expiry = d
	}
	seen := map[string]bool{}
	for _, a := range p.LifetimeActions {
		if a.Action != "Rotate" && a.Action != "Notify" {
			return fault.Invalidf("lifetime action %q is unknown: use Rotate or Notify", a.Action)
		}
		if seen[a.Action] {
			return fault.Invalidf("a rotation policy has at most one %s action", a.Action)
		}
		seen[a.Action] = true
		if a.Action == "Notify" && a.TimeBeforeExpiry == "" {
			return fault.Invalidf("a Notify action is triggered by timeBeforeExpiry")
		}
		switch {
		case (a.TimeAfterCreate == "") == (a.TimeBeforeExpiry == ""):
			return fault.Invalidf("a lifetime action needs exactly one of timeAfterCreate and timeBeforeExpiry")
		case a.TimeAfterCreate != "":
			d, err := ParseDuration(a.TimeAfterCreate)
			if err != nil {
				return err
			}
			if d < minRotateAfter {
				return fault.Invalidf("timeAfterCreate must be at least 7 days")
			}
			if expiry != 0 && d >= expiry {
				return fault.Invalidf("timeAfterCreate must be shorter than expiryTime")
			}
		default:
			d, err := ParseDuration(a.TimeBeforeExpiry)
			if err != nil {
				return err
			}
			if expiry == 0 {
				return fault.Invalidf("timeBeforeExpiry needs an expiryTime")
			}
			if d < minBeforeExpiry || d >= expiry {
				return fault.Invalidf("timeBeforeExpiry must be at least 7 days and shorter than expiryTime")
			}
		}
	}
	return nil
}

// GetRotationPolicy returns a key's policy; a key without one has an
// empty policy, as Azure answers.
func (s *Service) GetRotationPolicy(ctx context.Context, h *domain.HSM, name string) (*RotationPolicy, error) {
	var key *store.Key
	err := s.store.View(ctx, func(tx store.Tx) (err error) {
		key, _, err = liveVersion(ctx, tx, h.Name, name, "")
		return err
	})
	if err != nil {
		return nil, err
	}
	p := &RotationPolicy{LifetimeActions: []LifetimeAction{}}
	if len(key.RotationPolicy) > 0 {
		if err := json.Unmarshal(key.RotationPolicy, p); err != nil {
			return nil, fmt.Errorf("keys: decoding rotation policy of %s: %w", name, err)
		}
	}
	return p, nil
}

// SetRotationPolicy validates and stores a key's policy.
func (s *Service) SetRotationPolicy(ctx context.Context, h *domain.HSM, name string, p RotationPolicy) (*RotationPolicy, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	if p.LifetimeActions == nil {
		p.LifetimeActions = []LifetimeAction{}
	}
	err := s.store.Update(ctx, func(tx store.Tx) error {
		key, _, err := liveVersion(ctx, tx, h.Name, name, "")
		if err != nil {
			return err
		}
		now := s.now().UTC().Truncate(time.Second)
		p.Created, p.Updated = now, now
		if len(key.RotationPolicy) > 0 {
			var old RotationPolicy
			if json.Unmarshal(key.RotationPolicy, &old) == nil {
				p.Created = old.Created
			}
		}
		if key.RotationPolicy, err = json.Marshal(p); err != nil {
			return fmt.Errorf("keys: encoding rotation policy: %w", err)
		}
		return tx.PutKey(ctx, key)
	})
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// Rotate adds a new version with the same type, size, operations and tags
// as the latest, expiring after the policy's expiryTime if it has one.
func (s *Service) Rotate(ctx context.Context, h *domain.HSM, name string) (*Version, error) {
	var latest *store.KeyVersion
	var key *store.Key
	err := s.store.View(ctx, func(tx store.Tx) (err error) {
		key, latest, err = liveVersion(ctx, tx, h.Name, name, "")
		return err
	})
	if err != nil {
		return nil, err
	}
	cur, err := unseal(h, latest)
	if err != nil {
		return nil, err
	}
	// A new version keeps what the latest may do: its operations, and an
	// exportable key's release policy, immutable or not.
	p := CreateParams{Type: cur.Type(), Size: cur.Size(), Curve: cur.Curve(), Ops: latest.Ops, Tags: latest.Tags,
		ReleasePolicy: decodePolicy(latest.ReleasePolicy)}
	p.Attributes.Exportable = &latest.Exportable
	if p.Type == kcrypto.EC {
		p.Size = 0
	}
	if len(key.RotationPolicy) > 0 {
		var pol RotationPolicy
		if err := json.Unmarshal(key.RotationPolicy, &pol); err == nil && pol.ExpiryTime != "" {
			if d, err := ParseDuration(pol.ExpiryTime); err == nil {
				exp := s.now().Add(d)
				p.Attributes.Expires = &exp
			}
		}
	}
	return s.Create(ctx, h, key.Name, p)
}
