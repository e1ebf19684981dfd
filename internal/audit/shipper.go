package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	// caughtUp is when the shipper last found nothing left to deliver.
	caughtUp time.Time
	pos      *position // owned by the shipper's goroutine
	// cpOffset is where the next checkpoint to ship starts in the
	// stream's checkpoint file; cpStarted tells it was found.
	cpOffset  int64
	cpStarted bool

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// maxBatch bounds one append: Azure's append-blob block limit is 4 MiB.
const maxBatch = 4 << 20

// StartShipper starts delivering.
func StartShipper(cfg ShipperConfig) *Shipper {
	s := &Shipper{cfg: cfg, delivered: cfg.After, caughtUp: time.Now(), wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
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

// Backlog reports the records written but not yet delivered, and the
// shipping lag: how long since the shipper last had nothing waiting (0
// when it has nothing waiting now).
func (s *Shipper) Backlog() (records uint64, lag time.Duration) {
	last := s.cfg.Journal.LastSequence(s.cfg.Stream)
	s.mu.Lock()
	defer s.mu.Unlock()
	if last <= s.delivered {
		return 0, 0
	}
	return last - s.delivered, time.Since(s.caughtUp)
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
		if err == nil && s.delivered >= s.cfg.Journal.LastSequence(s.cfg.Stream) {
			s.caughtUp = time.Now()
		}
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
		if err != nil {
			return err
		}
		if len(batches) == 0 {
			return s.shipCheckpoints(ctx)
		}
		for _, b := range batches {
			if err := s.cfg.Sink.Append(ctx, b.path, b.lines); err != nil {
				return err
			}
			if err := s.cfg.Save(ctx, b.last); err != nil {
				return fmt.Errorf("audit: saving delivery position: %w", err)
			}
			pos := b.pos
			s.pos = &pos
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
	pos   position // where reading resumes once this batch is delivered
}

// position is where reading resumes: a journal file, known by the
// sequence number of its first record (which survives the rename of a
// rotation), and a byte offset in it.
type position struct {
	first  uint64
	offset int64
}

// fileFirst returns the first sequence number of an open journal file:
// rotated files carry it in their name, the current one in its first line,
// read through the same handle, so a rotation between the listing and the
// open cannot make one file pass for another.
func fileFirst(f *os.File, path string) (uint64, error) {
	base := strings.TrimSuffix(filepath.Base(path), ".jsonl")
	if i := strings.LastIndex(base, "."); i >= 0 {
		if n, err := strconv.ParseUint(base[i+1:], 10, 64); err == nil && n > 0 {
			return n, nil
		}
	}
	line, err := bufio.NewReader(io.NewSectionReader(f, 0, 1<<20)).ReadBytes('\n')
	if len(line) == 0 || err != nil {
		return 0, io.EOF // no complete first record yet
	}
	var e Event
	if err := json.Unmarshal(line, &e); err != nil {
		return 0, fmt.Errorf("audit: reading %s: %w", path, err)
	}
	return e.Sequence, nil
}

// read collects undelivered records after the shipper's position, grouped
// by blob path, up to maxBatch bytes, and measures the backlog from the
// sizes of all the undelivered files, read or not. Only what was not read
// before is read.
func (s *Shipper) read() ([]batch, int64, error) {
	files, err := s.cfg.Journal.Files(s.cfg.Stream)
	if err != nil {
		return nil, 0, err
	}
	after := s.Delivered()
	var out []batch
	var backlog, size int64
	var lastSeen uint64 // the sequence of the last record read
	started := s.pos == nil
	for _, path := range files {
		if size >= maxBatch {
			// The batch is full, but the backlog counts every
			// undelivered file, not only the ones read.
			if started {
				if fi, err := os.Stat(path); err == nil {
					backlog += fi.Size()
				}
			}
			continue
		}
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // rotated away meanwhile: found under its new name next round
		}
		if err != nil {
			return nil, 0, err
		}
		first, err := fileFirst(f, path)
		if errors.Is(err, io.EOF) {
			f.Close()
			continue // still empty
		}
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		var offset int64
		switch {
		case started && lastSeen != 0 && first != lastSeen+1:
			// A rotation renamed the file that follows after we listed the
			// files: we opened the one after it. Read again next round.
			f.Close()
			return out, backlog, nil
		case started:
		case first == s.pos.first:
			// The position is just after the last delivered record.
			started, offset, lastSeen = true, s.pos.offset, after
		default:
			f.Close()
			continue // wholly delivered
		}
		if fi, err := f.Stat(); err == nil {
			backlog += fi.Size() - offset
		}
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, 0, err
		}
		r := bufio.NewReaderSize(f, 1<<20)
		for size < maxBatch {
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
			if json.Unmarshal(line, &head) != nil {
				continue
			}
			lastSeen = head.Sequence
			if head.Sequence > after {
				p := BlobPath(head.Resource, head.Time)
				if len(out) == 0 || out[len(out)-1].path != p {
					out = append(out, batch{path: p})
				}
				b := &out[len(out)-1]
				b.lines, b.last = append(b.lines, line...), head.Sequence
				size += int64(len(line))
			} else {
				backlog -= int64(len(line))
			}
			offset += int64(len(line))
			if len(out) > 0 {
				out[len(out)-1].pos = position{first: first, offset: offset}
			}
		}
		f.Close()
	}
	return out, backlog, nil
}

// CheckpointSink is a Sink that keeps checkpoints apart from records.
// A shipper delivers checkpoints to AppendCheckpoints when its sink has
// it, and to Append otherwise.
type CheckpointSink interface {
	AppendCheckpoints(ctx context.Context, path string, lines []byte) error
}

// shipCheckpoints delivers the stream's checkpoints (see Checkpointer)
// whose records are delivered, beside those records: in the blob
// checkpoints.json of the hour of the checkpoint (in CheckpointContainer
// for a BlobSink). After a restart the
// last checkpoint delivered before is delivered again; VerifyCheckpointed
// ignores copies.
func (s *Shipper) shipCheckpoints(ctx context.Context) error {
	f, err := os.Open(CheckpointPath(s.cfg.Journal, s.cfg.Stream))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || (s.cpStarted && fi.Size() <= s.cpOffset) {
		return err
	}
	data, err := io.ReadAll(io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		return err
	}
	if !s.cpStarted {
		// Resume with the last checkpoint whose records were delivered.
		for off := int64(0); ; {
			i := bytes.IndexByte(data[off:], '\n')
			if i < 0 {
				break
			}
			var c Checkpoint
			if json.Unmarshal(data[off:off+int64(i)], &c) == nil && c.LastSequence <= s.cfg.After {
				s.cpOffset = off
			}
			off += int64(i) + 1
		}
		s.cpStarted = true
	}
	delivered := s.Delivered()
	for s.cpOffset < int64(len(data)) {
		var path string
		var lines []byte
		end := s.cpOffset
		for {
			i := bytes.IndexByte(data[end:], '\n')
			if i < 0 {
				break // a torn last line is not a checkpoint yet
			}
			line := data[end : end+int64(i)+1]
			var c Checkpoint
			if json.Unmarshal(line, &c) != nil {
				end += int64(len(line))
				continue
			}
			p := checkpointBlobPath(c)
			if c.LastSequence > delivered || (path != "" && p != path) {
				break
			}
			path, lines, end = p, append(lines, line...), end+int64(len(line))
		}
		if len(lines) == 0 {
			s.cpOffset = end
			return nil
		}
		appendTo := s.cfg.Sink.Append
		if cs, ok := s.cfg.Sink.(CheckpointSink); ok {
			appendTo = cs.AppendCheckpoints
		}
		if err := appendTo(ctx, path, lines); err != nil {
			return err
		}
		s.cpOffset = end
	}
	return nil
}

// checkpointBlobPath is where a checkpoint is delivered: beside the
// records of its hour, in checkpoints.json.
func checkpointBlobPath(c Checkpoint) string {
	return strings.TrimSuffix(BlobPath(c.ResourceID, c.Time), "PT1H.json") + CheckpointBlob
}

// CheckpointBlob is the name of the blobs checkpoints are delivered to.
const CheckpointBlob = "checkpoints.json"

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

// Backlog sums the shippers' undelivered records and reports the largest
// shipping lag (see Shipper.Backlog).
func (l *Log) Backlog() (records uint64, lag time.Duration) {
	l.mu.Lock()
	shippers := slices.Clone(l.shippers)
	l.mu.Unlock()
	for _, s := range shippers {
		n, d := s.Backlog()
		records, lag = records+n, max(lag, d)
	}
	return records, lag
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
