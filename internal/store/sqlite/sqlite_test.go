package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store"
)

func open(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestKeyVersionsRoundTripAndReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "k.db")
	db := open(t, path)
	now := time.Unix(1700000000, 0).UTC()
	err := db.Update(ctx, func(tx store.Tx) error {
		if err := tx.PutKey(ctx, &store.Key{HSM: "h", Name: "k", Created: now}); err != nil {
			return err
		}
		for i, ver := range []string{"v1", "v2"} {
			if err := tx.InsertKeyVersion(ctx, &store.KeyVersion{HSM: "h", Name: "k", Version: ver, Seq: int64(i + 1),
				Kty: "RSA", Ops: []string{"sign"}, Enabled: true, Created: now, Updated: now,
				Tags: map[string]string{"a": "b"}, Public: []byte("{}"), Sealed: []byte{1, 2}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	db = open(t, path)
	err = db.View(ctx, func(tx store.Tx) error {
		v, err := tx.LatestKeyVersion(ctx, "h", "K") // names are case-insensitive
		if err != nil {
			return err
		}
		if v.Version != "v2" || v.Tags["a"] != "b" || !v.Created.Equal(now) || !v.NotBefore.IsZero() {
			t.Fatalf("latest = %+v", v)
		}
		items, err := tx.ListKeys(ctx, "h", false, "", 10)
		if err != nil || len(items) != 1 || items[0].Latest.Version != "v2" {
			t.Fatalf("ListKeys = %+v, %v", items, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestConflictAndNotFound(t *testing.T) {
	ctx := context.Background()
	db := open(t, filepath.Join(t.TempDir(), "c.db"))
	p := &store.Principal{ID: "1", Kind: store.KindServicePrincipal, DisplayName: "a", AppID: "app"}
	if err := db.Update(ctx, func(tx store.Tx) error { return tx.InsertPrincipal(ctx, p) }); err != nil {
		t.Fatal(err)
	}
	err := db.Update(ctx, func(tx store.Tx) error {
		return tx.InsertPrincipal(ctx, &store.Principal{ID: "2", Kind: store.KindServicePrincipal, AppID: "app"})
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate appId: %v", err)
	}
	err = db.View(ctx, func(tx store.Tx) error { _, err := tx.GetPrincipal(ctx, "nope"); return err })
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing principal: %v", err)
	}
}

func TestUpdateRollsBackOnError(t *testing.T) {
	ctx := context.Background()
	db := open(t, filepath.Join(t.TempDir(), "r.db"))
	boom := errors.New("boom")
	err := db.Update(ctx, func(tx store.Tx) error {
		if err := tx.SetShipperCursor(ctx, "h", "x", 1); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	err = db.View(ctx, func(tx store.Tx) error { _, err := tx.ShipperCursor(ctx, "h", "x"); return err })
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a cursor survived a rolled-back transaction: %v", err)
	}
}

// A transaction that ran a statement for the first time returns — and
// delivers its changes to the caches — at once, though the next writer
// holds the only writer connection: preparing the statement happens in
// the background. (Prepared in the caller's path, it waited for that whole
// transaction, and a committed disable went unenforced meanwhile.)
func TestFirstUseDoesNotWaitForTheNextWriter(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	queued := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-queued
		db.Update(ctx, func(store.Tx) error { time.Sleep(2 * time.Second); return nil })
	}()
	start := time.Now()
	err = db.Update(ctx, func(tx store.Tx) error {
		close(queued)
		time.Sleep(100 * time.Millisecond) // the other writer queues for the connection
		_, err := tx.GetHSM(ctx, "never-ran-before")
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the first use of a statement returned after %s, behind the next writer's transaction", d)
	}
	<-done
}
