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
//
// A failed write (a full disk, say) makes Err report the failure, and the
// server refuses requests; a probe every ProbeEvery tries the disk again
// and clears the failure by itself once a write can succeed, and the part
// of a line the failed write left is cut before the stream's next record.
// At most MaxOpenFiles stream files are open at once; the chain state of a
// stream (its last sequence number and hash) stays in memory.
type Journal struct {
	dir        string
	maxBytes   int64
	maxOpen    int
	probeEvery time.Duration
	log        *slog.Logger
	// openFile opens stream and probe files; tests replace it to make
	// writes fail as a full disk does.
	openFile func(name string, flag int, perm fs.FileMode) (journalFile, error)

	mu      sync.Mutex
	node    string // stamped on every record (SetNode)
	streams map[string]*stream
	open    int    // streams whose file is open
	clock   uint64 // counts uses, for the least recently used file
	failed  error  // the last write error; Ready reports it

	// searches holds a slot per search running (Search).
	searches chan struct{}

	stop chan struct{}
	done chan struct{}
}

// journalFile is the part of *os.File the journal uses.
type journalFile interface {
	io.Writer
	Sync() error
	Close() error
	Stat() (fs.FileInfo, error)
	Truncate(size int64) error
}

func osOpenFile(name string, flag int, perm fs.FileMode) (journalFile, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err // not a typed nil in an interface
	}
	return f, nil
}

type stream struct {
	name    string
	file    journalFile // nil while closed
	size    int64       // bytes of whole records in the current file
	seq     uint64
	last    string // hash of the last record
	res     string // resource id of the last record
	dirty   bool
	written int64  // bytes appended since start-up, for the shippers
	used    uint64 // the journal's clock at the last use of file
}

// SyncEvery is how often journals are flushed to disk.
const SyncEvery = 100 * time.Millisecond

// ProbeEvery is how often a failed journal tries the disk again.
const ProbeEvery = time.Second

// probeBytes is what a probe writes: room for a few records at least, so a
// disk with a few bytes free does not pass for a working one.
const probeBytes = 64 << 10

// DefaultMaxFileBytes rotates a journal file at 64 MiB.
const DefaultMaxFileBytes = 64 << 20

// MaxOpenFiles bounds the stream files a journal keeps open; the least
// recently used is closed to open another.
const MaxOpenFiles = 64

var streamName = regexp.MustCompile(`^[a-zA-Z0-9-]{1,64}$`)

// ValidStream reports whether name can be a stream: 1 to 64 letters,
// digits and hyphens (the names of Managed HSMs).
func ValidStream(name string) bool { return streamName.MatchString(name) }

// ErrBadStream is returned by Append for a name ValidStream rejects. It is
// the caller's mistake about one record, not a failure of the journal: Err
// and Ready do not report it.
var ErrBadStream = errors.New("audit: bad stream name")

// OpenJournal opens (creating) the journal directory. A stream's chain is
// resumed from its files when the stream is first used.
func OpenJournal(dir string, maxBytes int64, log *slog.Logger) (*Journal, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxFileBytes
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	j := &Journal{dir: dir, maxBytes: maxBytes, maxOpen: MaxOpenFiles, probeEvery: ProbeEvery, log: log,
		openFile: osOpenFile, streams: map[string]*stream{}, searches: make(chan struct{}, MaxSearches),
		stop: make(chan struct{}), done: make(chan struct{})}
	go j.syncLoop()
	return j, nil
}

// SetNode names the node whose journal this is: every record appended
// after carries it, and so do the checkpoints.
func (j *Journal) SetNode(name string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.node = name
}

// Node is the name SetNode gave.
func (j *Journal) Node() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.node
}

// Dir is the journal's directory.
func (j *Journal) Dir() string { return j.dir }

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

