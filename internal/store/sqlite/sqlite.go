// Package sqlite implements store.Store on one SQLite file with the pure-Go
// modernc.org/sqlite driver.
//
// Writes go through a single connection that opens every transaction with
// BEGIN IMMEDIATE, so writers queue instead of failing with SQLITE_BUSY;
// reads use a pool of connections and see WAL snapshots. synchronous=FULL
// makes a commit durable before Update returns.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keyward/keyward/internal/store"
)

// DB is a store.Store backed by SQLite.
type DB struct {
	writer *sql.DB
	reader *sql.DB
	// writerStmts and readerStmts are each pool's prepared statements.
	writerStmts, readerStmts *stmtCache
	hub                      store.Hub
}

var _ store.Store = (*DB)(nil)

// Stats implements store.StatsReporter: the readers' pool and the one
// writer. A SQLite store is one node's, so it always "listens".
func (db *DB) Stats() store.Stats {
	r, w := db.reader.Stats(), db.writer.Stats()
	return store.Stats{OpenConns: r.OpenConnections + w.OpenConnections, InUseConns: r.InUse + w.InUse,
		IdleConns: r.Idle + w.Idle, Waits: r.WaitCount + w.WaitCount, Listening: true}
}

// Open opens (creating if needed) the database at path and brings its
// schema up to date.
func Open(ctx context.Context, path string) (*DB, error) {
	if err := restrictFiles(path); err != nil {
		return nil, err
	}
	dsn := func(extra string) string {
		q := url.Values{}
		for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)", "foreign_keys(1)"} {
			q.Add("_pragma", p)
		}
		if extra != "" {
			q.Set("_txlock", extra)
		}
		return "file:" + path + "?" + q.Encode()
	}
	w, err := sql.Open("sqlite", dsn("immediate"))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite", dsn(""))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	db := &DB{writer: w, reader: r, writerStmts: newStmtCache(w), readerStmts: newStmtCache(r)}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// restrictFiles makes the database file and its WAL and shared-memory
// files readable by the owner only, whatever the umask or the mode of a
// directory that existed before. SQLite creates the -wal and -shm files
// with the mode of the database file, so the database is created 0600
// before SQLite opens it.
func restrictFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite: creating %s: %w", path, err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("sqlite: restricting %s: %w", p, err)
		}
	}
	return nil
}

// Close closes both pools.
func (db *DB) Close() error {
	return errors.Join(db.readerStmts.close(), db.writerStmts.close(), db.reader.Close(), db.writer.Close())
}

// Update implements store.Store.
// The changes it committed go to the subscribers before it returns.
func (db *DB) Update(ctx context.Context, fn func(store.Tx) error) error {
	t := &txn{cache: db.writerStmts}
	if err := run(ctx, db.writer, false, t, fn); err != nil {
		return err
	}
	db.hub.Publish(t.changes)
	return nil
}

// View implements store.Store.
func (db *DB) View(ctx context.Context, fn func(store.Tx) error) error {
	return run(ctx, db.reader, true, &txn{cache: db.readerStmts}, fn)
}

// Subscribe implements store.Store.
func (db *DB) Subscribe(fn func([]store.Change)) func() { return db.hub.Subscribe(fn) }

func run(ctx context.Context, pool *sql.DB, readOnly bool, t *txn, fn func(store.Tx) error) (err error) {
	tx, err := pool.BeginTx(ctx, &sql.TxOptions{ReadOnly: readOnly})
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	// After the transaction, its connection back in the pool: prepare
	// what it ran unprepared, in the background.
	defer func() {
		if len(t.missed) > 0 {
			t.cache.prepareLater(t.missed)
		}
	}()
	defer func() {
		if p := recover(); p != nil {
			tx.Rollback()
			panic(p)
		}
		if err != nil {
			tx.Rollback()
		}
	}()
	t.tx = tx
	if err := fn(t); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

// txn implements store.Tx over one *sql.Tx.
type txn struct {
	tx *sql.Tx
	// cache is the pool's prepared statements; missed are the statements
	// this transaction ran unprepared.
	cache  *stmtCache
	missed []string
	// stmts are the transaction's copies of cached statements.
	stmts map[string]*sql.Stmt
	// changes are what the transaction wrote, for the subscribers once it
	// commits.
	changes []store.Change
}

// note records that the transaction writes a record. Each mutating method
// notes its change, even when it then fails: a change delivered in vain
// only costs a cache refill.
func (t *txn) note(kind, hsm, id string) {
	t.changes = append(t.changes, store.Change{Kind: kind, HSM: hsm, ID: id})
}

var _ store.Tx = (*txn)(nil)

// exec runs a statement and maps constraint violations to store.ErrConflict.
func (t *txn) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := t.execContext(ctx, query, args...)
	if err != nil {
		var se *sqlite.Error
		if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT {
			return nil, fmt.Errorf("%w: %v", store.ErrConflict, err)
		}
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return res, nil
}

// mustAffect turns "no row changed" into store.ErrNotFound.
func mustAffect(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	} else if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return fmt.Errorf("sqlite: %w", err)
}
