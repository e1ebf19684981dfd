package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A record for a name that cannot be a stream (a Host of a_b.{suffix}, or
// a label over 64 characters) used to set the journal's failed state, and
// every request after it was refused until a restart.
func TestBadStreamNameDoesNotStopTheLog(t *testing.T) {
	j, err := OpenJournal(t.TempDir(), 0, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	log := NewLog(j)
	for _, name := range []string{"a_b", strings.Repeat("x", 65), "../etc", ""} {
		if err := log.Append(name, &Event{OperationName: "Probe " + name}); err != nil {
			t.Fatalf("append for %q: %v", name, err)
		}
		if err := log.Ready(); err != nil {
			t.Fatalf("after a record for %q: %v", name, err)
		}
	}
	if err := j.Append("a_b", &Event{}); !errors.Is(err, ErrBadStream) {
		t.Fatalf("Journal.Append(a_b) = %v, want ErrBadStream", err)
	}
	if err := j.Err(); err != nil {
		t.Fatalf("a bad name set the failed state: %v", err)
	}
	// The records were kept, in the tenant stream.
	b, err := os.ReadFile(j.Path(TenantStream))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := Verify(bytes.NewReader(b)); err != nil || n != 4 {
		t.Fatalf("tenant stream: %d records, %v", n, err)
	}
}

// openJournalFiles counts this process's descriptors open on files in dir.
func openJournalFiles(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd to count open files")
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			n++
		}
	}
	return n
}

// Each distinct stream used to open a file that stayed open for good.
func TestJournalBoundsOpenFiles(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, 0, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	const streams = 3 * MaxOpenFiles
	for round := range 2 {
		for i := range streams {
			if err := j.Append(fmt.Sprintf("hsm-%d", i), &Event{OperationName: fmt.Sprint("Op", round)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := openJournalFiles(t, dir); n > MaxOpenFiles {
		t.Fatalf("%d journal files open, want at most %d", n, MaxOpenFiles)
	}
	// Closed and reopened streams go on with their chains.
	for _, i := range []int{0, streams - 1} {
		b, err := os.ReadFile(j.Path(fmt.Sprintf("hsm-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if n, err := Verify(bytes.NewReader(b)); err != nil || n != 2 {
			t.Fatalf("stream %d: %d records, %v", i, n, err)
		}
	}
}

// fullDisk wraps journal files so that, while full is set, writes store
// part of what they were given and fail with ENOSPC, as on a full disk.
type fullDisk struct{ full atomic.Bool }

type fullFile struct {
	*os.File
	d *fullDisk
}

func (f fullFile) Write(p []byte) (int, error) {
	if f.d.full.Load() {
		n, _ := f.File.Write(p[:len(p)/2])
		return n, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.Write(p)
}

func (d *fullDisk) open(name string, flag int, perm fs.FileMode) (journalFile, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return fullFile{f, d}, nil
}

func verifyStream(t *testing.T, j *Journal, name string) int {
	t.Helper()
	files, err := j.Files(name)
	if err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	n, err := Verify(&all)
	if err != nil {
		t.Fatalf("%s after the outage: %v", name, err)
	}
	return n
}

// A write that failed (ENOSPC) used to leave the journal failed, and the
// server refusing every request, until a restart: with requests refused,
// no write came to clear it.
func TestJournalRecoversFromFullDisk(t *testing.T) {
	j, err := OpenJournal(t.TempDir(), 0, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	disk := &fullDisk{}
	j.mu.Lock()
	j.openFile = disk.open
	j.mu.Unlock()
	log := NewLog(j)
	for range 5 {
		if err := log.Append("h", &Event{OperationName: "Before"}); err != nil {
			t.Fatal(err)
		}
	}
	disk.full.Store(true)
	if err := log.Append("h", &Event{OperationName: "Lost"}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk = %v", err)
	}
	if log.Ready() == nil {
		t.Fatal("Ready with a full disk")
	}
	time.Sleep(1500 * time.Millisecond) // probes fail while the disk is full
	if log.Ready() == nil {
		t.Fatal("Ready while the disk is still full")
	}
	disk.full.Store(false)
	start := time.Now()
	waitFor(t, func() bool { return log.Ready() == nil }) // no append helps it
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("recovered after %v", d)
	}
	for range 5 {
		if err := log.Append("h", &Event{OperationName: "After"}); err != nil {
			t.Fatal(err)
		}
	}
	// The half line the failed write left was cut: the chain is whole.
	if n := verifyStream(t, j, "h"); n != 10 {
		t.Fatalf("%d records, want 10", n)
	}
}

// The same on a real full file system: a 1 MiB tmpfs (root only).
func TestJournalRecoversFromRealFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root; TestJournalRecoversFromFullDisk covers this with an injected ENOSPC")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	j, err := OpenJournal(filepath.Join(dir, "audit"), 0, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	log := NewLog(j)
	appendOne := func(op string) error {
		return log.Append("h", &Event{OperationName: op, ClientInfo: strings.Repeat("u", 700)})
	}
	for range 5 {
		if err := appendOne("Before"); err != nil {
			t.Fatal(err)
		}
	}
	// Fill the disk.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	f.Close()
	kept := 5
	var appendErr error
	for i := 0; i < 20 && appendErr == nil; i++ {
		if appendErr = appendOne("Lost"); appendErr == nil {
			kept++
		}
	}
	if !errors.Is(appendErr, syscall.ENOSPC) {
		t.Fatalf("append on a full disk = %v", appendErr)
	}
	if log.Ready() == nil {
		t.Fatal("Ready with a full disk")
	}
	time.Sleep(1500 * time.Millisecond)
	if log.Ready() == nil {
		t.Fatal("Ready while the disk is still full")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, func() bool { return log.Ready() == nil })
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("recovered after %v", d)
	}
	for range 5 {
		if err := appendOne("After"); err != nil {
			t.Fatal(err)
		}
	}
	// A line the full disk tore was cut: the chain is whole.
	if n := verifyStream(t, j, "h"); n != kept+5 {
		t.Fatalf("%d records, want %d", n, kept+5)
	}
}

// The backlog used to stop counting after the first 4 MiB batch: with
// storage down, hundreds of megabytes waited undelivered and Ready never
// refused a request.
func TestShipperBacklogCountsEveryUndeliveredFile(t *testing.T) {
	j, err := OpenJournal(t.TempDir(), 1<<20, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	sink := &memorySink{fail: true}
	const limit = 8 << 20
	sh := StartShipper(ShipperConfig{Journal: j, Stream: "h", Sink: sink, Limit: limit, Log: slog.Default(),
		Save: func(context.Context, uint64) error { return nil }})
	log := NewLog(j)
	log.AddShipper(sh)
	defer log.RemoveShipper(sh)
	big := strings.Repeat("u", 8<<10)
	for range (12 << 20) / len(big) { // 12 MiB in 12 files
		if err := j.Append("h", &Event{ResourceID: "/SUBSCRIPTIONS/S/X", ClientInfo: big}); err != nil {
			t.Fatal(err)
		}
	}
	// Let the shipper read the files afresh (its count of appends since
	// start-up is reset by a round), twice to be sure one round passed.
	for range 2 {
		sh.Wake()
		time.Sleep(300 * time.Millisecond)
	}
	if err := log.Ready(); err == nil {
		sh.mu.Lock()
		t.Fatalf("12 MiB undelivered with a limit of 8 MiB, and Ready is fine (backlog counted: %d)", sh.backlog)
	}
}
