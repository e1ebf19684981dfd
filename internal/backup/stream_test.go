package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/keyward/keyward/internal/backup/format"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/egress"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/keys"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
)

func testHSM(t testing.TB, name, domainID string) *domain.HSM {
	t.Helper()
	dk, err := domain.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &domain.HSM{ID: "id-" + name, Name: name, DomainID: domainID, Key: dk}
}

// sealLines seals lines as a stream backup's plaintext for h, as a forger
// holding h's domain key (or a bug in the writer) would.
func sealLines(t testing.TB, h *domain.HSM, lines ...any) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := age.Encrypt(&out, domainRecipient{h})
	if err != nil {
		t.Fatal(err)
	}
	enc := json.NewEncoder(w)
	for _, l := range lines {
		if s, ok := l.(string); ok {
			w.Write([]byte(s))
			continue
		}
		if err := enc.Encode(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// readAll drains readStream, returning its records and its first error.
func readAll(sealed []byte, h *domain.HSM) ([]format.Record, error) {
	var recs []format.Record
	for r, err := range readStream(bytes.NewReader(sealed), h) {
		if err != nil {
			return recs, err
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// writeHSM creates n keys in a fresh store and returns its stream backup.
func writeHSM(t testing.TB, h *domain.HSM, n int) (*sqlite.DB, []byte) {
	t.Helper()
	ctx := context.Background()
	db := openDB(t)
	register(t, db, h)
	ks := keys.NewService(db, rand.Reader, time.Now, keys.Events{})
	for i := range n {
		if _, err := ks.Create(ctx, h, fmt.Sprintf("key-%04d", i), keys.CreateParams{Type: kcrypto.EC}); err != nil {
			t.Fatal(err)
		}
	}
	var sealed bytes.Buffer
	if err := db.View(ctx, func(tx store.Tx) error { _, err := writeStream(ctx, tx, h, &sealed); return err }); err != nil {
		t.Fatal(err)
	}
	return db, sealed.Bytes()
}

func TestStreamRoundTrip(t *testing.T) {
	h := testHSM(t, "pool", "d1")
	_, sealed := writeHSM(t, h, 3)
	recs, err := readAll(sealed, h)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 6 || recs[0].Key == nil || recs[0].Key.Name != "key-0000" || recs[1].Version == nil || recs[1].Version.Name != "key-0000" {
		t.Fatalf("records: %d, first %+v", len(recs), recs[0])
	}
}

// TestStreamRefusesForgeries replays what an attacker with write access to
// the backup container can do to a streamed backup: none of it opens.
func TestStreamRefusesForgeries(t *testing.T) {
	h := testHSM(t, "pool", "d1")
	// Over 64 KiB of plaintext: several age chunks, so cuts can fall on a
	// chunk boundary.
	_, sealed := writeHSM(t, h, 200)
	if len(sealed) < 3*64<<10 {
		t.Fatalf("only %d bytes: too few chunks", len(sealed))
	}
	bad := func(name string, data []byte, h *domain.HSM) {
		t.Helper()
		if _, err := readAll(data, h); !errors.Is(err, ErrBadBackup) || fault.KindOf(err) != fault.Invalid {
			t.Errorf("%s: %v", name, err)
		}
	}
	for cut := 1; cut < len(sealed); cut += 4093 {
		bad(fmt.Sprintf("cut at %d", cut), sealed[:cut], h)
	}
	// Where a cut keeps whole chunks: after the header and k chunks of
	// 64 KiB + 16 bytes of tag (and the 16-byte nonce of the payload).
	header := bytes.Index(sealed, []byte("\n---")) + len("\n--- ") + 43 + 1
	for k := 1; header+16+k*(64<<10+16) < len(sealed); k++ {
		bad(fmt.Sprintf("cut after chunk %d", k), sealed[:header+16+k*(64<<10+16)], h)
	}
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)/2] ^= 1
	bad("a flipped bit", flipped, h)
	bad("another domain key", sealed, testHSM(t, "pool", "d1"))
	bad("another domain id", sealed, &domain.HSM{Name: "pool", DomainID: "d2", Key: h.Key})

	key := &format.Key{Name: "k"}
	end := func(n int) *format.End { return &format.End{Keys: n} }
	header1 := format.Header{Format: format.StreamVersion, DomainID: "d1"}
	for name, lines := range map[string][]any{
		"no end":              {header1, format.Record{Key: key}},
		"end miscounted":      {header1, format.Record{Key: key}, format.Record{End: end(2)}},
		"a record after end":  {header1, format.Record{End: end(0)}, format.Record{Key: key}},
		"two fields":          {header1, format.Record{Key: key, End: end(1)}},
		"no field":            {header1, format.Record{}, format.Record{End: end(0)}},
		"format 1 header":     {format.Header{Format: 1, DomainID: "d1"}, format.Record{End: end(0)}},
		"another domain":      {format.Header{Format: format.StreamVersion, DomainID: "d2"}, format.Record{End: end(0)}},
		"not json":            {header1, "{\"key\":"},
		"wrong type":          {header1, `{"key":[1]}` + "\n"},
		"empty":               {},
		"header only, no end": {header1},
	} {
		bad(name, sealLines(t, h, lines...), h)
	}
}

// TestStreamRestoreIsAllOrNothing: a stream that fails after records were
// applied (cut before its End) leaves the HSM as it was.
func TestStreamRestoreIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	h := testHSM(t, "pool", "d1")
	st, sealed := writeHSM(t, h, 2)
	cut := sealLines(t, h, format.Header{Format: format.StreamVersion, DomainID: "d1"}, format.Record{Key: &format.Key{Name: "intruder"}})
	s := NewService(st, nil, time.Now, egress.Policy{}, "node-a")
	if err := s.apply(ctx, h, readStream(bytes.NewReader(cut), h), ""); !errors.Is(err, ErrBadBackup) {
		t.Fatalf("applying a cut stream: %v", err)
	}
	var names []string
	err := st.View(ctx, func(tx store.Tx) error {
		items, err := tx.ListKeys(ctx, h.Name, false, "", 10)
		for _, it := range items {
			names = append(names, it.Key.Name)
		}
		return err
	})
	if err != nil || fmt.Sprint(names) != "[key-0000 key-0001]" {
		t.Fatalf("after a refused restore: %v %v", names, err)
	}
	// The whole stream restores, and selectively one key of it.
	if err := s.apply(ctx, h, readStream(bytes.NewReader(sealed), h), ""); err != nil {
		t.Fatal(err)
	}
	err = st.Update(ctx, func(tx store.Tx) error { return tx.PurgeKey(ctx, h.Name, "key-0001") })
	if err != nil {
		t.Fatal(err)
	}
	if err := s.apply(ctx, h, readStream(bytes.NewReader(sealed), h), "KEY-0001"); err != nil {
		t.Fatal(err)
	}
	if err := s.apply(ctx, h, readStream(bytes.NewReader(sealed), h), "key-0001"); fault.KindOf(err) != fault.Conflict {
		t.Fatalf("selective restore over an existing key: %v", err)
	}
}
