package backup

import (
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/egress"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store/sqlite"
)

// TestJobsSurviveRestart: a job's status is read from the store, so a new
// service over the same file (a restarted server) reports it; a job that
// was running when the server stopped reports Failed as ErrInterrupted,
// and no longer blocks a new one.
func TestJobsSurviveRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jobs.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	seal, err := domain.OpenFileSeal(filepath.Join(t.TempDir(), "seal"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := NewService(db, domain.NewRegistry(db, seal, rand.Reader, time.Now, nil), time.Now, egress.Policy{}, "node-a")
	done, err := s.begin(ctx, "backup", "pool")
	if err != nil {
		t.Fatal(err)
	}
	s.finish(ctx, done, "https://account/container/mhsm-pool", nil)
	running, err := s.begin(ctx, "restore", "pool")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.begin(ctx, "backup", "pool"); !errors.Is(err, ErrBusy) {
		t.Fatalf("a second job while one runs: %v", err)
	}
	db.Close()

	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s = NewService(db, domain.NewRegistry(db, seal, rand.Reader, time.Now, nil), time.Now, egress.Policy{}, "node-a")
	if err := s.FailInterrupted(ctx); err != nil {
		t.Fatal(err)
	}
	j, err := s.Job(ctx, "pool", done.ID)
	if err != nil || j.Status != Succeeded || j.FolderURI != "https://account/container/mhsm-pool" || j.Error != nil {
		t.Fatalf("the finished job after a restart: %+v, %v", j, err)
	}
	j, err = s.Job(ctx, "pool", running.ID)
	if fe, ok := fault.As(j.Error); err != nil || j.Status != Failed || !ok || fe.Code != ErrInterrupted.Code || fe.Msg != ErrInterrupted.Msg || j.End.IsZero() {
		t.Fatalf("the interrupted job after a restart: %+v, %v", j, err)
	}
	if _, err := s.Job(ctx, "other", running.ID); !errors.Is(err, ErrJobNotFound) {
		t.Fatalf("a job asked for under another HSM: %v", err)
	}
	if _, err := s.begin(ctx, "backup", "pool"); err != nil {
		t.Fatalf("a new job after the interrupted one: %v", err)
	}
}

// TestJobsOfADeadNode: in a cluster, a node's restart fails only its own
// running jobs, and a job whose node died (its lease no longer renewed)
// blocks its HSM only until the lease lapses; the next job begun on any
// node then fails it.
func TestJobsOfADeadNode(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "jobs.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	seal, err := domain.OpenFileSeal(filepath.Join(t.TempDir(), "seal"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { return now }
	reg := domain.NewRegistry(db, seal, rand.Reader, clock, nil)
	a := NewService(db, reg, clock, egress.Policy{}, "node-a")
	b := NewService(db, reg, clock, egress.Policy{}, "node-b")
	orphan, err := b.begin(ctx, "backup", "pool") // node b dies while it runs
	if err != nil {
		t.Fatal(err)
	}
	if err := a.FailInterrupted(ctx); err != nil {
		t.Fatal(err)
	}
	if j, err := a.Job(ctx, "pool", orphan.ID); err != nil || j.Status != InProgress || j.Node != "node-b" {
		t.Fatalf("node a's restart touched node b's job: %+v, %v", j, err)
	}
	if _, err := a.begin(ctx, "backup", "pool"); !errors.Is(err, ErrBusy) {
		t.Fatalf("a job while another node's runs: %v", err)
	}
	now = now.Add(jobLeaseTTL + time.Second)
	next, err := a.begin(ctx, "backup", "pool")
	if err != nil {
		t.Fatalf("a job after the other node's lease lapsed: %v", err)
	}
	j, err := a.Job(ctx, "pool", orphan.ID)
	if fe, ok := fault.As(j.Error); err != nil || j.Status != Failed || !ok || fe.Code != ErrInterrupted.Code {
		t.Fatalf("the dead node's job: %+v, %v", j, err)
	}
	if j, err := b.Job(ctx, "pool", next.ID); err != nil || j.Status != InProgress || j.Node != "node-a" {
		t.Fatalf("the new job, through the other node: %+v, %v", j, err)
	}
	// Node b was only cut off: its job ends, but the verdict stands.
	b.finish(ctx, orphan, "https://account/container/late", nil)
	if j, err := a.Job(ctx, "pool", orphan.ID); err != nil || j.Status != Failed {
		t.Fatalf("the failed job after its node finished it late: %+v, %v", j, err)
	}
}
