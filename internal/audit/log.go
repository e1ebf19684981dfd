package audit

import (
	"errors"
	"fmt"
	"sync"
)

// Log is the audit log of a node: the journal, and the shippers that
// deliver it to network sinks.
type Log struct {
	journal *Journal

	mu       sync.Mutex
	shippers []*Shipper
}

// NewLog returns a log writing to j.
func NewLog(j *Journal) *Log { return &Log{journal: j} }

// Journal returns the file sink.
func (l *Log) Journal() *Journal { return l.journal }

// ErrNotReady is returned by Ready when a record could not be kept.
var ErrNotReady = errors.New("audit: the audit log cannot accept records")

// Ready reports whether a record can be kept now: the journal accepts
// writes and no shipper's backlog is over its limit. Requests are refused
// while it fails, so that nothing runs unlogged.
func (l *Log) Ready() error {
	if err := l.journal.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.shippers {
		if err := s.full(); err != nil {
			return fmt.Errorf("%w: %v", ErrNotReady, err)
		}
	}
	return nil
}

// Append writes e to stream. A record for a name that cannot be a stream
// (see ValidStream) goes to TenantStream instead: the request is kept,
// and one bad name cannot stop the log.
func (l *Log) Append(stream string, e *Event) error {
	err := l.journal.Append(stream, e)
	if errors.Is(err, ErrBadStream) && stream != TenantStream {
		err = l.journal.Append(TenantStream, e)
	}
	return err
}
