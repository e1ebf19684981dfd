package identity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
)

// GlobalAdministrator is the directory role that may change the directory.
const GlobalAdministrator = "Global Administrator"

// PrivilegedRoleAdministrator is the directory role that administers
// privileged access (PIM eligibilities, policies and alerts), as Global
// Administrators also may.
const PrivilegedRoleAdministrator = "Privileged Role Administrator"

// Directory manages the principals of one tenant.
type Directory struct {
	store  store.Store
	tenant string
	rand   io.Reader
	now    func() time.Time

	// groups caches each principal's transitive group ids. Its one
	// invalidation path is the store subscription (apply): any committed
	// membership or principal change clears it. A fill that raced with a
	// change is not kept: fills remember the generation.
	mu     sync.Mutex
	gen    uint64
	groups map[string]cachedGroups

	// pepper keys the HMAC under which client secrets are stored.
	pepper []byte
	// seal protects the TOTP secrets.
	seal domain.Seal
	// slots bounds the Argon2id hashes running at once (19 MiB each).
	slots chan struct{}
	// slowHashes counts the Argon2id hashes run, for tests.
	slowHashes atomic.Int64
	// clients are the public clients the server registered (the console).
	clients []PublicClient
}

// NewDirectory returns the directory of tenant held in s. Before it adds or
// checks client secrets it needs the node's pepper: see SetPepper.
func NewDirectory(s store.Store, tenant string, rand io.Reader, now func() time.Time) *Directory {
	d := &Directory{store: s, tenant: tenant, rand: rand, now: now, groups: map[string]cachedGroups{}, slots: newSlots()}
	s.Subscribe(d.apply)
	return d
}

// SetPepper sets the key under which client secrets are stored (see
// LoadOrCreatePepper). Secrets added under one pepper are accepted only
// under the same one. Call it before the directory is used.
func (d *Directory) SetPepper(pepper []byte) { d.pepper = pepper }

// TenantID returns the directory's tenant.
func (d *Directory) TenantID() string { return d.tenant }

// apply is the directory's store subscription.
func (d *Directory) apply(changes []store.Change) {
	for _, c := range changes {
		if c.Kind == store.ChangePrincipal || c.Kind == store.ChangeAll {
			d.mu.Lock()
			d.gen++
			clear(d.groups)
			d.mu.Unlock()
			return
		}
	}
}

func mapErr(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrNotFound
	case errors.Is(err, store.ErrConflict):
		return ErrExists
	}
	return err
}

var upnPattern = regexp.MustCompile(`^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+$`)

func requireName(field, v string) error {
	if strings.TrimSpace(v) == "" || len(v) > 256 {
		return fault.Invalidf("%s must be 1 to 256 characters", field)
	}
	return nil
}

// CreateUser adds a user who signs in with upn and password.
func (d *Directory) CreateUser(ctx context.Context, displayName, upn, password string) (*Principal, error) {
	if err := requireName("displayName", displayName); err != nil {
		return nil, err
	}
	if !upnPattern.MatchString(upn) {
		return nil, fault.Invalidf("userPrincipalName must look like name@domain")
	}
	if len(password) < 8 {
		return nil, fault.Invalidf("the password must have at least 8 characters")
	}
	var h string
	var err error
	if berr := d.slow(ctx, func() { h, err = hashSecret(d.rand, password) }); berr != nil {
		return nil, berr
	}
	if err != nil {
		return nil, err
	}
	p := &Principal{ID: uuid.NewString(), Kind: store.KindUser, DisplayName: displayName, UPN: upn, PasswordHash: h, Created: d.now()}
	return p, d.insert(ctx, p)
}

// CreateGroup adds a security group.
func (d *Directory) CreateGroup(ctx context.Context, displayName, mailNickname string) (*Principal, error) {
	if err := requireName("displayName", displayName); err != nil {
		return nil, err
	}
	if err := requireName("mailNickname", mailNickname); err != nil {
		return nil, err
	}
	p := &Principal{ID: uuid.NewString(), Kind: store.KindGroup, DisplayName: displayName, MailNickname: mailNickname, Created: d.now()}
	return p, d.insert(ctx, p)
}

// CreateServicePrincipal adds an application identity of the given kind
// (service principal or managed identity). It has no secret until
// AddSecret gives it one.
func (d *Directory) CreateServicePrincipal(ctx context.Context, kind, displayName string, roles ...string) (*Principal, error) {
	if kind != store.KindServicePrincipal && kind != store.KindManagedIdentity {
		return nil, fmt.Errorf("identity: %q is not an application kind", kind)
	}
	if err := requireName("displayName", displayName); err != nil {
		return nil, err
	}
	p := &Principal{ID: uuid.NewString(), Kind: kind, DisplayName: displayName, AppID: uuid.NewString(), DirectoryRoles: roles, Created: d.now()}
	return p, d.insert(ctx, p)
}

