package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store"
)

func hsmRecord(name, rg string) *store.HSM {
	return &store.HSM{ID: name + "-id", Name: name, State: "active", DomainID: "d", DomainKey: []byte{1}, Admins: []string{"a"},
		RetentionDays: 7, Created: time.Unix(1700000000, 0), ResourceGroup: rg}
}

// TestNamesIgnoreCase: HSM and storage account names are unique without
// regard to case, and an account's upsert never moves it between groups.
func TestNamesIgnoreCase(t *testing.T) {
	ctx := context.Background()
	db := open(t, filepath.Join(t.TempDir(), "n.db"))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(db.Update(ctx, func(tx store.Tx) error { return tx.InsertHSM(ctx, hsmRecord("Prod1", "a")) }))
	if err := db.Update(ctx, func(tx store.Tx) error { return tx.InsertHSM(ctx, hsmRecord("prod1", "b")) }); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("prod1 after Prod1: %v", err)
	}
	must(db.View(ctx, func(tx store.Tx) error {
		h, err := tx.GetHSM(ctx, "PROD1")
		if err == nil && h.Name != "Prod1" {
			t.Errorf("GetHSM(PROD1) = %s", h.Name)
		}
		return err
	}))
	acct := func(rg, endpoint string) *store.StorageAccount {
		return &store.StorageAccount{Name: "logs", ResourceGroup: rg, BlobEndpoint: endpoint, CredentialKind: "key", Secret: []byte{1}}
	}
	must(db.Update(ctx, func(tx store.Tx) error { return tx.PutStorageAccount(ctx, acct("a", "https://a")) }))
	must(db.Update(ctx, func(tx store.Tx) error { return tx.PutStorageAccount(ctx, acct("A", "https://a2")) }))
	if err := db.Update(ctx, func(tx store.Tx) error { return tx.PutStorageAccount(ctx, acct("b", "https://evil")) }); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("an account put into another group: %v", err)
	}
	must(db.View(ctx, func(tx store.Tx) error {
		a, err := tx.GetStorageAccount(ctx, "LOGS")
		if err == nil && (a.ResourceGroup != "a" || a.BlobEndpoint != "https://a2") {
			t.Errorf("account = %+v", a)
		}
		return err
	}))
	must(db.Update(ctx, func(tx store.Tx) error { return tx.DeleteHSM(ctx, "PROD1") }))
}

// TestMigrationRefusesCaseTwins: a data directory whose HSM names differ
// only by case (possible before migration 6) does not open, and the error
// names them, rather than a constraint failure or a silent choice.
func TestMigrationRefusesCaseTwins(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "twins.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	rewind(t, db, 5)
	for _, h := range []*store.HSM{hsmRecord("dev", "keyward"), hsmRecord("DEV", "other")} {
		if err := db.Update(ctx, func(tx store.Tx) error { return tx.InsertHSM(ctx, h) }); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	_, err = Open(ctx, path)
	if err == nil || !strings.Contains(err.Error(), "migration 6") || !strings.Contains(err.Error(), "DEV") || !strings.Contains(err.Error(), "dev") {
		t.Fatalf("opening a file with case twins: %v", err)
	}
	// The refusal changed nothing; once the operator removes one twin, the
	// upgrade goes through.
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.ExecContext(ctx, `DELETE FROM hsms WHERE name = 'DEV'`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
}
