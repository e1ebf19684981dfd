// Package postgres implements store.Store on PostgreSQL with pgx (a
// connection pool; pgx prepares each statement once per connection and
// reuses it).
//
// Writers are serialised, as the store contract says and as SQLite's
// single writer does: every Update runs at READ COMMITTED and first takes
// one transaction-scoped advisory lock (writeLock), so the Updates of all
// nodes on a database run one after another, each seeing everything
// committed before it. The rules that read before they write — unique
// names (also unique indexes), version sequence numbers, the
// read-modify-write of the node settings and of role assignments whose
// number is limited — therefore hold without retries, and fn runs exactly
// once (no serialization failure to retry on). View runs at REPEATABLE
// READ, READ ONLY: one snapshot, never waiting for writers.
//
// PostgreSQL aborts a transaction on the first failed statement; the
// contract keeps it usable, so each write runs inside a savepoint that a
// failure rolls back to.
//
// Changes are recorded per transaction and handed to the store.Hub after
// the commit, as in store/sqlite. Across nodes, a NOTIFY of the same
// changes is sent inside the transaction (delivered by PostgreSQL at
// commit), and a LISTEN connection of each DB hands what other nodes sent
// to its hub (notify.go).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
)

// DB is a store.Store backed by PostgreSQL.
type DB struct {
	pool *pgxpool.Pool
	hub  store.Hub
	// node tells this DB's notifications from other nodes'.
	node        string
	listener    *listener
	lockTimeout time.Duration
}

var _ store.Store = (*DB)(nil)

// writeLock is the advisory lock every Update holds until it ends.
const writeLock = 0x6b657977_77726974 // "keywwrit"

// Options tune a DB; the zero value is the defaults.
type Options struct {
	// Log receives the change listener's reports (connections lost and
	// regained); default slog's.
	Log *slog.Logger
	// ReplyTimeout bounds every wait for the server's reply (default
	// 15 s): a cut network or a stopped server fails the connection
	// rather than hang the statement. A statement that legitimately runs
	// longer must not exist on the request path.
	ReplyTimeout time.Duration
	// LockTimeout bounds the wait to begin a transaction and, for an
	// Update, to take the write lock (default 10 s); past it the caller
	// gets store.ErrUnavailable and may retry.
	LockTimeout time.Duration
}

// Open connects to the database at url (a PostgreSQL URL or key=value
// string, as pgx takes) and brings its schema up to date.
func Open(ctx context.Context, url string) (*DB, error) { return OpenWith(ctx, url, Options{}) }

// OpenWith is Open with options.
func OpenWith(ctx context.Context, url string, o Options) (*DB, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.ReplyTimeout <= 0 {
		o.ReplyTimeout = 15 * time.Second
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 10 * time.Second
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	dial := cfg.ConnConfig.DialFunc
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &replyBound{Conn: c, timeout: o.ReplyTimeout}, nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db := &DB{pool: pool, node: newNodeID(), lockTimeout: o.LockTimeout}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := db.startListener(ctx, o.Log); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// replyBound is a connection whose every read waits at most timeout (or
// less, when pgx set an earlier deadline to interrupt a cancelled
// context): a transaction's statements use their caller's context, which
// often has no deadline (background work), and the server's reply must
// not be awaited forever when the network is cut or the server stopped.
// A long transaction of many statements is not bounded as a whole.
type replyBound struct {
	net.Conn
	timeout time.Duration

	mu       sync.Mutex
	deadline time.Time // the read deadline pgx set; zero for none
}

func (c *replyBound) Read(b []byte) (int, error) {
	d := time.Now().Add(c.timeout)
	c.mu.Lock()
	if !c.deadline.IsZero() && c.deadline.Before(d) {
		d = c.deadline
	}
	c.mu.Unlock()
	if err := c.Conn.SetReadDeadline(d); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *replyBound) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *replyBound) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// Close stops listening and closes the pool.
func (db *DB) Close() error {
	db.stopListener()
	db.pool.Close()
	return nil
}

// Update implements store.Store.
// The changes it committed go to the subscribers before it returns.
func (db *DB) Update(ctx context.Context, fn func(store.Tx) error) error {
	t := &txn{}
	if err := db.run(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, t, fn); err != nil {
		return err
	}
	db.hub.Publish(t.changes)
	return nil
}

// View implements store.Store.
func (db *DB) View(ctx context.Context, fn func(store.Tx) error) error {
	return db.run(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, &txn{}, fn)
}

// Stats implements store.StatsReporter.
func (db *DB) Stats() store.Stats {
	ps := db.pool.Stat()
	st := store.Stats{OpenConns: int(ps.TotalConns()), InUseConns: int(ps.AcquiredConns()), IdleConns: int(ps.IdleConns()),
		Waits: ps.EmptyAcquireCount()}
	if l := db.listener; l != nil {
		st.Notifications, st.NotificationLag = l.received.Load(), time.Duration(l.lagMs.Load())*time.Millisecond
		st.Listening = l.listening.Load()
	}
	return st
}

// DatabaseTime implements store.Clock: the server's clock now.
func (db *DB) DatabaseTime(ctx context.Context) (time.Time, error) {
	var t time.Time
	if err := db.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("postgres: reading the clock: %w", err)
	}
	return t, nil
}

