package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"sync"
)

// stmtCache holds a pool's prepared statements by their text. SQLite
// parses every statement that is not prepared, on every call: that was a
// quarter of the server's time for a key read. Prepared, a statement is
// parsed once per connection.
//
// A statement is prepared in the background after the transaction that
// first ran it ends, when that transaction no longer holds a connection:
// preparing on the pool takes one, and the writer pool has only one.
type stmtCache struct {
	pool     *sql.DB
	mu       sync.RWMutex
	stmts    map[string]*sql.Stmt
	pending  map[string]bool // being prepared
	stopping bool
	// preparing counts the background preparations, which close waits
	// for: one still taking a connection after the pool closed would
	// open the database's files again, under a directory being removed.
	preparing sync.WaitGroup
}

// maxCachedStmts bounds the cache: the store's statements are a fixed set
// of texts, a few hundred at most; anything beyond runs unprepared.
const maxCachedStmts = 512

func newStmtCache(pool *sql.DB) *stmtCache {
	return &stmtCache{pool: pool, stmts: map[string]*sql.Stmt{}, pending: map[string]bool{}}
}

// prepareLater prepares the queries in the background. The caller must
// not wait: preparing takes a connection from the pool, and on the writer
// pool (one connection) that is a wait behind the next writer, whose whole
// transaction would delay the caller — and its changes' delivery to the
// caches, so a committed disable would not yet be enforced.
func (c *stmtCache) prepareLater(queries []string) {
	c.mu.Lock()
	var todo []string
	for _, q := range queries {
		if _, have := c.stmts[q]; !have && !c.pending[q] && !c.stopping {
			c.pending[q] = true
			todo = append(todo, q)
		}
	}
	if len(todo) == 0 {
		c.mu.Unlock()
		return
	}
	c.preparing.Add(1) // under mu, so that close, once stopping, waits for it
	c.mu.Unlock()
	go func() {
		defer c.preparing.Done()
		c.prepare(context.Background(), todo)
		c.mu.Lock()
		for _, q := range todo {
			delete(c.pending, q)
		}
		c.mu.Unlock()
	}()
}

func (c *stmtCache) lookup(query string) *sql.Stmt {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.stmts[query]
}

// prepare prepares the statements not cached yet. A statement that fails
// to prepare stays unprepared: it then runs, and fails, where it is used.
func (c *stmtCache) prepare(ctx context.Context, queries []string) {
	for _, q := range queries {
		c.mu.RLock()
		_, have := c.stmts[q]
		full := len(c.stmts) >= maxCachedStmts
		stopping := c.stopping
		c.mu.RUnlock()
		if stopping {
			return
		}
		if have || full {
			continue
		}
		st, err := c.pool.PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		c.mu.Lock()
		if _, have := c.stmts[q]; have || len(c.stmts) >= maxCachedStmts || c.stopping {
			c.mu.Unlock()
			st.Close()
			continue
		}
		c.stmts[q] = st
		c.mu.Unlock()
	}
}

func (c *stmtCache) close() error {
	c.mu.Lock()
	c.stopping = true
	c.mu.Unlock()
	c.preparing.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, st := range c.stmts {
		errs = append(errs, st.Close())
	}
	c.stmts = map[string]*sql.Stmt{}
	return errors.Join(errs...)
}

// stmt is the transaction's copy of the cached statement of query, or nil
// (the query is then noted, to be prepared when the transaction ends).
func (t *txn) stmt(ctx context.Context, query string) *sql.Stmt {
	if st := t.stmts[query]; st != nil {
		return st // the transaction's own copy, made once
	}
	if st := t.cache.lookup(query); st != nil {
		if t.stmts == nil {
			t.stmts = map[string]*sql.Stmt{}
		}
		t.stmts[query] = t.tx.StmtContext(ctx, st)
		return t.stmts[query]
	}
	if !slices.Contains(t.missed, query) {
		t.missed = append(t.missed, query)
	}
	return nil
}

func (t *txn) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}

func (t *txn) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, query, args...)
}

func (t *txn) execContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, query, args...)
}