// Streams lists the streams that have files in the directory.
func (j *Journal) Streams() ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(j.dir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range paths {
		name, _, _ := strings.Cut(filepath.Base(p), ".")
		if ValidStream(name) && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// state returns the stream, resuming its chain from its last record; it
// does not open the stream's file.
func (j *Journal) state(name string) (*stream, error) {
	if s, ok := j.streams[name]; ok {
		return s, nil
	}
	if !ValidStream(name) {
		return nil, fmt.Errorf("%w %.80q", ErrBadStream, name)
	}
	s := &stream{name: name}
	files, err := j.Files(name)
	if err != nil {
		return nil, err
	}
	for i := len(files) - 1; i >= 0 && i >= len(files)-2; i-- {
		last, good, err := lastRecord(files[i])
		if err != nil {
			return nil, fmt.Errorf("audit: resuming %s: %w", name, err)
		}
		if files[i] == j.Path(name) {
			s.size = good
		}
		if last != nil {
			s.seq, s.last, s.res = last.Sequence, last.Hash, last.ResourceID
			break
		}
	}
	j.streams[name] = s
	return s, nil
}

// file returns the stream's open file, opening it (and closing the least
// recently used other one when MaxOpenFiles are open). Bytes after the
// stream's last whole record, left by a write that failed, are cut.
func (j *Journal) file(s *stream) (journalFile, error) {
	j.clock++
	s.used = j.clock
	if s.file != nil {
		return s.file, nil
	}
	for j.open >= j.maxOpen && j.closeLeastUsed() {
	}
	f, err := j.openFile(j.Path(s.name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: opening journal %s: %w", s.name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: opening journal %s: %w", s.name, err)
	}
	switch {
	case fi.Size() > s.size:
		// The tail of a write that failed: it was never acknowledged.
		if err := f.Truncate(s.size); err != nil {
			f.Close()
			return nil, fmt.Errorf("audit: cutting a torn record from %s: %w", s.name, err)
		}
	case fi.Size() < s.size:
		s.size = fi.Size() // cut by someone else: Verify will tell
	}
	s.file = f
	j.open++
	return f, nil
}

// closeLeastUsed closes the least recently used open file.
func (j *Journal) closeLeastUsed() bool {
	var lru *stream
	for _, s := range j.streams {
		if s.file != nil && (lru == nil || s.used < lru.used) {
			lru = s
		}
	}
	if lru == nil {
		return false
	}
	if lru.dirty {
		if err := lru.file.Sync(); err != nil {
			j.log.Error("audit journal sync failed", "stream", lru.name, "err", err)
		}
	}
	j.closeFile(lru)
	return true
}

func (j *Journal) closeFile(s *stream) error {
	if s.file == nil {
		return nil
	}
	err := s.file.Close()
	s.file, s.dirty = nil, false
	j.open--
	return err
}

// lastRecord reads the last whole record of a file, and the size of the
// file up to the end of its last whole line. A torn last line (a crash or
// a full disk mid-write) is not counted: it was never acknowledged.
func lastRecord(path string) (*Event, int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var last *Event
	var good int64
	r := bufio.NewReaderSize(f, 1<<16)
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			return last, good, nil
		}
		if err != nil {
			return nil, 0, err
		}
		good += int64(len(line))
		var e Event
		if json.Unmarshal(line, &e) == nil {
			last = &e
		}
	}
}