// CreateManagedIdentityTx creates a managed identity's service principal in
// tx, so that a resource and its identity are made in one transaction (a
// crash between them leaves neither).
func (d *Directory) CreateManagedIdentityTx(ctx context.Context, tx store.Tx, displayName string) (*Principal, error) {
	if err := requireName("displayName", displayName); err != nil {
		return nil, err
	}
	p := &Principal{ID: uuid.NewString(), Kind: store.KindManagedIdentity, DisplayName: displayName, AppID: uuid.NewString(), Created: d.now()}
	return p, mapErr(tx.InsertPrincipal(ctx, p))
}

// HasRole reports whether principal id holds a directory role.
func (d *Directory) HasRole(ctx context.Context, id, role string) (bool, error) {
	p, err := d.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return slices.Contains(p.DirectoryRoles, role), nil
}

// AddSecret adds a client secret, valid for a year, to an application
// and returns it.
func (d *Directory) AddSecret(ctx context.Context, principalID, displayName string) (string, *store.Credential, error) {
	return d.AddSecretFor(ctx, principalID, displayName, 365*24*time.Hour)
}

// MaxSecrets is how many unexpired client secrets an application may hold.
const MaxSecrets = 20

// AddSecretFor adds a client secret valid for life and returns it. It
// refuses a secret beyond MaxSecrets unexpired ones; expired ones are
// dropped on the way.
func (d *Directory) AddSecretFor(ctx context.Context, principalID, displayName string, life time.Duration) (string, *store.Credential, error) {
	return d.addSecret(ctx, principalID, displayName, life, false)
}

// ReplaceSecretFor adds a client secret valid for life, as AddSecretFor,
// and removes the application's other secrets of the same display name in
// the same transaction: a caller that fetches a secret on each start (the
// identity agent) keeps one live secret, not one per start.
func (d *Directory) ReplaceSecretFor(ctx context.Context, principalID, displayName string, life time.Duration) (string, *store.Credential, error) {
	return d.addSecret(ctx, principalID, displayName, life, true)
}

// ErrSecretNotFound: no client secret of the application has that key id.
var ErrSecretNotFound = fault.New(fault.NotFound, "Request_ResourceNotFound", "the application has no password credential with that keyId")

// Secrets lists an application's client secrets (never the secrets
// themselves: they are kept as hashes), oldest first.
func (d *Directory) Secrets(ctx context.Context, principalID string) ([]*store.Credential, error) {
	var creds []*store.Credential
	err := d.store.View(ctx, func(tx store.Tx) (err error) { creds, err = tx.Credentials(ctx, principalID); return err })
	return creds, err
}

// RemoveSecret removes the application's client secret keyID; tokens
// already issued with it stay valid until they expire, as in Entra.
func (d *Directory) RemoveSecret(ctx context.Context, principalID, keyID string) error {
	return d.store.Update(ctx, func(tx store.Tx) error {
		creds, err := tx.Credentials(ctx, principalID)
		if err != nil {
			return err
		}
		for _, c := range creds {
			if strings.EqualFold(c.ID, keyID) {
				return tx.DeleteCredential(ctx, c.ID)
			}
		}
		return ErrSecretNotFound
	})
}

func (d *Directory) addSecret(ctx context.Context, principalID, displayName string, life time.Duration, replace bool) (string, *store.Credential, error) {
	if d.pepper == nil {
		return "", nil, errors.New("identity: the directory has no secret pepper")
	}
	var secret string
	var cred *store.Credential
	err := d.store.Update(ctx, func(tx store.Tx) error {
		p, err := tx.GetPrincipal(ctx, principalID)
		if err != nil {
			return err
		}
		if p.AppID == "" {
			return fault.Invalidf("only applications have client secrets")
		}
		creds, err := tx.Credentials(ctx, principalID)
		if err != nil {
			return err
		}
		now := d.now()
		live := 0
		keyIDs := map[string]bool{}
		for _, c := range creds {
			if !now.Before(c.Expires) || (replace && c.DisplayName == displayName) {
				if err := tx.DeleteCredential(ctx, c.ID); err != nil {
					return err
				}
				continue
			}
			live++
			keyIDs[keyIDOf(c.ID)] = true
		}
		if live >= MaxSecrets {
			return fault.Invalidf("the application already has %d unexpired client secrets, the most it may hold: remove one or let one expire", live)
		}
		// Key ids are 48 random bits; one that repeats within the
		// application would make a secret's lookup ambiguous.
		for {
			if secret, cred, err = d.newCredential(principalID, displayName, life, now); err != nil {
				return err
			}
			if !keyIDs[keyIDOf(cred.ID)] {
				break
			}
		}
		return tx.InsertCredential(ctx, cred)
	})
	if err != nil {
		return "", nil, mapErr(err)
	}
	return secret, cred, nil
}

