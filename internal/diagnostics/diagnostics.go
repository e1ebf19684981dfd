// Package diagnostics manages where an HSM's audit logs go: storage
// accounts registered with the server, and diagnostic settings that send
// an HSM's AuditEvent category to one of them. It runs one audit shipper
// per enabled setting.
package diagnostics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/egress"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/store"
)

// Errors.
var (
	ErrAccountNotFound = fault.New(fault.NotFound, "ResourceNotFound", "the storage account does not exist")
	ErrSettingNotFound = fault.New(fault.NotFound, "ResourceNotFound", "the diagnostic setting does not exist")
	// ErrAccountTaken is a storage account name held in another resource
	// group: names are global, as Azure's are, and an account never moves.
	ErrAccountTaken = fault.New(fault.Conflict, "StorageAccountAlreadyTaken", "the storage account name is already taken")
)

// Account is a storage account as callers see it: never its secret.
type Account struct {
	Name           string
	ResourceGroup  string
	BlobEndpoint   string
	CredentialKind string
	Created        time.Time
	// IdentityPrincipalID is the account's system-assigned identity, if any.
	IdentityPrincipalID string
}

// Setting is a diagnostic setting.
type Setting struct {
	HSM, Name, StorageAccount string
	Enabled                   bool
	// Since is when the setting was put: it delivers the records written
	// after (set by the store; ignored on a put).
	Since time.Time
}

// sameDelivery tells whether s and o deliver the same records to the same
// place (Since aside: a shipper started by a put does not know it).
func (s Setting) sameDelivery(o Setting) bool {
	return s.HSM == o.HSM && s.Name == o.Name && s.StorageAccount == o.StorageAccount && s.Enabled == o.Enabled
}

// Service manages accounts and settings and runs the shippers.
type Service struct {
	store store.Store
	seal  domain.Seal
	log   *audit.Log
	limit int64
	slog  *slog.Logger
	dir   *identity.Directory

	journal string // see Config.JournalID

	// run serialises starting and stopping shippers.
	run      sync.Mutex
	mu       sync.Mutex
	shippers map[string]running // by hsm + "/" + setting

	egress egress.Policy // guards the blob endpoints that account owners register

	kick chan struct{} // asks the follow loop to reconcile
	stop chan struct{}
	done chan struct{}
}

// running is a shipper and the setting it delivers for.
type running struct {
	sh      *audit.Shipper
	setting Setting
}

// Config configures the service.
type Config struct {
	Store store.Store
	Seal  domain.Seal
	Log   *audit.Log
	// Limit bounds each shipper's backlog in bytes.
	Limit     int64
	Directory *identity.Directory
	// Egress guards the blob endpoints that account owners register.
	Egress egress.Policy
	// JournalID names this node's audit journal: each node of a cluster
	// ships its own journal and keeps its own delivery cursors under it
	// ("" for a journal begun before nodes had them, whose cursors are
	// the settings' own names).
	JournalID string
	Logger    *slog.Logger
}

