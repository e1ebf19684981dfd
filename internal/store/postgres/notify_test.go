package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/postgres"
	"github.com/keyward/keyward/internal/testenv"
)

// node is one store on the shared database, with what its subscribers got.
type node struct {
	db *postgres.DB
	ch chan store.Change
}

func openNode(t *testing.T, url string) *node {
	t.Helper()
	db, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	n := &node{db: db, ch: make(chan store.Change, 100)}
	db.Subscribe(func(cs []store.Change) {
		for _, c := range cs {
			n.ch <- c
		}
	})
	return n
}

// setCursor commits one change (ChangeNode, hsm, setting) through n.
func (n *node) setCursor(t *testing.T, hsm, setting string) store.Change {
	t.Helper()
	ctx := context.Background()
	if err := n.db.Update(ctx, func(tx store.Tx) error { return tx.SetShipperCursor(ctx, hsm, setting, 1) }); err != nil {
		t.Fatal(err)
	}
	return store.Change{Kind: store.ChangeNode, HSM: hsm, ID: setting}
}

// expect waits up to within for want on n, failing on anything else.
func (n *node) expect(t *testing.T, want store.Change, within time.Duration) {
	t.Helper()
	select {
	case c := <-n.ch:
		if c != want {
			t.Fatalf("got %+v, want %+v", c, want)
		}
	case <-time.After(within):
		t.Fatalf("%+v did not arrive within %v", want, within)
	}
}

func (n *node) expectNothing(t *testing.T) {
	t.Helper()
	select {
	case c := <-n.ch:
		t.Fatalf("unexpected %+v", c)
	default:
	}
}

// TestChangesAcrossNodes: what one store commits reaches the subscribers of
// another on the same database within a second, and its own subscribers
// once.
func TestChangesAcrossNodes(t *testing.T) {
	url := testenv.StartPostgres(t)
	a, b := openNode(t, url), openNode(t, url)

	ca := a.setCursor(t, "h", "fromA")
	a.expect(t, ca, time.Second) // locally, before Update returned
	b.expect(t, ca, time.Second)

	// b's change reaches a after a's own notification would have (commit
	// order): a must not have had its own change a second time.
	cb := b.setCursor(t, "h", "fromB")
	b.expect(t, cb, time.Second)
	a.expect(t, cb, time.Second)
	a.expectNothing(t)
	b.expectNothing(t)

	// A rolled-back transaction notifies nobody.
	ctx := context.Background()
	a.db.Update(ctx, func(tx store.Tx) error {
		tx.SetShipperCursor(ctx, "h", "rolledBack", 2)
		return context.Canceled
	})
	cb = b.setCursor(t, "h", "again")
	b.expect(t, cb, time.Second)
	a.expect(t, cb, time.Second)
	a.expectNothing(t)
}

// TestListenerReconnects: when the LISTEN connection is lost, the store
// reconnects and delivers a flush (what was committed meanwhile is
// unknown), then other nodes' changes again.
func TestListenerReconnects(t *testing.T) {
	url := testenv.StartPostgres(t)
	a, b := openNode(t, url), openNode(t, url)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	pid := postgres.ListenerPID(b.db)
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend($1)`, int32(pid)); err != nil {
		t.Fatal(err)
	}
	all := store.Change{Kind: store.ChangeAll}
	b.expect(t, all, 10*time.Second) // on noticing the loss
	b.expect(t, all, 10*time.Second) // once listening again
	if postgres.ListenerPID(b.db) == pid {
		t.Error("the listener kept its pid")
	}
	ca := a.setCursor(t, "h", "afterReconnect")
	a.expect(t, ca, time.Second)
	b.expect(t, ca, time.Second)
	b.expectNothing(t)
}
