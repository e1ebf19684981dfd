package domain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
)

// HSM states. An HSM is created "provisioned": it serves only role and
// security-domain operations. Downloading its security domain makes it
// "active". Asking for its transfer key instead puts it in "recovery",
// where it waits for the upload of an existing domain, which makes it
// active with that domain's keys. A dev HSM starts active.
const (
	StateProvisioned = "provisioned"
	StateRecovery    = "recovery"
	StateActive      = "active"
)

// HSM is one Managed HSM pool with its opened domain key.
type HSM struct {
	ID   string
	Name string
	// DomainID names the security domain; an HSM recovered from a domain
	// takes its id, so key material and backups move with it.
	DomainID        string
	Key             *Key
	State           string
	Admins          []string
	RetentionDays   int
	PurgeProtection bool
	Created         time.Time
	ResourceGroup   string
	Location        string
	Tags            map[string]string
	// Deleted is set while the HSM is soft-deleted: it serves nothing and
	// keeps its name until it is purged or recovered.
	Deleted time.Time
}

// ErrHSMNotFound is returned for an unknown HSM name.
var ErrHSMNotFound = fault.New(fault.NotFound, "ResourceNotFound", "the managed HSM does not exist")

// HSMNotFound is ErrHSMNotFound naming the HSM, so that a typo in a name
// shows in the answer.
func HSMNotFound(name string) error {
	return ErrHSMNotFound.With("the managed HSM %q does not exist", name)
}

// Registry creates HSMs and keeps the opened ones in memory.
type Registry struct {
	store store.Store
	seal  Seal
	rand  io.Reader
	now   func() time.Time

	// opened holds the opened HSMs by lower-cased name. Its one
	// invalidation path is the store subscription (apply): a committed
	// change to an HSM drops its copy. An open that raced with a change
	// is not kept: opens remember the generation.
	mu     sync.RWMutex
	gen    uint64
	opened map[string]*HSM

	// alert, if set, is told of each step of the two-person rule.
	alert func(context.Context, SecurityDomainEvent)
}

// NewRegistry returns a registry over s whose domain keys rest under seal.
// alert, if not nil, is told of each security-domain download request,
// approval and download, and of changes to the two-person rule.
func NewRegistry(s store.Store, seal Seal, rand io.Reader, now func() time.Time, alert func(context.Context, SecurityDomainEvent)) *Registry {
	r := &Registry{store: s, seal: seal, rand: rand, now: now, opened: map[string]*HSM{}, alert: alert}
	s.Subscribe(r.apply)
	return r
}

// CreateParams describe a new HSM.
type CreateParams struct {
	Name            string
	Admins          []string
	RetentionDays   int // 7..90, default 90
	PurgeProtection bool
	// Activated creates the HSM active, as for the dev HSM; otherwise it
	// waits for its security domain.
	Activated     bool
	ResourceGroup string
	Location      string
	Tags          map[string]string
}

