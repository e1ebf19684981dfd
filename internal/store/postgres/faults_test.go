package postgres_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/postgres"
	"github.com/keyward/keyward/internal/testenv"
)

// cutProxy forwards to a PostgreSQL server; cut makes every connection
// open at that moment silent for good (no reset, no reply), as a network
// partition does, while new connections pass.
type cutProxy struct {
	ln    net.Listener
	epoch atomic.Int64
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			born := p.epoch.Load()
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			pipe := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if p.epoch.Load() != born {
						return // silent: neither side hears anything more
					}
					if n > 0 {
						dst.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}
			go pipe(u, c)
			go pipe(c, u)
		}
	}()
	return p
}

// hostOf splits a test database URL around its host:port.
func hostOf(url string) (before, host, after string) {
	i := strings.Index(url, "@") + 1
	j := strings.Index(url[i:], "/") + i
	return url[:i], url[i:j], url[j:]
}

// A network cut in the middle of transactions whose callers set no
// deadline (background work does not) fails them within the reply
// timeout, as unavailable, and frees their connections: the store serves
// again at once over new ones.
func TestCutMidTransactionFailsInBoundedTime(t *testing.T) {
	before, host, after := hostOf(testenv.StartPostgres(t))
	p := newCutProxy(t, host)
	db, err := postgres.OpenWith(context.Background(), before+p.ln.Addr().String()+after, postgres.Options{ReplyTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	bg := context.Background()
	var wg sync.WaitGroup
	started := make(chan struct{}, 4)
	errs := make([]error, 4)
	took := make([]time.Duration, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.View(bg, func(tx store.Tx) error {
				started <- struct{}{}
				time.Sleep(300 * time.Millisecond) // the cut comes now
				start := time.Now()
				defer func() { took[i] = time.Since(start) }()
				_, err := tx.GetNode(bg)
				return err
			})
		}()
	}
	for range 4 {
		<-started
	}
	p.epoch.Add(1)
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, store.ErrUnavailable) || took[i] > 3*time.Second {
			t.Fatalf("transaction %d after the cut: %v after %v", i, err, took[i])
		}
	}
	if err := db.View(bg, func(tx store.Tx) error { _, err := tx.GetNode(bg); return err }); err != nil {
		t.Fatalf("a transaction once the network is back: %v", err)
	}
}

// A write longer than the lock timeout commits (the timeout bounds the
// wait for the lock, not the transaction); a writer behind it gets
// unavailable after the lock timeout, and goes through once it is done.
func TestLongWriteCommits(t *testing.T) {
	db, err := postgres.OpenWith(context.Background(), testenv.StartPostgres(t), postgres.Options{LockTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	bg := context.Background()
	put := func(tx store.Tx, id string) error {
		return tx.PutObject(bg, &store.Object{Kind: "x", ID: id, Data: []byte("{}")})
	}
	long := make(chan error, 1)
	holding := make(chan struct{})
	go func() {
		long <- db.Update(bg, func(tx store.Tx) error {
			if err := put(tx, "long"); err != nil {
				return err
			}
			close(holding)
			time.Sleep(1500 * time.Millisecond) // a large restore's inserts
			return put(tx, "long-end")
		})
	}()
	<-holding
	start := time.Now()
	if err := db.Update(bg, func(tx store.Tx) error { return put(tx, "behind") }); !errors.Is(err, store.ErrUnavailable) ||
		time.Since(start) > time.Second {
		t.Fatalf("a writer behind the long one: %v after %v", err, time.Since(start))
	}
	if err := <-long; err != nil {
		t.Fatalf("the long write: %v", err)
	}
	if err := db.Update(bg, func(tx store.Tx) error { return put(tx, "after") }); err != nil {
		t.Fatalf("a writer after the long one: %v", err)
	}
}