// Append seals e into its stream's chain (setting Stream, Sequence,
// PreviousHash and Hash) and writes it. It returns only when the record is
// in the file. A name ValidStream rejects returns an error wrapping
// ErrBadStream and leaves the journal healthy; any other error is a
// failure of the journal, which Err reports until a write can succeed.
func (j *Journal) Append(streamName string, e *Event) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	s, err := j.state(streamName)
	if errors.Is(err, ErrBadStream) {
		return err
	}
	if err != nil {
		j.failed = err
		return err
	}
	e.Node, e.Stream, e.Sequence, e.PreviousHash = j.node, streamName, s.seq+1, s.last
	line, hash, err := e.encode()
	if err != nil {
		return err
	}
	e.Hash = hash
	if s.size+int64(len(line)) > j.maxBytes && s.size > 0 {
		if err := j.rotate(s); err != nil {
			j.failed = err
			return err
		}
	}
	f, err := j.file(s)
	if err != nil {
		j.failed = err
		return err
	}
	if _, err := f.Write(line); err != nil {
		// Reopening cuts what part of the line was written.
		j.closeFile(s)
		j.failed = fmt.Errorf("audit: writing journal %s: %w", s.name, err)
		return j.failed
	}
	// A write that fits (a small record into a file's last page, say) does
	// not clear a failure: only the probe, which shows room, does, so one
	// stream's success cannot let requests run whose records another
	// stream cannot keep.
	s.seq, s.last, s.res, s.size, s.dirty = e.Sequence, e.Hash, e.ResourceID, s.size+int64(len(line)), true
	s.written += int64(len(line))
	return nil
}

// rotate renames the current file after its first sequence number; the
// next append starts a new one, and the chain goes on across files.
func (j *Journal) rotate(s *stream) error {
	if s.file != nil {
		if err := s.file.Sync(); err != nil {
			j.closeFile(s)
			return fmt.Errorf("audit: rotating %s: %w", s.name, err)
		}
		if err := j.closeFile(s); err != nil {
			return fmt.Errorf("audit: rotating %s: %w", s.name, err)
		}
	}
	first, err := firstSequence(j.Path(s.name))
	if err != nil {
		return err
	}
	if err := os.Rename(j.Path(s.name), filepath.Join(j.dir, fmt.Sprintf("%s.%020d.jsonl", s.name, first))); err != nil {
		return fmt.Errorf("audit: rotating %s: %w", s.name, err)
	}
	s.size = 0
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
	h, _ := j.Head(name)
	return h.Sequence
}

// Head is the end of a stream's chain.
type Head struct {
	Stream   string
	Sequence uint64 // of the last record; 0 for an empty stream
	Hash     string // of the last record
	// ResourceID is the resource of the last record.
	ResourceID string
}

// Head returns the end of a stream's chain.
func (j *Journal) Head(name string) (Head, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	s, err := j.state(name)
	if err != nil {
		return Head{Stream: name}, err
	}
	return Head{Stream: name, Sequence: s.seq, Hash: s.last, ResourceID: s.res}, nil
}

// heads returns the end of every stream used since the journal opened.
func (j *Journal) heads() []Head {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]Head, 0, len(j.streams))
	for _, s := range j.streams {
		out = append(out, Head{Stream: s.name, Sequence: s.seq, Hash: s.last, ResourceID: s.res})
	}
	return out
}

// Err is the last write failure, or nil once a write (or a probe of the
// disk) succeeded again.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed
}

func (j *Journal) syncLoop() {
	defer close(j.done)
	t := time.NewTicker(SyncEvery)
	defer t.Stop()
	probe := time.NewTicker(j.probeEvery)
	defer probe.Stop()
	for {
		select {
		case <-j.stop:
			j.syncAll()
			return
		case <-t.C:
			j.syncAll()
		case <-probe.C:
			j.probe()
		}
	}
}

// probe clears a write failure once the journal's disk takes a write
// again: a probe file of probeBytes, written, synced and removed. Streams
// whose last write tore are cut back on their next append.
func (j *Journal) probe() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failed == nil {
		return
	}
	p := filepath.Join(j.dir, ".probe")
	f, err := j.openFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err == nil {
		_, err = f.Write(make([]byte, probeBytes))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		os.Remove(p)
	}
	if err != nil {
		return // still failing: Err keeps the write's own error
	}
	j.log.Info("audit journal writable again", "after", j.failed)
	j.failed = nil
}

func (j *Journal) syncAll() {
	j.mu.Lock()
	var files []journalFile
	for _, s := range j.streams {
		if s.dirty && s.file != nil {
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
		if s.file != nil {
			errs = append(errs, s.file.Sync(), j.closeFile(s))
		}
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
