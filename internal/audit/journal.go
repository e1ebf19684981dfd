package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Journal is the file sink: one JSON-lines file per stream in a directory,
// rotated by size. Writes go to the operating system at once (a killed
// process loses nothing it acknowledged) and to the disk within SyncEvery.
type Journal struct {
	dir      string
	maxBytes int64
	log      *slog.Logger

	mu      sync.Mutex
	streams map[string]*stream
	failed  error // the last write error; Ready reports it

	stop chan struct{}
	done chan struct{}
}

type stream struct {
	name    string
	file    *os.File
	size    int64
	seq     uint64
	last    string // hash of the last record
	dirty   bool
	written int64 // bytes appended since start-up, for the shippers
}

// SyncEvery is how often journals are flushed to disk.
const SyncEvery = 100 * time.Millisecond

// DefaultMaxFileBytes rotates a journal file at 64 MiB.
const DefaultMaxFileBytes = 64 << 20

var streamName = regexp.MustCompile(`^[a-zA-Z0-9-]{1,64}$`)

// OpenJournal opens (creating) the journal directory and resumes every
// stream's chain from its files.
func OpenJournal(dir string, maxBytes int64, log *slog.Logger) (*Journal, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxFileBytes
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	j := &Journal{dir: dir, maxBytes: maxBytes, log: log, streams: map[string]*stream{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go j.syncLoop()
	return j, nil
}

// Path is the current file of a stream.
func (j *Journal) Path(name string) string { return filepath.Join(j.dir, name+".jsonl") }

// Files lists a stream's files, oldest first, the current one last.
func (j *Journal) Files(name string) ([]string, error) {
	rotated, err := filepath.Glob(filepath.Join(j.dir, name+".*.jsonl"))
	if err != nil {
		return nil, err
	}
	slices.Sort(rotated) // names carry zero-padded first sequence numbers
	if _, err := os.Stat(j.Path(name)); err == nil {
		rotated = append(rotated, j.Path(name))
	}
	return rotated, nil
}

// open returns the stream, resuming its chain from its last record.
func (j *Journal) open(name string) (*stream, error) {
	if s, ok := j.streams[name]; ok {
		return s, nil
	}
	if !streamName.MatchString(name) {
		return nil, fmt.Errorf("audit: bad stream name %q", name)
	}
	s := &stream{name: name}
	files, err := j.Files(name)
	if err != nil {
		return nil, err
	}
	if len(files) > 0 {
		last, err := lastRecord(files[len(files)-1])
		if err != nil {
			return nil, err
		}
		if last == nil && len(files) > 1 {
			last, err = lastRecord(files[len(files)-2])
			if err != nil {
				return nil, err
			}
		}
		if last != nil {
			s.seq, s.last = last.Sequence, last.Hash
		}
	}
	f, err := os.OpenFile(j.Path(name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: opening journal: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	s.file, s.size = f, fi.Size()
	j.streams[name] = s
	return s, nil
}

// lastRecord reads the last complete record of a file. A torn last line
// (a crash mid-write) is ignored: it was never acknowledged.
func lastRecord(path string) (*Event, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var last *Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e Event
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			last = &e
		}
	}
	return last, sc.Err()
}

// Append seals e into its stream's chain (setting Stream, Sequence,
// PreviousHash and Hash) and writes it. It returns only when the record is
// in the file.
func (j *Journal) Append(streamName string, e *Event) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	s, err := j.open(streamName)
	if err != nil {
		j.failed = err
		return err
	}
	e.Stream, e.Sequence, e.PreviousHash = streamName, s.seq+1, s.last
	if e.Hash, err = e.hash(); err != nil {
		return err
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: encoding record: %w", err)
	}
	line = append(line, '\n')
	if s.size+int64(len(line)) > j.maxBytes && s.size > 0 {
		if err := j.rotate(s); err != nil {
			j.failed = err
			return err
		}
	}
	if _, err := s.file.Write(line); err != nil {
		j.failed = fmt.Errorf("audit: writing journal %s: %w", s.name, err)
		return j.failed
	}
	j.failed = nil
	s.seq, s.last, s.size, s.dirty = e.Sequence, e.Hash, s.size+int64(len(line)), true
	s.written += int64(len(line))
	return nil
}

// rotate renames the current file after its first sequence number and
// starts a new one; the chain goes on across files.
func (j *Journal) rotate(s *stream) error {
	if err := s.file.Sync(); err != nil {
		return err
	}
	if err := s.file.Close(); err != nil {
		return err
	}
	first, err := firstSequence(j.Path(s.name))
	if err != nil {
		return err
	}
	if err := os.Rename(j.Path(s.name), filepath.Join(j.dir, fmt.Sprintf("%s.%020d.jsonl", s.name, first))); err != nil {
		return fmt.Errorf("audit: rotating %s: %w", s.name, err)
	}
	f, err := os.OpenFile(j.Path(s.name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("audit: rotating %s: %w", s.name, err)
	}
	s.file, s.size = f, 0
	return nil
}

func firstSequence(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadBytes('\n')
	if err != nil && err != io.EOF {
		return 0, err
	}
	if len(line) == 0 {
		return 0, io.EOF // an empty file has no first record yet
	}
	var e Event
	if err := json.Unmarshal(line, &e); err != nil {
		return 0, fmt.Errorf("audit: reading %s: %w", path, err)
	}
	return e.Sequence, nil
}

// Written returns how many bytes each stream has had appended since the
// journal opened.
func (j *Journal) Written(name string) int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	if s, ok := j.streams[name]; ok {
		return s.written
	}
	return 0
}

// LastSequence returns the sequence number of a stream's last record.
func (j *Journal) LastSequence(name string) uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	s, err := j.open(name)
	if err != nil {
		return 0
	}
	return s.seq
}

// Err is the last write failure, or nil once a write succeeded again.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed
}

func (j *Journal) syncLoop() {
	defer close(j.done)
	t := time.NewTicker(SyncEvery)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			j.syncAll()
			return
		case <-t.C:
			j.syncAll()
		}
	}
}

func (j *Journal) syncAll() {
	j.mu.Lock()
	var files []*os.File
	for _, s := range j.streams {
		if s.dirty {
			files, s.dirty = append(files, s.file), false
		}
	}
	j.mu.Unlock()
	for _, f := range files {
		if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			j.log.Error("audit journal sync failed", "err", err)
		}
	}
}

// Close flushes and closes every stream.
func (j *Journal) Close() error {
	close(j.stop)
	<-j.done
	j.mu.Lock()
	defer j.mu.Unlock()
	var errs []error
	for _, s := range j.streams {
		errs = append(errs, s.file.Close())
	}
	return errors.Join(errs...)
}

// StreamOf returns the stream an HSM's records go to; the tenant's own
// endpoints (tokens, directory, resource manager) use TenantStream.
func StreamOf(hsm string) string {
	if hsm == "" {
		return TenantStream
	}
	return strings.ToLower(hsm)
}

// TenantStream is the stream of requests that address no HSM.
const TenantStream = "tenant"
