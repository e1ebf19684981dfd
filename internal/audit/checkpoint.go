package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// A hash chain shows a record edited, deleted or moved, but not the last
// records cut off: the shortened chain is still a chain. So, as
// CloudTrail's digest files do, the server signs at intervals (and at
// shutdown) a Checkpoint of each stream that had new records: where its
// chain ended then. Checkpoints are kept apart from the journal (one
// JSON-lines file per stream under the journal's checkpoints directory),
// shipped beside the records, and VerifyCheckpointed names a tail cut
// after a checkpoint, a checkpoint missing, and one that is forged.

// Checkpoint is a signed statement that a stream's chain ended, at Time,
// with the record LastSequence whose hash is LastHash. The checkpoints of
// a stream are numbered (Index) and chained (Previous), so one deleted
// from the middle shows too.
type Checkpoint struct {
	Node         string `json:"node,omitempty"`
	Stream       string `json:"stream"`
	Index        uint64 `json:"index"`
	LastSequence uint64 `json:"lastSequence"`
	LastHash     string `json:"lastHash"`
	ResourceID   string `json:"resourceId,omitempty"`
	Time         string `json:"time"`
	// Previous is the Digest of the checkpoint before; empty for the first.
	Previous string `json:"previousCheckpoint"`
	// KeyID names the signing key: the first 8 bytes of the SHA-256 of
	// its public key, in hex.
	KeyID string `json:"keyId"`
	// Signature is Ed25519 over signedBytes, in standard base64.
	Signature string `json:"signature"`
}

// checkpointContext separates checkpoint signatures from any other use of
// the key.
const checkpointContext = "keyward audit checkpoint v1\n"

// signedBytes is what is signed: the context, then the checkpoint's JSON
// with Signature empty (fixed field order, no maps, no floats).
func (c *Checkpoint) signedBytes() []byte {
	u := *c
	u.Signature = ""
	b, _ := json.Marshal(&u) // strings and integers only: cannot fail
	return append([]byte(checkpointContext), b...)
}

// Digest is the SHA-256 of the checkpoint's JSON, signature included, in
// hex: the next checkpoint's Previous.
func (c *Checkpoint) Digest() string {
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// verify reports whether c was signed by pub.
func (c *Checkpoint) verify(pub ed25519.PublicKey) bool {
	sig, err := base64.StdEncoding.DecodeString(c.Signature)
	return err == nil && c.KeyID == KeyID(pub) && ed25519.Verify(pub, c.signedBytes(), sig)
}

// KeyID names a checkpoint key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// MarshalPublicKey encodes a checkpoint public key as PEM ("PUBLIC KEY",
// PKIX), the form `keyward audit verify --public-key` reads.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("audit: encoding public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey reads what MarshalPublicKey wrote.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("audit: not a PEM public key")
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("audit: parsing public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("audit: the checkpoint key is an Ed25519 key, not this one")
	}
	return pub, nil
}

// ReadCheckpoints parses checkpoints, one JSON object a line.
func ReadCheckpoints(r io.Reader) ([]Checkpoint, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var out []Checkpoint
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var c Checkpoint
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return nil, fmt.Errorf("audit: checkpoint at line %d: %w", line, err)
		}
		out = append(out, c)
	}
	return out, sc.Err()
}

// DefaultCheckpointInterval is how often a checkpoint is signed.
const DefaultCheckpointInterval = time.Minute

// CheckpointDir is where a journal's checkpoints are kept.
func CheckpointDir(j *Journal) string { return filepath.Join(j.Dir(), "checkpoints") }

// CheckpointPath is the checkpoint file of a stream.
func CheckpointPath(j *Journal, stream string) string {
	return filepath.Join(CheckpointDir(j), stream+".jsonl")
}

// CheckpointerConfig configures a checkpointer.
type CheckpointerConfig struct {
	Journal *Journal
	Key     ed25519.PrivateKey
	// Interval is how often checkpoints are signed (DefaultCheckpointInterval
	// when zero).
	Interval time.Duration
	Log      *slog.Logger
}

// Checkpointer signs the checkpoints of a journal's streams, at every
// interval and when closed.
type Checkpointer struct {
	cfg CheckpointerConfig
	dir string

	mu   sync.Mutex
	last map[string]*Checkpoint // the last written, by stream

	stop chan struct{}
	done chan struct{}
}

