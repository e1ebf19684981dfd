package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// memorySink collects what it is sent, and can be made to fail.
type memorySink struct {
	mu    sync.Mutex
	fail  bool
	seqs  []uint64
	paths map[string]bool
}

func (m *memorySink) Append(_ context.Context, path string, lines []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("storage is down")
	}
	if m.paths == nil {
		m.paths = map[string]bool{}
	}
	m.paths[path] = true
	for _, l := range strings.Split(strings.TrimSpace(string(lines)), "\n") {
		var e Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			return err
		}
		m.seqs = append(m.seqs, e.Sequence)
	}
	return nil
}

func (m *memorySink) setFail(f bool) { m.mu.Lock(); m.fail = f; m.mu.Unlock() }

func (m *memorySink) got() []uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]uint64(nil), m.seqs...)
}

func TestShipperAcrossRotationAndOutage(t *testing.T) {
	j, err := OpenJournal(t.TempDir(), 4000, slog.Default()) // rotates every few records
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	appendN := func(from, n int) {
		for i := from; i < from+n; i++ {
			e := &Event{Time: time.Date(2026, 1, 1, i/50, 0, 0, 0, time.UTC).Format(TimeLayout), ResourceID: "/SUBSCRIPTIONS/S/X", OperationName: fmt.Sprint("Op", i)}
			if err := j.Append("h", e); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(0, 10) // before the shipper starts: not delivered
	sink := &memorySink{}
	var saved uint64
	sh := StartShipper(ShipperConfig{Journal: j, Stream: "h", Sink: sink, After: 10, Limit: 8000, Log: slog.Default(),
		Save: func(_ context.Context, seq uint64) error { saved = seq; return nil }})
	log := NewLog(j)
	log.AddShipper(sh)
	defer log.RemoveShipper(sh)

	appendN(10, 60)
	waitFor(t, func() bool { return sh.Delivered() == 70 })
	sink.setFail(true)
	full := false
	for i := 70; i < 200 && !full; i++ {
		appendN(i, 1)
		full = log.Ready() != nil
	}
	if !full {
		t.Fatal("the backlog never filled while storage was down")
	}
	last := j.LastSequence("h")
	sink.setFail(false)
	sh.Wake()
	waitFor(t, func() bool { return sh.Delivered() == last && log.Ready() == nil })
	got := sink.got()
	for i, s := range got {
		if s != uint64(11+i) {
			t.Fatalf("delivered %v...; record %d is %d, want %d", got[:min(len(got), 20)], i, s, 11+i)
		}
	}
	if uint64(len(got)) != last-10 || saved != last {
		t.Fatalf("%d delivered, saved %d, last %d", len(got), saved, last)
	}
	if len(sink.paths) < 2 {
		t.Fatalf("records of different hours went to %d blob(s)", len(sink.paths))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBlobPath(t *testing.T) {
	got := BlobPath("/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/managedHSMs/h", "2026-03-04T05:06:07.0000000Z")
	want := "resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/MANAGEDHSMS/H/y=2026/m=03/d=04/h=05/m=00/PT1H.json"
	if got != want {
		t.Fatalf("BlobPath = %s", got)
	}
}