// Subscribe implements store.Store.
func (db *DB) Subscribe(fn func([]store.Change)) func() { return db.hub.Subscribe(fn) }

// connectTimeout bounds a new connection when the URL sets none
// (connect_timeout). With Options.LockTimeout and ReplyTimeout, a request
// meets a database it cannot reach with an error in bounded time, never a
// hang.
const connectTimeout = 3 * time.Second

func (db *DB) run(ctx context.Context, opts pgx.TxOptions, t *txn, fn func(store.Tx) error) (err error) {
	var tx pgx.Tx
	defer func() {
		if err != nil && unreachable(err, tx) {
			err = fault.Wrap(store.ErrUnavailable, err)
		}
	}()
	// Beginning (a connection from the pool) and the write lock wait at
	// most lockTimeout: behind a long writer, or a database away.
	start, cancel := context.WithTimeout(ctx, db.lockTimeout)
	defer cancel()
	tx, err = db.pool.BeginTx(start, opts)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			db.rollback(ctx, tx)
			panic(p)
		}
		if err != nil {
			db.rollback(ctx, tx)
		}
	}()
	if opts.AccessMode != pgx.ReadOnly {
		if _, err := tx.Exec(start, `SELECT pg_advisory_xact_lock($1)`, int64(writeLock)); err != nil {
			return fmt.Errorf("postgres: taking the write lock: %w", err)
		}
	}
	t.tx = tx
	if err := fn(t); err != nil {
		return err
	}
	if opts.AccessMode != pgx.ReadOnly {
		if err := t.notify(ctx, db.node); err != nil {
			return fmt.Errorf("postgres: notifying other nodes: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit: %w", err)
	}
	return nil
}

// rollback ends a failed transaction, briefly: on a broken connection
// there is nothing to wait for.
func (db *DB) rollback(ctx context.Context, tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	tx.Rollback(ctx)
}

// txn implements store.Tx over one pgx.Tx.
type txn struct {
	tx pgx.Tx
	// changes are what the transaction wrote, for the subscribers once it
	// commits.
	changes []store.Change
}

var _ store.Tx = (*txn)(nil)

// note records that the transaction writes a record. Each mutating method
// notes its change, even when it then fails: a change delivered in vain
// only costs a cache refill.
func (t *txn) note(kind, hsm, id string) {
	t.changes = append(t.changes, store.Change{Kind: kind, HSM: hsm, ID: id})
}

// exec runs a write inside a savepoint (sent together with it), so that a
// failure leaves the transaction usable, and maps integrity constraint
// violations (SQLSTATE class 23) to store.ErrConflict.
func (t *txn) exec(ctx context.Context, query string, args ...any) (pgconn.CommandTag, error) {
	b := &pgx.Batch{}
	b.Queue(`SAVEPOINT write`)
	b.Queue(query, args...)
	b.Queue(`RELEASE SAVEPOINT write`)
	br := t.tx.SendBatch(ctx, b)
	_, err := br.Exec()
	var tag pgconn.CommandTag
	if err == nil {
		tag, err = br.Exec()
		if err == nil {
			_, err = br.Exec()
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		return tag, nil
	}
	if _, rerr := t.tx.Exec(ctx, `ROLLBACK TO SAVEPOINT write`); rerr == nil {
		t.tx.Exec(ctx, `RELEASE SAVEPOINT write`)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && strings.HasPrefix(pe.Code, "23") {
		return tag, fmt.Errorf("%w: %v", store.ErrConflict, err)
	}
	return tag, fmt.Errorf("postgres: %w", err)
}

// mustAffect turns "no row changed" into store.ErrNotFound.
func mustAffect(tag pgconn.CommandTag, err error) error {
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return fmt.Errorf("postgres: %w", err)
}

// collect scans every row with scan.
func collect[T any](rows pgx.Rows, err error, scan func(pgx.Rows) (T, error)) ([]T, error) {
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return out, nil
}

// unreachable reports whether err means the database could not be
// reached or the connection was lost (rather than a refused statement): a
// transaction that failed so is reported as store.ErrUnavailable, which
// callers answer with 503 and clients retry.
func unreachable(err error, tx pgx.Tx) bool {
	if _, ok := fault.As(err); ok {
		return false // the transaction's own verdict (not found, conflict…)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08: connection exception; 57P01-57P03: the server is
		// shutting down or starting.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	switch {
	case errors.As(err, &ce), errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err):
		return true
	}
	return tx != nil && tx.Conn().IsClosed()
}