// StartCheckpointer resumes each stream's checkpoints from its file, signs
// a checkpoint of every stream whose records run past its last one (the
// records of a run that ended without one), and starts the interval.
func StartCheckpointer(cfg CheckpointerConfig) (*Checkpointer, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultCheckpointInterval
	}
	c := &Checkpointer{cfg: cfg, dir: CheckpointDir(cfg.Journal), last: map[string]*Checkpoint{},
		stop: make(chan struct{}), done: make(chan struct{})}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	streams, err := cfg.Journal.Streams()
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	paths, _ := filepath.Glob(filepath.Join(c.dir, "*.jsonl"))
	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".jsonl")
		cps, err := readCheckpointFile(p)
		if err != nil {
			return nil, err
		}
		if len(cps) > 0 {
			c.last[name] = &cps[len(cps)-1]
		}
	}
	for _, name := range streams {
		h, err := cfg.Journal.Head(name)
		if err != nil {
			return nil, err
		}
		if cp := c.last[name]; cp != nil && h.Sequence < cp.LastSequence {
			cfg.Log.Error("audit journal is shorter than its last checkpoint: its tail was cut",
				"stream", name, "journalEnds", h.Sequence, "checkpointAt", cp.LastSequence)
		}
	}
	if err := c.Checkpoint(); err != nil {
		cfg.Log.Error("audit checkpoint failed", "err", err)
	}
	go c.loop()
	return c, nil
}

func readCheckpointFile(path string) ([]Checkpoint, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	// A torn last line (a crash mid-write) is not a checkpoint.
	if i := bytes.LastIndexByte(b, '\n'); i+1 < len(b) {
		b = b[:i+1]
	}
	return ReadCheckpoints(bytes.NewReader(b))
}

// firstCheckpointEvery is how soon a stream that has none gets its first
// checkpoint: a stream without any cannot tell a verifier that its
// checkpoints were deleted, so that window is kept short.
const firstCheckpointEvery = time.Second

func (c *Checkpointer) loop() {
	defer close(c.done)
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	first := time.NewTicker(firstCheckpointEvery)
	defer first.Stop()
	for {
		var err error
		select {
		case <-c.stop:
			return
		case <-t.C:
			err = c.checkpoint(false)
		case <-first.C:
			err = c.checkpoint(true)
		}
		if err != nil {
			c.cfg.Log.Error("audit checkpoint failed", "err", err)
		}
	}
}

// Checkpoint signs and stores a checkpoint of every stream with records
// since its last one.
func (c *Checkpointer) Checkpoint() error { return c.checkpoint(false) }

// checkpoint is Checkpoint, for the streams that have none yet only when
// onlyFirst is set.
func (c *Checkpointer) checkpoint(onlyFirst bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, h := range c.cfg.Journal.heads() {
		last := c.last[h.Stream]
		if h.Sequence == 0 || (last != nil && last.LastSequence == h.Sequence && last.LastHash == h.Hash) || (onlyFirst && last != nil) {
			continue
		}
		cp := &Checkpoint{Node: c.cfg.Journal.Node(), Stream: h.Stream, Index: 1, LastSequence: h.Sequence, LastHash: h.Hash, ResourceID: h.ResourceID,
			Time: time.Now().UTC().Format(TimeLayout), KeyID: KeyID(c.cfg.Key.Public().(ed25519.PublicKey))}
		if last != nil {
			cp.Index, cp.Previous = last.Index+1, last.Digest()
		}
		cp.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(c.cfg.Key, cp.signedBytes()))
		if err := c.write(cp); err != nil {
			errs = append(errs, err)
			continue
		}
		c.last[h.Stream] = cp
	}
	return errors.Join(errs...)
}

// write appends cp to its stream's file and syncs it; a failed write is
// cut back.
func (c *Checkpointer) write(cp *Checkpoint) error {
	line, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("audit: encoding checkpoint: %w", err)
	}
	path := filepath.Join(c.dir, cp.Stream+".jsonl")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("audit: writing checkpoint: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("audit: writing checkpoint: %w", err)
	}
	if _, err = f.Write(append(line, '\n')); err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Truncate(fi.Size())
		return fmt.Errorf("audit: writing checkpoint of %s: %w", cp.Stream, err)
	}
	return nil
}

// Close signs a last checkpoint of every stream with new records and
// stops. Close it before the journal.
func (c *Checkpointer) Close() error {
	close(c.stop)
	<-c.done
	return c.Checkpoint()
}
