package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/egress"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/keys"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
	"github.com/keyward/keyward/internal/testenv"
)

// countingReader counts what was read from it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestSpoolRefusesForgeriesEarly: a Restore User writes both the manifest
// and the blob, so the manifest's size is theirs to choose (up to 64 GiB).
// A blob not sealed for this HSM's domain must be refused at its start,
// not after the server copied all of it to disk (or, for format 1, into
// memory: see TestFormat1IsBounded).
func TestSpoolRefusesForgeriesEarly(t *testing.T) {
	h := testHSM(t, "pool", "d1")
	_, sealed := writeHSM(t, h, 200) // several chunks
	huge := manifest{Format: 2, DomainID: "d1", Size: 8 << 30, SHA256: strings.Repeat("0", 64)}
	endless := func(prefix []byte) *countingReader {
		return &countingReader{r: io.MultiReader(bytes.NewReader(prefix), zeros{})}
	}
	for name, c := range map[string]struct {
		body *countingReader
		want error
	}{
		"not age at all":           {endless(nil), errDamaged},
		"another domain's key":     {endless(sealed), errNotOurs},
		"a true start, then zeros": {endless(sealed[:100<<10]), errDamaged},
	} {
		if c.want == errNotOurs {
			// The same header opens only with the key that sealed it.
			f, err := spool(c.body, huge, testHSM(t, "pool", "d1"))
			if f != nil || !errors.Is(err, errNotOurs) {
				t.Errorf("%s: %v", name, err)
			}
		} else if f, err := spool(c.body, huge, h); f != nil || !errors.Is(err, c.want) {
			t.Errorf("%s: %v", name, err)
		}
		if c.body.n > 4<<20 { // age reads its header through a buffer of a few MiB at most
			t.Errorf("%s: read %d bytes before refusing", name, c.body.n)
		}
	}
	// The true backup with a manifest that misstates it is refused too.
	sum := sha256.Sum256(sealed)
	good := manifest{Format: 2, DomainID: "d1", Size: len(sealed), SHA256: hex.EncodeToString(sum[:])}
	if f, err := spool(bytes.NewReader(sealed), good, h); err != nil {
		t.Fatal(err)
	} else {
		f.Close()
	}
	longer := good
	longer.Size--
	if _, err := spool(bytes.NewReader(sealed), longer, h); !errors.Is(err, ErrBadBackup) {
		t.Errorf("a manifest one byte short: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestJobsFollowTheirHSM: a restore (or backup) whose HSM was purged and
// made again under its name while the job waited on storage must not
// write the old HSM's keys and role assignments into the new one.
func TestJobsFollowTheirHSM(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	old := testHSM(t, "pool", "d1")
	register(t, db, old)
	ks := keys.NewService(db, rand.Reader, time.Now, keys.Events{})
	if _, err := ks.Create(ctx, old, "old-key", keys.CreateParams{Type: kcrypto.EC}); err != nil {
		t.Fatal(err)
	}
	var sealed bytes.Buffer
	if err := db.View(ctx, func(tx store.Tx) error { _, err := writeStream(ctx, tx, old, &sealed); return err }); err != nil {
		t.Fatal(err)
	}
	// Purged and made again: same name, same security domain (recovered
	// from the same domain file), another HSM.
	err := db.Update(ctx, func(tx store.Tx) error {
		if err := tx.DeleteHSM(ctx, "pool"); err != nil {
			return err
		}
		return tx.InsertHSM(ctx, &store.HSM{ID: "id-new", Name: "pool", DomainID: "d1", State: "Active"})
	})
	if err != nil {
		t.Fatal(err)
	}
	renewed := &domain.HSM{ID: "id-new", Name: "pool", DomainID: "d1", Key: old.Key}
	if _, err := ks.Create(ctx, renewed, "new-key", keys.CreateParams{Type: kcrypto.EC}); err != nil {
		t.Fatal(err)
	}
	s := NewService(db, nil, time.Now, egress.Policy{}, "node-a")
	if err := s.apply(ctx, old, readStream(bytes.NewReader(sealed.Bytes()), old), ""); !errors.Is(err, ErrHSMReplaced) {
		t.Fatalf("restore into the re-made HSM: %v", err)
	}
	if err := db.View(ctx, func(tx store.Tx) error { _, err := writeStream(ctx, tx, old, io.Discard); return err }); !errors.Is(err, ErrHSMReplaced) {
		t.Fatalf("backup of the re-made HSM with the old one's key: %v", err)
	}
	var names []string
	db.View(ctx, func(tx store.Tx) error {
		items, err := tx.ListKeys(ctx, "pool", false, "", 10)
		for _, it := range items {
			names = append(names, it.Key.Name)
		}
		return err
	})
	if fmt.Sprint(names) != "[new-key]" {
		t.Fatalf("the new HSM holds %v", names)
	}
}

// stalledStorage accepts requests and never answers them, until the test
// ends: storage that a caller named, stalling on purpose.
func stalledStorage(t *testing.T) (uri string, arrived <-chan struct{}) {
	seen := make(chan struct{}, 64)
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case seen <- struct{}{}:
		default:
		}
		select {
		case <-done:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv.URL + "/backups", seen
}

// TestStalledStorageHoldsNothing: backups to storage that never answers
// must not hold the store's read connections (on SQLite, eight stalled
// backups of a few MiB each used to block every other read), and a job
// ends at its deadline, so the HSM's next backup is not refused as busy
// for ever.
func TestStalledStorageHoldsNothing(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	seal, _ := domain.OpenFileSeal(filepath.Join(t.TempDir(), "seal"), rand.Reader)
	reg := domain.NewRegistry(db, seal, rand.Reader, time.Now, nil)
	ks := keys.NewService(db, rand.Reader, time.Now, keys.Events{})
	s := NewService(db, reg, time.Now, egress.Policy{AllowPrivate: true}, "node-a")
	s.uploadBlock, s.jobTimeout = 16<<10, 3*time.Second // blocks far smaller than a backup, as at scale
	uri, arrived := stalledStorage(t)
	var hsms []*domain.HSM
	for i := range 10 {
		h, err := reg.Create(ctx, domain.CreateParams{Name: fmt.Sprintf("hsm%d", i), Admins: []string{"a"}, Activated: true})
		if err != nil {
			t.Fatal(err)
		}
		for k := range 20 {
			if _, err := ks.Create(ctx, h, fmt.Sprintf("k%d", k), keys.CreateParams{Type: kcrypto.EC}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.StartBackup(ctx, h, Target{ContainerURI: uri, SASToken: "sv=2024-01-01&sig=x"}); err != nil {
			t.Fatal(err)
		}
		hsms = append(hsms, h)
	}
	for range 10 {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the backups did not reach the storage")
		}
	}
	// Every job is stalled on storage; the store still serves reads.
	readCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for range 20 {
		if err := db.View(readCtx, func(tx store.Tx) error { _, err := tx.ListKeys(readCtx, "hsm0", false, "", 5); return err }); err != nil {
			t.Fatalf("a read while backups stall: %v", err)
		}
	}
	// At its deadline each job fails, and the HSM takes a new one.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := s.StartBackup(ctx, hsms[0], Target{ContainerURI: uri, SASToken: "sv=2024-01-01&sig=x"})
		if err == nil {
			break
		}
		if !errors.Is(err, ErrBusy) || time.Now().After(deadline) {
			t.Fatalf("a backup after the stalled one's deadline: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestFormat1IsBounded: a format 1 backup is read into memory before it
// can be checked, so a manifest claiming a large one is refused before
// anything is read.
func TestFormat1IsBounded(t *testing.T) {
	ctx := context.Background()
	az := testenv.StartAzurite(t)
	uri, sas := az.Container("bounded")
	h := testHSM(t, "pool", "d1")
	db := openDB(t)
	register(t, db, h)
	s := NewService(db, nil, time.Now, egress.Policy{AllowPrivate: true}, "node-a")
	c, err := s.container(Target{ContainerURI: uri, SASToken: sas})
	if err != nil {
		t.Fatal(err)
	}
	m := fmt.Sprintf(`{"format":1,"domainId":"d1","size":%d,"sha256":"%s"}`, 300<<20, strings.Repeat("0", 64))
	for name, data := range map[string][]byte{manifestName: []byte(m), backupName: make([]byte, 1<<20)} {
		if _, err := c.NewBlockBlobClient("big/"+name).UploadBuffer(ctx, data, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.restore(ctx, h, c, "big", ""); !errors.Is(err, ErrBadBackup) || !strings.Contains(err.Error(), "256 MiB") {
		t.Fatalf("a 300 MiB format 1 backup: %v", err)
	}
}