func (d *Directory) newCredential(principalID, displayName string, life time.Duration, now time.Time) (string, *store.Credential, error) {
	u, err := uuid.NewRandomFromReader(d.rand)
	if err != nil {
		return "", nil, fmt.Errorf("identity: reading randomness: %w", err)
	}
	id := u.String()
	secret, err := newSecret(d.rand, keyIDOf(id))
	if err != nil {
		return "", nil, err
	}
	return secret, &store.Credential{ID: id, PrincipalID: principalID, DisplayName: displayName,
		Hash: d.mac(secret), Hint: secret[:3], Created: now, Expires: now.Add(life)}, nil
}

func (d *Directory) insert(ctx context.Context, p *Principal) error {
	err := d.store.Update(ctx, func(tx store.Tx) error { return tx.InsertPrincipal(ctx, p) })
	return mapErr(err)
}

// Get returns the principal with object id id.
func (d *Directory) Get(ctx context.Context, id string) (*Principal, error) {
	var p *Principal
	err := d.store.View(ctx, func(tx store.Tx) (err error) {
		p, err = tx.GetPrincipal(ctx, id)
		return err
	})
	return p, mapErr(err)
}

// GetByAppID returns the application whose client id is appID.
func (d *Directory) GetByAppID(ctx context.Context, appID string) (*Principal, error) {
	var p *Principal
	err := d.store.View(ctx, func(tx store.Tx) (err error) {
		p, err = tx.PrincipalByAppID(ctx, appID)
		return err
	})
	return p, mapErr(err)
}

// GetByUPN returns the user whose user principal name is upn (any case).
func (d *Directory) GetByUPN(ctx context.Context, upn string) (*Principal, error) {
	var p *Principal
	err := d.store.View(ctx, func(tx store.Tx) (err error) {
		p, err = tx.PrincipalByUPN(ctx, upn)
		return err
	})
	return p, mapErr(err)
}

// List returns the principals of one kind, by display name.
func (d *Directory) List(ctx context.Context, kind string) ([]*Principal, error) {
	var out []*Principal
	err := d.store.View(ctx, func(tx store.Tx) (err error) {
		out, err = tx.ListPrincipals(ctx, kind)
		return err
	})
	return out, mapErr(err)
}

// Delete removes a principal, its secrets and its memberships.
func (d *Directory) Delete(ctx context.Context, id string) error {
	err := d.store.Update(ctx, func(tx store.Tx) error { return tx.DeletePrincipal(ctx, id) })
	return mapErr(err)
}

// AddMember adds member (any principal) to a group.
func (d *Directory) AddMember(ctx context.Context, groupID, memberID string) error {
	if groupID == memberID {
		return fault.Invalidf("a group cannot be a member of itself")
	}
	err := d.store.Update(ctx, func(tx store.Tx) error {
		g, err := tx.GetPrincipal(ctx, groupID)
		if err != nil {
			return err
		}
		if g.Kind != store.KindGroup {
			return fault.Invalidf("%s is not a group", groupID)
		}
		if _, err := tx.GetPrincipal(ctx, memberID); err != nil {
			return err
		}
		return tx.AddMember(ctx, groupID, memberID)
	})
	if errors.Is(err, store.ErrConflict) {
		return fault.New(fault.Conflict, "Request_BadRequest", "the member is already in the group")
	}
	return mapErr(err)
}

// RemoveMember removes a direct member from a group.
func (d *Directory) RemoveMember(ctx context.Context, groupID, memberID string) error {
	err := d.store.Update(ctx, func(tx store.Tx) error { return tx.RemoveMember(ctx, groupID, memberID) })
	return mapErr(err)
}

