package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// Sink receives batches of records. Append must be all or nothing for one
// call, as an append-blob block is.
type Sink interface {
	// Append adds lines (JSON records, each ending in a newline) to the
	// object at path.
	Append(ctx context.Context, path string, lines []byte) error
}

// ShipperConfig configures a shipper.
type ShipperConfig struct {
	Journal *Journal
	Stream  string
	Sink    Sink
	// After is the sequence number already delivered; delivery resumes
	// with the next record.
	After uint64
	// Save persists the delivered sequence number (at least once: records
	// after the last saved number may be delivered twice after a crash).
	Save func(ctx context.Context, seq uint64) error
	// Limit is the most undelivered bytes allowed before Ready fails.
	Limit int64
	Log   *slog.Logger
}

// Shipper delivers one stream of the journal to a sink, in order, behind
// the request path. Its backlog lives in the journal files, so an outage
// of the sink, or a restart, loses nothing.
type Shipper struct {
	cfg ShipperConfig

	mu        sync.Mutex
	delivered uint64 // last delivered sequence
	// backlog is the undelivered bytes measured at the last read of the
	// journal, less what was delivered since; writtenAt is the journal's
	// write count then, so that appends since are counted at once.
	backlog   int64
	writtenAt int64
	lastErr   error

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// maxBatch bounds one append: Azure's append-blob block limit is 4 MiB.
const maxBatch = 4 << 20

// StartShipper starts delivering.
func StartShipper(cfg ShipperConfig) *Shipper {
	s := &Shipper{cfg: cfg, delivered: cfg.After, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s
}

// Stop ends delivery; what is undelivered stays in the journal.
func (s *Shipper) Stop() {
	close(s.stop)
	<-s.done
}

// Wake asks for a delivery round now.
func (s *Shipper) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Delivered returns the last delivered sequence number.
func (s *Shipper) Delivered() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered
}

// full reports a backlog over the limit.
func (s *Shipper) full() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	backlog := s.backlog + s.cfg.Journal.Written(s.cfg.Stream) - s.writtenAt
	if s.cfg.Limit > 0 && backlog > s.cfg.Limit {
		return fmt.Errorf("audit: %d bytes of %s wait for delivery (limit %d); last error: %v", backlog, s.cfg.Stream, s.cfg.Limit, s.lastErr)
	}
	return nil
}

func (s *Shipper) loop() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-s.stop; cancel() }()
	wait := 200 * time.Millisecond
	for {
		err := s.round(ctx)
		s.mu.Lock()
		s.lastErr = err
		s.mu.Unlock()
		next := 200 * time.Millisecond
		if err != nil && ctx.Err() == nil {
			s.cfg.Log.Warn("audit delivery failed; will retry", "stream", s.cfg.Stream, "err", err)
			wait = min(2*wait, 5*time.Second)
			next = wait
		} else {
			wait = 200 * time.Millisecond
		}
		select {
		case <-s.stop:
			return
		case <-s.wake:
		case <-time.After(next):
		}
	}
}

// round delivers everything that is waiting, batch by batch.
func (s *Shipper) round(ctx context.Context) error {
	for {
		written := s.cfg.Journal.Written(s.cfg.Stream)
		batches, backlog, err := s.read()
		s.mu.Lock()
		s.backlog, s.writtenAt = backlog, written
		s.mu.Unlock()
		if err != nil || len(batches) == 0 {
			return err
		}
		for _, b := range batches {
			if err := s.cfg.Sink.Append(ctx, b.path, b.lines); err != nil {
				return err
			}
			if err := s.cfg.Save(ctx, b.last); err != nil {
				return fmt.Errorf("audit: saving delivery position: %w", err)
			}
			s.mu.Lock()
			s.delivered = b.last
			s.backlog -= int64(len(b.lines))
			s.mu.Unlock()
		}
	}
}

type batch struct {
	path  string
	lines []byte
	last  uint64
}

// read collects undelivered records, grouped by blob path, up to maxBatch
// bytes, and measures the whole backlog. It rereads the journal files each
// round, which costs little next to a network append.
func (s *Shipper) read() ([]batch, int64, error) {
	files, err := s.cfg.Journal.Files(s.cfg.Stream)
	if err != nil {
		return nil, 0, err
	}
	after := s.Delivered()
	var out []batch
	var backlog, size int64
	for _, path := range files {
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // rotated away between listing and opening: read next round
		}
		if err != nil {
			return nil, 0, err
		}
		r := bufio.NewReaderSize(f, 1<<20)
		for {
			line, err := r.ReadBytes('\n')
			if err == io.EOF {
				break // a torn last line is not a record yet
			}
			if err != nil {
				f.Close()
				return nil, 0, err
			}
			var head struct {
				Sequence uint64 `json:"sequence"`
				Time     string `json:"time"`
				Resource string `json:"resourceId"`
			}
			if json.Unmarshal(line, &head) != nil || head.Sequence <= after {
				continue
			}
			backlog += int64(len(line))
			if size+int64(len(line)) > maxBatch {
				continue // counted in the backlog; delivered next round
			}
			p := BlobPath(head.Resource, head.Time)
			if len(out) == 0 || out[len(out)-1].path != p {
				out = append(out, batch{path: p})
			}
			b := &out[len(out)-1]
			b.lines, b.last = append(b.lines, line...), head.Sequence
			size += int64(len(line))
		}
		f.Close()
	}
	return out, backlog, nil
}

// BlobPath is where Azure puts a record in the insights-logs-auditevent
// container: the resource id, then the record's UTC hour.
func BlobPath(resourceID, recordTime string) string {
	t, err := time.Parse(TimeLayout, recordTime)
	if err != nil {
		t = time.Now().UTC()
	}
	return fmt.Sprintf("resourceId=%s/y=%04d/m=%02d/d=%02d/h=%02d/m=00/PT1H.json",
		strings.ToUpper(resourceID), t.Year(), t.Month(), t.Day(), t.Hour())
}

// AddShipper makes Ready account for s's backlog.
func (l *Log) AddShipper(s *Shipper) {
	l.mu.Lock()
	l.shippers = append(l.shippers, s)
	l.mu.Unlock()
}

// RemoveShipper stops s and forgets it.
func (l *Log) RemoveShipper(s *Shipper) {
	l.mu.Lock()
	for i, x := range l.shippers {
		if x == s {
			l.shippers = append(l.shippers[:i], l.shippers[i+1:]...)
			break
		}
	}
	l.mu.Unlock()
	s.Stop()
}
