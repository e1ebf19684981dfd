package postgres_test

import (
	"context"
	"testing"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/postgres"
	"github.com/keyward/keyward/internal/store/storetest"
	"github.com/keyward/keyward/internal/testenv"
)

// TestConformance runs the store suite against a real PostgreSQL, one
// fresh database per subtest on one server.
func TestConformance(t *testing.T) {
	testenv.StartPostgres(t) // keeps the server up across the subtests
	storetest.Run(t, func(t *testing.T) store.Store {
		db, err := postgres.Open(context.Background(), testenv.StartPostgres(t))
		if err != nil {
			t.Fatal(err)
		}
		return db
	})
}

// TestMigrateAgain: opening a migrated database applies nothing and keeps
// its data; two nodes opening a new database at once both succeed.
func TestMigrateAgain(t *testing.T) {
	ctx := context.Background()
	url := testenv.StartPostgres(t)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			db, err := postgres.Open(ctx, url)
			if err == nil {
				db.Close()
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	db, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(db.Update(ctx, func(tx store.Tx) error { return tx.SetShipperCursor(ctx, "h", "s", 7) }))
	db.Close()
	db, err = postgres.Open(ctx, url)
	must(err)
	defer db.Close()
	must(db.View(ctx, func(tx store.Tx) error {
		v, err := tx.ShipperCursor(ctx, "h", "s")
		if err == nil && v != 7 {
			t.Errorf("the cursor after reopening: %d", v)
		}
		return err
	}))
}