// New returns the service.
func New(cfg Config) *Service {
	return &Service{store: cfg.Store, seal: cfg.Seal, log: cfg.Log, limit: cfg.Limit, dir: cfg.Directory, egress: cfg.Egress,
		slog: cfg.Logger, journal: cfg.JournalID, shippers: map[string]running{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// cursorName is the name a setting's delivery cursor is kept under: the
// setting's, and this node's journal's. A journal's identity, not the
// node's name, so that a renamed node resumes where it stopped.
func (s *Service) cursorName(setting string) string {
	if s.journal == "" {
		return setting
	}
	return setting + "@" + s.journal
}

const kindAccountIdentity = "storageAccountIdentity"

// AssignIdentity gives the account rg/name a system-assigned managed identity.
func (s *Service) AssignIdentity(ctx context.Context, rg, name string) (Account, error) {
	acct, err := s.Account(ctx, rg, name)
	if err != nil || acct.IdentityPrincipalID != "" {
		return acct, err
	}
	// The identity's principal and its link to the account are made in one
	// transaction: a crash between them leaves neither.
	err = s.store.Update(ctx, func(tx store.Tx) error {
		p, err := s.dir.CreateManagedIdentityTx(ctx, tx, acct.Name)
		if err != nil {
			return err
		}
		acct.IdentityPrincipalID = p.ID
		return tx.PutObject(ctx, &store.Object{Kind: kindAccountIdentity, ID: acct.Name, Data: []byte(p.ID)})
	})
	if err != nil {
		return Account{}, err
	}
	return acct, nil
}

func (s *Service) withIdentity(ctx context.Context, a Account) Account {
	s.store.View(ctx, func(tx store.Tx) error {
		if o, err := tx.GetObject(ctx, kindAccountIdentity, a.Name); err == nil {
			a.IdentityPrincipalID = string(o.Data)
		}
		return nil
	})
	return a
}

var accountName = regexp.MustCompile(`^[a-z0-9]{3,24}$`)

func secretAAD(name string) []byte { return []byte("keyward storage secret\x00" + name) }

// dropIdentity removes the system-assigned identity of an account name,
// object and principal: an identity never outlives its account, so that a
// new account of the same name (perhaps someone else's) does not inherit
// the grants of the old one's identity.
func (s *Service) dropIdentity(ctx context.Context, name string) error {
	var principal string
	err := s.store.Update(ctx, func(tx store.Tx) error {
		o, err := tx.GetObject(ctx, kindAccountIdentity, name)
		if err != nil {
			return err
		}
		principal = string(o.Data)
		return tx.DeleteObject(ctx, kindAccountIdentity, name)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.dir.Delete(ctx, principal); err != nil && !errors.Is(err, identity.ErrNotFound) {
		return err
	}
	return nil
}

// RegisterAccount stores an account with its shared key or SAS token, or
// updates the account of that name in the same resource group. A name
// taken in another group is ErrAccountTaken.
func (s *Service) RegisterAccount(ctx context.Context, a Account, key, sas string) (Account, error) {
	if !accountName.MatchString(a.Name) {
		return Account{}, fault.Invalidf("storage account names have 3 to 24 lower-case letters and digits")
	}
	old, err := s.GetAccount(ctx, a.Name)
	switch {
	case err == nil && !strings.EqualFold(old.ResourceGroup, a.ResourceGroup):
		return Account{}, ErrAccountTaken.With("The storage account named %s is already taken.", a.Name)
	case errors.Is(err, ErrAccountNotFound):
		// A new account starts without an identity, even if an account of
		// this name once had one.
		if err := s.dropIdentity(ctx, a.Name); err != nil {
			return Account{}, err
		}
	case err != nil:
		return Account{}, err
	}
	u, err := url.Parse(a.BlobEndpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return Account{}, fault.Invalidf("the blob endpoint must be an http(s) URL")
	}
	if err := s.egress.CheckURL(a.BlobEndpoint); err != nil {
		return Account{}, err
	}
	if (key == "") == (sas == "") {
		return Account{}, fault.Invalidf("give the account key or a SAS token, one of them")
	}
	a.CredentialKind, a.Created = "key", time.Now().UTC()
	secret := key
	if sas != "" {
		a.CredentialKind, secret = "sas", sas
	}
	sealed, err := s.seal.Seal(ctx, []byte(secret), secretAAD(a.Name))
	if err != nil {
		return Account{}, err
	}
	err = s.store.Update(ctx, func(tx store.Tx) error {
		return tx.PutStorageAccount(ctx, &store.StorageAccount{Name: a.Name, ResourceGroup: a.ResourceGroup,
			BlobEndpoint: a.BlobEndpoint, CredentialKind: a.CredentialKind, Secret: sealed, Created: a.Created})
	})
	if errors.Is(err, store.ErrConflict) {
		return Account{}, ErrAccountTaken.With("The storage account named %s is already taken.", a.Name)
	}
	if err != nil {
		return Account{}, err
	}
	return s.GetAccount(ctx, a.Name)
}

func accountOf(r *store.StorageAccount) Account {
	return Account{Name: r.Name, ResourceGroup: r.ResourceGroup, BlobEndpoint: r.BlobEndpoint, CredentialKind: r.CredentialKind, Created: r.Created}
}

// GetAccount returns a registered account.
func (s *Service) GetAccount(ctx context.Context, name string) (Account, error) {
	var r *store.StorageAccount
	err := s.store.View(ctx, func(tx store.Tx) (err error) { r, err = tx.GetStorageAccount(ctx, name); return err })
	if errors.Is(err, store.ErrNotFound) {
		return Account{}, ErrAccountNotFound.With("The storage account %s was not found.", name)
	}
	if err != nil {
		return Account{}, err
	}
	return s.withIdentity(ctx, accountOf(r)), nil
}

// Account returns the account name of resource group rg: an account of
// another group is ErrAccountNotFound, as ARM finds resources by their full
// id.
func (s *Service) Account(ctx context.Context, rg, name string) (Account, error) {
	a, err := s.GetAccount(ctx, name)
	if err == nil && !strings.EqualFold(a.ResourceGroup, rg) {
		err = ErrAccountNotFound
	}
	if errors.Is(err, ErrAccountNotFound) {
		return Account{}, ErrAccountNotFound.With("The Resource 'Microsoft.Storage/storageAccounts/%s' under resource group '%s' was not found.", name, rg)
	}
	return a, err
}

// ListAccounts lists registered accounts.
func (s *Service) ListAccounts(ctx context.Context) ([]Account, error) {
	var rs []*store.StorageAccount
	err := s.store.View(ctx, func(tx store.Tx) (err error) { rs, err = tx.ListStorageAccounts(ctx); return err })
	out := []Account{}
	for _, r := range rs {
		out = append(out, s.withIdentity(ctx, accountOf(r)))
	}
	return out, err
}

// DeleteAccount removes the account rg/name, which no setting may use,
// with its system-assigned identity.
func (s *Service) DeleteAccount(ctx context.Context, rg, name string) error {
	notFound := ErrAccountNotFound.With("The Resource 'Microsoft.Storage/storageAccounts/%s' under resource group '%s' was not found.", name, rg)
	err := s.store.Update(ctx, func(tx store.Tx) error {
		acct, err := tx.GetStorageAccount(ctx, name)
		if errors.Is(err, store.ErrNotFound) || err == nil && !strings.EqualFold(acct.ResourceGroup, rg) {
			return notFound
		}
		if err != nil {
			return err
		}
		settings, err := tx.ListDiagnosticSettings(ctx, "")
		if err != nil {
			return err
		}
		for _, d := range settings {
			if strings.EqualFold(d.StorageAccount, acct.Name) {
				return fault.Errorf(fault.Conflict, "Conflict", "diagnostic setting %s of %s still sends logs to %s", d.Name, d.HSM, acct.Name)
			}
		}
		return tx.DeleteStorageAccount(ctx, acct.Name)
	})
	if err != nil {
		return err
	}
	return s.dropIdentity(ctx, name)
}

// PutSetting creates or replaces a setting and starts (or stops) its
// shipper. A new setting delivers the records written after it.
func (s *Service) PutSetting(ctx context.Context, d Setting) (Setting, error) {
	if d.Name == "" || len(d.Name) > 260 {
		return Setting{}, fault.Invalidf("a diagnostic setting needs a name")
	}
	if _, err := s.GetAccount(ctx, d.StorageAccount); err != nil {
		return Setting{}, fault.Invalidf("storageAccountId names no registered storage account (%s)", d.StorageAccount)
	}
	err := s.store.Update(ctx, func(tx store.Tx) error {
		return tx.PutDiagnosticSetting(ctx, &store.DiagnosticSetting{HSM: d.HSM, Name: d.Name, StorageAccount: d.StorageAccount,
			Enabled: d.Enabled, Created: time.Now().UTC()})
	})
	if err != nil {
		return Setting{}, err
	}
	s.run.Lock()
	defer s.run.Unlock()
	s.stopShipper(d.HSM, d.Name)
	if d.Enabled {
		if err := s.startShipper(ctx, d, true); err != nil {
			return Setting{}, err
		}
	}
	return d, nil
}

// GetSetting returns one setting.
func (s *Service) GetSetting(ctx context.Context, hsm, name string) (Setting, error) {
	var r *store.DiagnosticSetting
	err := s.store.View(ctx, func(tx store.Tx) (err error) { r, err = tx.GetDiagnosticSetting(ctx, hsm, name); return err })
	if errors.Is(err, store.ErrNotFound) {
		return Setting{}, ErrSettingNotFound
	}
	if err != nil {
		return Setting{}, err
	}
	return Setting{HSM: r.HSM, Name: r.Name, StorageAccount: r.StorageAccount, Enabled: r.Enabled, Since: r.Created}, nil
}

// ListSettings lists an HSM's settings.
func (s *Service) ListSettings(ctx context.Context, hsm string) ([]Setting, error) {
	var rs []*store.DiagnosticSetting
	err := s.store.View(ctx, func(tx store.Tx) (err error) { rs, err = tx.ListDiagnosticSettings(ctx, hsm); return err })
	out := []Setting{}
	for _, r := range rs {
		out = append(out, Setting{HSM: r.HSM, Name: r.Name, StorageAccount: r.StorageAccount, Enabled: r.Enabled, Since: r.Created})
	}
	return out, err
}

// DeleteSetting stops and removes a setting.
func (s *Service) DeleteSetting(ctx context.Context, hsm, name string) error {
	err := s.store.Update(ctx, func(tx store.Tx) error { return tx.DeleteDiagnosticSetting(ctx, hsm, name) })
	if errors.Is(err, store.ErrNotFound) {
		return ErrSettingNotFound
	}
	if err == nil {
		s.run.Lock()
		s.stopShipper(hsm, name)
		s.run.Unlock()
	}
	return err
}

// ForgetHSM stops the shippers of a purged HSM: its settings are gone
// with it, and a new HSM of the same name must not send its records to the
// old one's storage.
func (s *Service) ForgetHSM(hsm string) {
	s.mu.Lock()
	var gone []*audit.Shipper
	for k, r := range s.shippers {
		if h, _, _ := strings.Cut(k, "/"); strings.EqualFold(h, hsm) {
			gone = append(gone, r.sh)
			delete(s.shippers, k)
		}
	}
	s.mu.Unlock()
	for _, sh := range gone {
		s.log.RemoveShipper(sh)
	}
}

// Start runs the shippers of every enabled setting, resuming each where it
// stopped, and then follows the settings: a setting created, changed or
// deleted through another node of the cluster starts, restarts or stops
// this node's shipper too.
func (s *Service) Start(ctx context.Context) error {
	if err := s.reconcile(ctx); err != nil {
		return err
	}
	cancel := s.store.Subscribe(func(cs []store.Change) {
		for _, c := range cs {
			switch c.Kind {
			case store.ChangeDiagnosticSetting, store.ChangeStorageAccount, store.ChangeHSM, store.ChangeAll:
				select {
				case s.kick <- struct{}{}:
				default:
				}
				return
			}
		}
	})
	go s.follow(cancel)
	return nil
}

// followRetry is how often a failed reconciliation is tried again.
const followRetry = 10 * time.Second

func (s *Service) follow(cancel func()) {
	defer close(s.done)
	defer cancel()
	retry := time.NewTimer(followRetry)
	defer retry.Stop()
	failed := false
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		case <-retry.C:
			retry.Reset(followRetry)
			if !failed {
				continue
			}
		}
		ctx, done := context.WithTimeout(context.Background(), followRetry)
		err := s.reconcile(ctx)
		done()
		// Once per outage: while the database is away, every dropped
		// connection of the change listener asks again.
		if err != nil && !failed {
			s.slog.Warn("diagnostics: following the diagnostic settings; will retry", "err", err)
		}
		failed = err != nil
	}
}

// reconcile makes the running shippers match the enabled settings.
func (s *Service) reconcile(ctx context.Context) error {
	settings, err := s.ListSettings(ctx, "")
	if err != nil {
		return err
	}
	s.run.Lock()
	defer s.run.Unlock()
	want := map[string]Setting{}
	for _, d := range settings {
		if d.Enabled {
			want[d.HSM+"/"+d.Name] = d
		}
	}
	s.mu.Lock()
	var gone []string
	for k, r := range s.shippers {
		if d, ok := want[k]; !ok || !d.sameDelivery(r.setting) {
			gone = append(gone, k)
		}
	}
	s.mu.Unlock()
	for _, k := range gone {
		hsm, name, _ := strings.Cut(k, "/")
		s.stopShipper(hsm, name)
	}
	var errs []error
	for k, d := range want {
		s.mu.Lock()
		_, ok := s.shippers[k]
		s.mu.Unlock()
		if !ok {
			errs = append(errs, s.startShipper(ctx, d, false))
		}
	}
	return errors.Join(errs...)
}

// Stop stops following the settings and every shipper.
func (s *Service) Stop() error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	select {
	case <-s.done:
	case <-time.After(followRetry):
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, r := range s.shippers {
		s.log.RemoveShipper(r.sh)
		delete(s.shippers, k)
	}
	return nil
}

func (s *Service) startShipper(ctx context.Context, d Setting, fresh bool) error {
	var acct *store.StorageAccount
	var after uint64
	stream := audit.StreamOf(d.HSM)
	err := s.store.Update(ctx, func(tx store.Tx) error {
		var err error
		if acct, err = tx.GetStorageAccount(ctx, d.StorageAccount); err != nil {
			return err
		}
		after, err = tx.ShipperCursor(ctx, d.HSM, s.cursorName(d.Name))
		if errors.Is(err, store.ErrNotFound) || fresh {
			after = s.log.Journal().LastSequence(stream)
			return tx.SetShipperCursor(ctx, d.HSM, s.cursorName(d.Name), after)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("diagnostics: starting delivery for %s/%s: %w", d.HSM, d.Name, err)
	}
	secret, err := s.seal.Open(ctx, acct.Secret, secretAAD(acct.Name))
	if err != nil {
		return fmt.Errorf("diagnostics: opening the credential of %s: %w", acct.Name, err)
	}
	key, sas := string(secret), ""
	if acct.CredentialKind == "sas" {
		key, sas = "", string(secret)
	}
	opts := s.egress.ClientOptions()
	sink, err := audit.NewBlobSink(acct.BlobEndpoint, acct.Name, key, sas, &opts)
	if err != nil {
		return err
	}
	sh := audit.StartShipper(audit.ShipperConfig{Journal: s.log.Journal(), Stream: stream, Sink: sink, After: after, Limit: s.limit, Log: s.slog,
		Save: func(ctx context.Context, seq uint64) error {
			return s.store.Update(ctx, func(tx store.Tx) error { return tx.SetShipperCursor(ctx, d.HSM, s.cursorName(d.Name), seq) })
		}})
	s.mu.Lock()
	s.shippers[d.HSM+"/"+d.Name] = running{sh: sh, setting: d}
	s.mu.Unlock()
	s.log.AddShipper(sh)
	return nil
}

func (s *Service) stopShipper(hsm, name string) {
	s.mu.Lock()
	r, ok := s.shippers[hsm+"/"+name]
	delete(s.shippers, hsm+"/"+name)
	s.mu.Unlock()
	if ok {
		s.log.RemoveShipper(r.sh)
	}
}
