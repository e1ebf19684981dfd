package identity

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
)

// TestSecretFormat: secrets look like Entra's (40 characters, "Q~" after
// three), carry their credential's key id, and are stored only as an HMAC.
func TestSecretFormat(t *testing.T) {
	ctx := context.Background()
	_, dir, _, db := newTestService(t)
	p, _ := dir.CreateServicePrincipal(ctx, store.KindServicePrincipal, "app")
	secret, cred, err := dir.AddSecret(ctx, p.ID, "s")
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) != 40 || secret[3:5] != "Q~" || cred.Hint != secret[:3] {
		t.Fatalf("secret %q does not look like Entra's", secret)
	}
	if id, ok := secretKeyID(secret); !ok || id != keyIDOf(cred.ID) {
		t.Fatalf("secret %q does not carry key id %s", secret, keyIDOf(cred.ID))
	}
	if cred.Hash != dir.mac(secret) || strings.Contains(cred.Hash, secret) {
		t.Fatalf("stored %q", cred.Hash)
	}
	// Another node's directory with another pepper refuses the secret.
	other := NewDirectory(db, "tenant-1", rand.Reader, dir.now)
	other.SetPepper(bytes.Repeat([]byte{1}, PepperSize))
	if _, err := other.AuthenticateClient(ctx, p.AppID, secret); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("a secret was accepted under another pepper: %v", err)
	}
}

// TestPepperIsSealed: the pepper survives a restart, and the store holds it
// only sealed.
func TestPepperIsSealed(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "id.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	seal, err := domain.OpenFileSeal(filepath.Join(t.TempDir(), "seal"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a, err := LoadOrCreatePepper(ctx, db, seal, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreatePepper(ctx, db, seal, rand.Reader)
	if err != nil || !bytes.Equal(a, b) || len(a) != PepperSize {
		t.Fatalf("the pepper is not reloaded: %v", err)
	}
	var raw []byte
	_ = db.View(ctx, func(tx store.Tx) error {
		n, err := tx.GetNode(ctx)
		if err == nil {
			raw = n.SecretPepper
		}
		return err
	})
	if len(raw) <= PepperSize || bytes.Contains(raw, a) {
		t.Fatal("the pepper is stored in the clear")
	}
	otherSeal, _ := domain.OpenFileSeal(filepath.Join(t.TempDir(), "seal"), rand.Reader)
	if _, err := LoadOrCreatePepper(ctx, db, otherSeal, rand.Reader); err == nil {
		t.Fatal("another seal opened the pepper")
	}
}

// TestOneHashDecides: a wrong secret costs one cheap HMAC and no Argon2id
// hash whether the client id is unknown, has no secret, or has the most
// secrets allowed; a wrong password or user name costs exactly one Argon2id
// hash. The old code ran one Argon2id hash per stored secret.
func TestOneHashDecides(t *testing.T) {
	ctx := context.Background()
	_, dir, _, _ := newTestService(t)
	none, _ := dir.CreateServicePrincipal(ctx, store.KindServicePrincipal, "none")
	many, _ := dir.CreateServicePrincipal(ctx, store.KindServicePrincipal, "many")
	var good string
	for i := range MaxSecrets {
		s, _, err := dir.AddSecret(ctx, many.ID, "s")
		if err != nil {
			t.Fatalf("secret %d: %v", i, err)
		}
		good = s
	}
	guess, _ := newSecret(rand.Reader, "AAAAAAAA")
	sameKeyID := good[:13] + strings.Repeat("x", 27)
	for name, c := range map[string][2]string{
		"unknown id":        {"00000000-0000-0000-0000-000000000000", guess},
		"no credential":     {none.AppID, guess},
		"several":           {many.AppID, guess},
		"right key id":      {many.AppID, sameKeyID},
		"not a secret":      {many.AppID, "hunter2"},
		"oversized garbage": {many.AppID, strings.Repeat("Q~", 5000)},
	} {
		before := dir.slowHashes.Load()
		start := time.Now()
		if _, err := dir.AuthenticateClient(ctx, c[0], c[1]); !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("%s: %v", name, err)
		}
		if n := dir.slowHashes.Load() - before; n != 0 {
			t.Errorf("%s: %d Argon2id hashes", name, n)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("%s: took %s", name, d)
		}
	}
	if p, err := dir.AuthenticateClient(ctx, many.AppID, good); err != nil || p.ID != many.ID {
		t.Fatalf("the newest of %d secrets: %v", MaxSecrets, err)
	}

	u, _ := dir.CreateUser(ctx, "Alice", "alice@contoso.test", "correct horse")
	for name, c := range map[string][2]string{
		"unknown user":   {"nobody@contoso.test", "correct horse"},
		"wrong password": {u.UPN, "wrong horse"},
	} {
		before := dir.slowHashes.Load()
		if _, err := dir.AuthenticateUser(ctx, c[0], c[1]); !errors.Is(err, ErrInvalidPassword) {
			t.Errorf("%s: %v", name, err)
		}
		if n := dir.slowHashes.Load() - before; n != 1 {
			t.Errorf("%s: %d Argon2id hashes, want 1", name, n)
		}
	}
}

