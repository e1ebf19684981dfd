package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/internal/store"
)

// Changes across nodes. Every Update that recorded changes sends them,
// inside its transaction, with pg_notify on channel: PostgreSQL delivers a
// notification when the transaction commits, never when it rolls back, and
// in commit order. Each DB keeps one connection of its own that LISTENs
// (listen) and hands what other nodes committed to its hub, the path local
// commits take, so caches invalidate the same way; a DB skips its own
// notifications by its random node id, its subscribers having had them
// from Update.
//
// A notification on a live connection is not lost, so what can go missing
// is what was committed while the connection was down. The listener checks
// its connection every aliveEvery (a round trip, which also finds a
// connection that died without a word), and on every reconnection delivers
// store.ChangeAll: everything may have changed, and every cache drops
// everything. There is no periodic flush besides: while connected, other
// nodes' changes arrive within a round trip of their commit.

// channel is the notification channel of every node on a database.
const channel = "keyward_changes"

// maxPayload keeps a payload under PostgreSQL's limit (8000 bytes); a
// bigger set of changes is sent as a flush.
const maxPayload = 7900

// aliveEvery is how long the listener waits for a notification before it
// checks that its connection still answers, and how long the answer may
// take. A connection lost without a word (a cut network) is noticed
// within two of them, so no cache trusts what it holds for more than about
// a second after the node stops hearing of other nodes' changes. It costs
// one round trip every half second per node.
const aliveEvery = 500 * time.Millisecond

// maxBackoff caps the wait between reconnection attempts; each failed
// attempt drops the caches again, since a node that cannot listen does not
// know what the others commit.
const maxBackoff = 500 * time.Millisecond

// reconnectWarnEvery spaces the warnings of a listener that keeps failing
// to reconnect (it tries twice a second).
const reconnectWarnEvery = 10 * time.Second

// payload is a notification's JSON.
type payload struct {
	Node    string   `json:"node"`
	Sent    int64    `json:"t,omitempty"` // Unix milliseconds, for the lag metric
	All     bool     `json:"all,omitempty"`
	Changes []change `json:"changes,omitempty"`
}

type change struct {
	Kind string `json:"k"`
	HSM  string `json:"h,omitempty"`
	ID   string `json:"i,omitempty"`
}

func newNodeID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// encodeChanges is the payload announcing changes from node: the changes
// themselves, or a flush if they do not fit.
func encodeChanges(node string, cs []store.Change) string {
	p := payload{Node: node, Sent: time.Now().UnixMilli()}
	for _, c := range cs {
		if c.Kind == store.ChangeAll {
			p.All = true
			break
		}
		p.Changes = append(p.Changes, change{c.Kind, c.HSM, c.ID})
	}
	if !p.All {
		if b, err := json.Marshal(p); err == nil && len(b) <= maxPayload {
			return string(b)
		}
	}
	b, _ := json.Marshal(payload{Node: node, Sent: p.Sent, All: true})
	return string(b)
}

// decodeChanges reads a payload; mine reports that node sent it. A payload
// that cannot be read counts as a flush.
func decodeChanges(node, s string) (cs []store.Change, mine bool) {
	p, err := readPayload(s)
	return changesOf(node, p, err)
}

func readPayload(s string) (payload, error) {
	var p payload
	err := json.Unmarshal([]byte(s), &p)
	return p, err
}

// changesOf is what a read payload (or a failure to read it) means to node.
func changesOf(node string, p payload, readErr error) (cs []store.Change, mine bool) {
	if readErr != nil {
		return []store.Change{{Kind: store.ChangeAll}}, false
	}
	if p.Node == node {
		return nil, true
	}
	if p.All {
		return []store.Change{{Kind: store.ChangeAll}}, false
	}
	cs = make([]store.Change, len(p.Changes))
	for i, c := range p.Changes {
		cs[i] = store.Change{Kind: c.Kind, HSM: c.HSM, ID: c.ID}
	}
	return cs, false
}

// notify sends the transaction's changes to the other nodes; PostgreSQL
// delivers the notification at commit.
func (t *txn) notify(ctx context.Context, node string) error {
	if len(t.changes) == 0 {
		return nil
	}
	_, err := t.tx.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, encodeChanges(node, t.changes))
	return err
}

// listener is the LISTEN side of a DB.
type listener struct {
	cfg  *pgx.ConnConfig
	node string
	hub  *store.Hub
	log  *slog.Logger

	pid atomic.Uint32 // the backend pid of the current connection
	// listening, received and lagMs feed Stats.
	listening atomic.Bool
	received  atomic.Uint64
	lagMs     atomic.Int64
	cancel    context.CancelFunc
	done      chan struct{}
}

// connect opens a connection and LISTENs on it.
func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*aliveEvery)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, l.cfg.Copy())
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `LISTEN `+channel); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	l.pid.Store(conn.PgConn().PID())
	return conn, nil
}

// run delivers other nodes' notifications until ctx ends, reconnecting
// with backoff when the connection is lost and delivering a flush once it
// is back. conn is the first connection, already listening.
func (l *listener) run(ctx context.Context, conn *pgx.Conn) {
	defer close(l.done)
	for {
		l.listening.Store(true)
		err := l.receive(ctx, conn)
		l.listening.Store(false)
		conn.Close(context.Background())
		if ctx.Err() != nil {
			return
		}
		l.log.Warn("postgres: the change listener lost its connection; reconnecting", "err", err)
		// Whatever was committed from now until the new LISTEN is unknown:
		// drop what the caches hold now, and again once listening.
		l.hub.Publish([]store.Change{{Kind: store.ChangeAll}})
		backoff := 50 * time.Millisecond
		var said time.Time // the last warning: one every reconnectWarnEvery
		for {
			if conn, err = l.connect(ctx); err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			if time.Since(said) >= reconnectWarnEvery {
				l.log.Warn("postgres: the change listener cannot reconnect; retrying", "err", err, "retryEvery", maxBackoff)
				said = time.Now()
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			l.hub.Publish([]store.Change{{Kind: store.ChangeAll}})
			backoff = min(2*backoff, maxBackoff)
		}
		l.hub.Publish([]store.Change{{Kind: store.ChangeAll}})
	}
}

// receive delivers notifications from conn until it fails or ctx ends.
func (l *listener) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, aliveEvery)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if wctx.Err() == nil || conn.IsClosed() {
				return err
			}
			// Nothing came for a while: make sure the connection answers.
			pctx, cancel := context.WithTimeout(ctx, aliveEvery)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
			continue
		}
		if n.Channel != channel {
			continue
		}
		p, readErr := readPayload(n.Payload)
		if cs, mine := changesOf(l.node, p, readErr); !mine {
			l.hub.Publish(cs)
			if p.Sent > 0 {
				l.lagMs.Store(max(0, time.Now().UnixMilli()-p.Sent))
			}
			l.received.Add(1)
		}
	}
}

// startListener opens the LISTEN connection (so that Open fails if it
// cannot) and starts delivering.
func (db *DB) startListener(ctx context.Context, log *slog.Logger) error {
	l := &listener{cfg: db.pool.Config().ConnConfig, node: db.node, hub: &db.hub, log: log, done: make(chan struct{})}
	conn, err := l.connect(ctx)
	if err != nil {
		return errors.Join(errors.New("postgres: listening for other nodes' changes"), err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	db.listener = l
	go l.run(lctx, conn)
	return nil
}

// stopListener ends the listener and waits for it.
func (db *DB) stopListener() {
	if db.listener != nil {
		db.listener.cancel()
		<-db.listener.done
	}
}