var hsmName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$`)

// Create makes a new HSM with a fresh domain key.
func (r *Registry) Create(ctx context.Context, p CreateParams) (h *HSM, err error) {
	err = r.store.Update(ctx, func(tx store.Tx) (err error) { h, err = r.CreateTx(ctx, tx, p); return err })
	return h, err
}

// CreateTx is Create inside tx, for a caller that does more in the same
// transaction (seeding the HSM's administrators). A name taken without
// regard to case is a Conflict.
func (r *Registry) CreateTx(ctx context.Context, tx store.Tx, p CreateParams) (*HSM, error) {
	if !hsmName.MatchString(p.Name) || strings.EqualFold(p.Name, "tenant") {
		return nil, fault.Invalidf("HSM names have 3 to 24 letters, digits and dashes, start with a letter and end with a letter or digit")
	}
	if p.RetentionDays == 0 {
		p.RetentionDays = 90
	}
	if p.RetentionDays < 7 || p.RetentionDays > 90 {
		return nil, fault.Invalidf("retention days must be between 7 and 90")
	}
	if len(p.Admins) == 0 {
		return nil, fault.Invalidf("an HSM needs at least one initial administrator")
	}
	key, err := GenerateKey(r.rand)
	if err != nil {
		return nil, err
	}
	h := &HSM{ID: uuid.NewString(), Name: p.Name, DomainID: uuid.NewString(), Key: key, State: StateProvisioned,
		Admins: p.Admins, RetentionDays: p.RetentionDays, PurgeProtection: p.PurgeProtection, Created: r.now(),
		ResourceGroup: p.ResourceGroup, Location: p.Location, Tags: p.Tags}
	if p.Activated {
		h.State = StateActive
	}
	sealed, err := SealKey(ctx, r.seal, key, h.DomainID)
	if err != nil {
		return nil, err
	}
	err = tx.InsertHSM(ctx, &store.HSM{ID: h.ID, Name: h.Name, State: h.State, DomainID: h.DomainID, DomainKey: sealed,
		Admins: h.Admins, RetentionDays: h.RetentionDays, PurgeProtection: h.PurgeProtection, Created: h.Created,
		ResourceGroup: h.ResourceGroup, Location: h.Location, Tags: h.Tags})
	if errors.Is(err, store.ErrConflict) {
		return nil, fault.Errorf(fault.Conflict, "Conflict", "an HSM named %s already exists", p.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("domain: storing HSM %s: %w", p.Name, err)
	}
	return h, nil
}

// Get returns the HSM called name, ignoring case (as Azure's names and
// host routing do), opening its domain key on first use.
func (r *Registry) Get(ctx context.Context, name string) (*HSM, error) {
	r.mu.RLock()
	h, ok := r.opened[strings.ToLower(name)]
	gen := r.gen
	r.mu.RUnlock()
	if ok {
		return h, nil
	}
	var rec *store.HSM
	err := r.store.View(ctx, func(tx store.Tx) (err error) { rec, err = tx.GetHSM(ctx, name); return err })
	if errors.Is(err, store.ErrNotFound) {
		return nil, HSMNotFound(name)
	}
	if err != nil {
		return nil, err
	}
	h, err = r.open(ctx, rec)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.gen == gen {
		r.opened[strings.ToLower(name)] = h
	}
	r.mu.Unlock()
	return h, nil
}

// open turns a stored HSM into a usable one, unsealing its domain key. An
// HSM in recovery has no domain key until its upload.
func (r *Registry) open(ctx context.Context, rec *store.HSM) (*HSM, error) {
	h := &HSM{ID: rec.ID, Name: rec.Name, DomainID: rec.DomainID, State: rec.State, Admins: rec.Admins,
		RetentionDays: rec.RetentionDays, PurgeProtection: rec.PurgeProtection, Created: rec.Created, ResourceGroup: rec.ResourceGroup,
		Location: rec.Location, Tags: rec.Tags, Deleted: rec.Deleted}
	if len(rec.DomainKey) == 0 {
		return h, nil
	}
	key, err := OpenKey(ctx, r.seal, rec.DomainKey, rec.DomainID)
	if err != nil {
		return nil, err
	}
	h.Key = key
	return h, nil
}

// List returns every HSM, by name.
func (r *Registry) List(ctx context.Context) ([]*HSM, error) {
	var recs []*store.HSM
	if err := r.store.View(ctx, func(tx store.Tx) (err error) { recs, err = tx.ListHSMs(ctx); return err }); err != nil {
		return nil, err
	}
	out := make([]*HSM, 0, len(recs))
	for _, rec := range recs {
		h, err := r.Get(ctx, rec.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

// Delete removes an HSM with all its keys and roles, for good.
func (r *Registry) Delete(ctx context.Context, name string) error {
	err := r.store.Update(ctx, func(tx store.Tx) error { return tx.DeleteHSM(ctx, name) })
	if errors.Is(err, store.ErrNotFound) {
		return HSMNotFound(name)
	}
	return err
}

// SetTags replaces an HSM's tags.
func (r *Registry) SetTags(ctx context.Context, name string, tags map[string]string) error {
	return r.update(ctx, name, func(rec *store.HSM) error { rec.Tags = tags; return nil })
}

// SoftDelete marks an HSM deleted; Recover undoes it.
func (r *Registry) SoftDelete(ctx context.Context, name string) error {
	return r.update(ctx, name, func(rec *store.HSM) error { rec.Deleted = r.now().UTC(); return nil })
}

// Recover brings a soft-deleted HSM back.
func (r *Registry) Recover(ctx context.Context, name string) error {
	return r.update(ctx, name, func(rec *store.HSM) error {
		if rec.Deleted.IsZero() {
			return ErrWrongState.With("the HSM %s is not deleted", name)
		}
		rec.Deleted = time.Time{}
		return nil
	})
}

// apply is the registry's store subscription: it drops the opened copy
// of each changed HSM; the next Get reads the store. HSMs handed out
// before stay valid snapshots for the requests using them.
func (r *Registry) apply(changes []store.Change) {
	for _, c := range changes {
		switch c.Kind {
		case store.ChangeHSM:
			r.mu.Lock()
			r.gen++
			delete(r.opened, strings.ToLower(c.HSM))
			r.mu.Unlock()
		case store.ChangeAll:
			r.mu.Lock()
			r.gen++
			clear(r.opened)
			r.mu.Unlock()
		}
	}
}