// TestLegacySecrets: a secret issued before key ids (42 characters,
// Argon2id) still signs in, at the cost of one bounded Argon2id hash: the
// one credential whose hint matches, or a dummy.
func TestLegacySecrets(t *testing.T) {
	ctx := context.Background()
	_, dir, c, db := newTestService(t)
	p, _ := dir.CreateServicePrincipal(ctx, store.KindServicePrincipal, "old")
	legacy := "abcQ~" + strings.Repeat("z", 37)
	h, err := hashSecret(rand.Reader, legacy)
	if err != nil {
		t.Fatal(err)
	}
	for i, hint := range []string{"xyz", "abc", "abc"} {
		hash := h
		if i != 1 {
			hash = dummyArgon2id
		}
		cred := &store.Credential{ID: uuid.NewString(), PrincipalID: p.ID, Hash: hash, Hint: hint, Created: c.now(), Expires: c.now().Add(time.Hour)}
		if err := db.Update(ctx, func(tx store.Tx) error { return tx.InsertCredential(ctx, cred) }); err != nil {
			t.Fatal(err)
		}
	}
	before := dir.slowHashes.Load()
	if got, err := dir.AuthenticateClient(ctx, p.AppID, legacy); err != nil || got.ID != p.ID {
		t.Fatalf("legacy secret: %v", err)
	}
	if _, err := dir.AuthenticateClient(ctx, p.AppID, "abcQ~"+strings.Repeat("y", 37)); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("wrong legacy secret: %v", err)
	}
	if n := dir.slowHashes.Load() - before; n != 2 {
		t.Fatalf("%d Argon2id hashes for two legacy sign-ins, want 2", n)
	}
}

// TestSecretCap: an application holds at most MaxSecrets unexpired
// secrets; expired ones make room; replacing keeps one per display name.
func TestSecretCap(t *testing.T) {
	ctx := context.Background()
	_, dir, c, db := newTestService(t)
	p, _ := dir.CreateServicePrincipal(ctx, store.KindServicePrincipal, "app")
	for range MaxSecrets {
		if _, _, err := dir.AddSecretFor(ctx, p.ID, "s", time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := dir.AddSecretFor(ctx, p.ID, "s", time.Hour)
	if fault.KindOf(err) != fault.Invalid || !strings.Contains(err.Error(), "20 unexpired client secrets") {
		t.Fatalf("secret %d: %v", MaxSecrets+1, err)
	}
	c.t = c.t.Add(2 * time.Hour)
	if _, _, err := dir.AddSecretFor(ctx, p.ID, "s", time.Hour); err != nil {
		t.Fatalf("after the others expired: %v", err)
	}
	count := func() int {
		var n int
		db.View(ctx, func(tx store.Tx) error { cs, err := tx.Credentials(ctx, p.ID); n = len(cs); return err })
		return n
	}
	if n := count(); n != 1 {
		t.Fatalf("%d credentials stored, want the expired ones dropped", n)
	}

	mi, _ := dir.CreateServicePrincipal(ctx, store.KindManagedIdentity, "vm")
	var first string
	for i := range 3 * MaxSecrets {
		s, _, err := dir.ReplaceSecretFor(ctx, mi.ID, "identity agent", 24*time.Hour)
		if err != nil {
			t.Fatalf("agent start %d: %v", i, err)
		}
		if i == 0 {
			first = s
		}
		if _, err := dir.AuthenticateClient(ctx, mi.AppID, s); err != nil {
			t.Fatalf("the replacing secret: %v", err)
		}
	}
	if _, err := dir.AuthenticateClient(ctx, mi.AppID, first); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("a replaced secret still works: %v", err)
	}
	var n int
	db.View(ctx, func(tx store.Tx) error { cs, err := tx.Credentials(ctx, mi.ID); n = len(cs); return err })
	if n != 1 {
		t.Fatalf("%d agent secrets after %d starts, want 1", n, 3*MaxSecrets)
	}
}

// TestSlowHashesAreBounded: when every hashing slot is taken, a password
// check waits no longer than its context and returns ErrBusy.
func TestSlowHashesAreBounded(t *testing.T) {
	ctx := context.Background()
	_, dir, _, _ := newTestService(t)
	if _, err := dir.CreateUser(ctx, "Alice", "alice@contoso.test", "correct horse"); err != nil {
		t.Fatal(err)
	}
	for range cap(dir.slots) {
		dir.slots <- struct{}{}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := dir.AuthenticateUser(short, "alice@contoso.test", "correct horse")
	if !errors.Is(err, ErrBusy) || time.Since(start) > time.Second {
		t.Fatalf("with no slot free: %v after %s", err, time.Since(start))
	}
	<-dir.slots
	if _, err := dir.AuthenticateUser(ctx, "alice@contoso.test", "correct horse"); err != nil {
		t.Fatalf("with a slot free: %v", err)
	}
}