// Members returns the direct members of a group.
func (d *Directory) Members(ctx context.Context, groupID string) ([]*Principal, error) {
	var out []*Principal
	err := d.store.View(ctx, func(tx store.Tx) error {
		if _, err := tx.GetPrincipal(ctx, groupID); err != nil {
			return err
		}
		ms, err := tx.GroupMemberships(ctx, groupID)
		if err != nil {
			return err
		}
		now := d.now()
		for _, m := range ms {
			if !m.CountsAt(now) {
				continue
			}
			p, err := tx.GetPrincipal(ctx, m.MemberID)
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		return nil
	})
	return out, mapErr(err)
}

// cachedGroups is a principal's groups, good until a membership window
// opens or closes (zero: until the next change).
type cachedGroups struct {
	ids   []string
	until time.Time
}

// GroupsOf returns every group that principalID belongs to, directly or
// through nested groups. A membership bounded in time (a PIM activation)
// counts only inside its window, by the directory's clock, whether or not
// anything removed it yet.
func (d *Directory) GroupsOf(ctx context.Context, principalID string) ([]string, error) {
	now := d.now()
	d.mu.Lock()
	cached, ok := d.groups[principalID]
	gen := d.gen
	d.mu.Unlock()
	if ok && (cached.until.IsZero() || now.Before(cached.until)) {
		return cached.ids, nil
	}
	var out []string
	var until time.Time
	bound := func(t time.Time) {
		if !t.IsZero() && now.Before(t) && (until.IsZero() || t.Before(until)) {
			until = t
		}
	}
	err := d.store.View(ctx, func(tx store.Tx) error {
		seen := map[string]bool{}
		queue := []string{principalID}
		for len(queue) > 0 {
			ms, err := tx.Memberships(ctx, queue[0])
			if err != nil {
				return err
			}
			queue = queue[1:]
			for _, m := range ms {
				bound(m.Since)
				bound(m.Until)
				if !m.CountsAt(now) {
					continue
				}
				if g := m.GroupID; !seen[g] {
					seen[g] = true
					out = append(out, g)
					queue = append(queue, g)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(out)
	d.mu.Lock()
	if d.gen == gen {
		if len(d.groups) >= maxCachedGroups {
			// A caller can ask about any id (a $filter names one): the cache
			// is bounded, and starting it over is cheap next to a lookup.
			clear(d.groups)
		}
		d.groups[principalID] = cachedGroups{ids: out, until: until}
	}
	d.mu.Unlock()
	return out, nil
}

// maxCachedGroups bounds the group cache.
const maxCachedGroups = 16384

// IsMember reports whether principalID is in groupID, directly or not.
func (d *Directory) IsMember(ctx context.Context, groupID, principalID string) (bool, error) {
	gs, err := d.GroupsOf(ctx, principalID)
	return slices.Contains(gs, groupID), err
}

// AuthenticateClient checks an application's client secret. Whether the
// application exists, has no secret or several, it costs one HMAC: the
// secret names the one credential it may match. Secrets of the older,
// Argon2id-hashed format are still accepted; each costs one Argon2id hash
// in a bounded slot (the one credential with the secret's hint, or a dummy),
// so it may fail with ErrBusy.
func (d *Directory) AuthenticateClient(ctx context.Context, appID, secret string) (*Principal, error) {
	var p *Principal
	var creds []*store.Credential
	err := d.store.View(ctx, func(tx store.Tx) (err error) {
		if p, err = tx.PrincipalByAppID(ctx, appID); err != nil {
			return err
		}
		creds, err = tx.Credentials(ctx, p.ID)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	now := d.now()
	if keyID, ok := secretKeyID(secret); ok {
		var match *store.Credential
		for _, c := range creds {
			if strings.HasPrefix(c.Hash, macPrefix) && keyIDOf(c.ID) == keyID {
				match = c
				break
			}
		}
		encoded := macPrefix
		if match != nil {
			encoded = match.Hash
		}
		if d.checkMAC(encoded, secret) && match != nil && now.Before(match.Expires) {
			return p, nil
		}
		return nil, ErrInvalidCredentials
	}
	if !isLegacySecret(secret) {
		d.checkMAC(macPrefix, secret)
		return nil, ErrInvalidCredentials
	}
	var match *store.Credential
	for _, c := range creds {
		if strings.HasPrefix(c.Hash, "$argon2id$") && c.Hint == secret[:3] && now.Before(c.Expires) {
			match = c
			break
		}
	}
	encoded := dummyArgon2id // legacy secrets are Argon2id hashes, FIPS mode or not
	if match != nil {
		encoded = match.Hash
	}
	ok, err := d.slowCheck(ctx, encoded, secret)
	if err != nil {
		return nil, err
	}
	if !ok || match == nil {
		return nil, ErrInvalidCredentials
	}
	return p, nil
}

// AuthenticateUser checks a user's password. An unknown user costs one
// slow hash as a known one does. Hashes run in a bounded number of
// slots; when none frees up in time it returns ErrBusy.
func (d *Directory) AuthenticateUser(ctx context.Context, upn, password string) (*Principal, error) {
	var p *Principal
	err := d.store.View(ctx, func(tx store.Tx) (err error) {
		p, err = tx.PrincipalByUPN(ctx, upn)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	dummy := dummyHash()
	encoded := dummy
	if p != nil && p.PasswordHash != "" {
		encoded = p.PasswordHash
	}
	ok, err := d.slowCheck(ctx, encoded, password)
	if err != nil {
		return nil, err
	}
	if !ok || encoded == dummy {
		return nil, ErrInvalidPassword
	}
	return p, nil
}
