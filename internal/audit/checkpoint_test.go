package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// checkpointed writes n records to stream h with a checkpointer running,
// closes both, and returns the journal's lines, the checkpoints' lines and
// the public key.
func checkpointed(t *testing.T, n int) (*Journal, []string, []string, ed25519.PublicKey) {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	j, journal, cps := checkpointedWith(t, n, key)
	return j, journal, cps, pub
}

func checkpointedWith(t *testing.T, n int, key ed25519.PrivateKey) (*Journal, []string, []string) {
	return checkpointedOn(t, n, key, "")
}

// checkpointedOn is checkpointedWith on the journal of a cluster node.
func checkpointedOn(t *testing.T, n int, key ed25519.PrivateKey, node string) (*Journal, []string, []string) {
	t.Helper()
	j, err := OpenJournal(t.TempDir(), 0, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	j.SetNode(node)
	c, err := StartCheckpointer(CheckpointerConfig{Journal: j, Key: key, Interval: 20 * time.Millisecond, Log: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := j.Append("h", &Event{OperationName: fmt.Sprint("Op", i), ResourceID: "/SUBSCRIPTIONS/S/X",
			Time: time.Now().UTC().Format(TimeLayout)}); err != nil {
			t.Fatal(err)
		}
		if i%5 == 4 {
			time.Sleep(40 * time.Millisecond) // a checkpoint or two meanwhile
		}
	}
	if err := c.Close(); err != nil { // the checkpoint at shutdown
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return j, readLines(t, j.Path("h")), readLines(t, CheckpointPath(j, "h"))
}

func verifyCheckpointed(t *testing.T, journal, checkpoints []string, pub ed25519.PublicKey) (*Report, error) {
	t.Helper()
	var cps []Checkpoint
	if len(checkpoints) > 0 {
		var err error
		if cps, err = ReadCheckpoints(strings.NewReader(strings.Join(checkpoints, "\n"))); err != nil {
			t.Fatal(err)
		}
	}
	return VerifyCheckpointed(strings.NewReader(strings.Join(journal, "\n")+"\n"), cps, pub)
}

func checkpointError(t *testing.T, err error, want CheckpointProblem) *CheckpointError {
	t.Helper()
	var ce *CheckpointError
	if !errors.As(err, &ce) || ce.Problem != want {
		t.Fatalf("err = %v, want a %s", err, want)
	}
	return ce
}

func TestCheckpointsVouchForTheWholeJournal(t *testing.T) {
	_, journal, cps, pub := checkpointed(t, 20)
	if len(cps) < 3 {
		t.Fatalf("%d checkpoints in 20 records over ~160ms at 20ms intervals", len(cps))
	}
	rep, err := verifyCheckpointed(t, journal, cps, pub)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stream != "h" || rep.Records != 20 || rep.CoveredThrough != 20 || rep.Uncovered != 0 || rep.Checkpoints != len(cps) {
		t.Fatalf("report %+v", rep)
	}
}

// The attack: delete the last records. The chain alone still holds.
func TestCheckpointsNameAMissingTail(t *testing.T) {
	_, journal, cps, pub := checkpointed(t, 20)
	cut := journal[:17]
	if n, err := verifyLines(cut); err != nil || n != 17 {
		t.Fatalf("the chain alone: %d, %v", n, err) // what Verify could tell before
	}
	_, err := verifyCheckpointed(t, cut, cps, pub)
	ce := checkpointError(t, err, MissingTail)
	if !strings.Contains(ce.Reason, "records 18 to 20 are missing") {
		t.Fatalf("reason: %s", ce.Reason)
	}
	// Cut everything: the checkpoints still speak.
	_, err = verifyCheckpointed(t, nil, cps, pub)
	checkpointError(t, err, MissingTail)
}

// Cut the tail and write new records in its place, as a restarted server
// (or an attacker) would: the sequence numbers are there, the hashes not.
func TestCheckpointsNameARewrittenTail(t *testing.T) {
	j, journal, cps, pub := checkpointed(t, 20)
	if err := os.WriteFile(j.Path("h"), []byte(strings.Join(journal[:17], "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	j2, err := OpenJournal(j.Dir(), 0, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := j2.Append("h", &Event{OperationName: "Innocent"}); err != nil {
			t.Fatal(err)
		}
	}
	j2.Close()
	_, err = verifyCheckpointed(t, readLines(t, j.Path("h")), cps, pub)
	checkpointError(t, err, MissingTail)
}

func TestCheckpointsNameAForgery(t *testing.T) {
	_, journal, cps, pub := checkpointed(t, 20)
	last := len(cps) - 1
	// Move the last checkpoint back, to hide a cut tail.
	var c Checkpoint
	jsonUnmarshal(t, cps[last], &c)
	c.LastSequence = 17
	c.LastHash = ""
	forged := append(append([]string(nil), cps[:last]...), jsonMarshal(t, &c))
	_, err := verifyCheckpointed(t, journal[:17], forged, pub)
	checkpointError(t, err, Forged)
	// Signed with another key.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	jsonUnmarshal(t, cps[last], &c)
	c.Signature = ""
	c.Signature = b64(ed25519.Sign(other, c.signedBytes()))
	_, err = verifyCheckpointed(t, journal, append(append([]string(nil), cps[:last]...), jsonMarshal(t, &c)), pub)
	checkpointError(t, err, Forged)
}

func TestCheckpointsNameAMissingCheckpoint(t *testing.T) {
	_, journal, cps, pub := checkpointed(t, 20)
	_, err := verifyCheckpointed(t, journal, nil, pub) // all dropped
	checkpointError(t, err, MissingCheckpoint)
	gap := append(append([]string(nil), cps[:1]...), cps[2:]...) // one dropped
	_, err = verifyCheckpointed(t, journal, gap, pub)
	checkpointError(t, err, MissingCheckpoint)
	// Records after the last checkpoint are counted, not an error.
	rep, err := verifyCheckpointed(t, journal, cps[:1], pub)
	if err != nil || rep.Uncovered == 0 || rep.CoveredThrough+rep.Uncovered != 20 {
		t.Fatalf("%+v, %v", rep, err)
	}
}

// A restart resumes the checkpoints' numbering and signs at once what the
// previous run left without a checkpoint (a crash).
func TestCheckpointerResumes(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	j, _, cps := checkpointedWith(t, 5, key)
	j2, err := OpenJournal(j.Dir(), 0, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	if err := j2.Append("h", &Event{OperationName: "Uncovered"}); err != nil {
		t.Fatal(err)
	}
	c, err := StartCheckpointer(CheckpointerConfig{Journal: j2, Key: key, Interval: time.Hour, Log: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	all := readLines(t, CheckpointPath(j, "h"))
	var last Checkpoint
	jsonUnmarshal(t, all[len(all)-1], &last)
	if len(all) != len(cps)+1 || last.Index != uint64(len(cps)+1) || last.LastSequence != 6 {
		t.Fatalf("after a restart: %d checkpoints, last %+v", len(all), last)
	}
	rep, err := verifyCheckpointed(t, readLines(t, j.Path("h")), all, pub)
	if err != nil || rep.Uncovered != 0 || rep.CoveredThrough != 6 {
		t.Fatalf("%+v, %v", rep, err)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// pathSink records what is appended, by blob path.
type pathSink struct {
	mu    sync.Mutex
	blobs map[string][]byte
}

func (p *pathSink) Append(_ context.Context, path string, lines []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.blobs == nil {
		p.blobs = map[string][]byte{}
	}
	p.blobs[path] = append(p.blobs[path], lines...)
	return nil
}

func (p *pathSink) get(suffix string) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	var all []byte
	for k, v := range p.blobs {
		if strings.HasSuffix(k, suffix) {
			all = append(all, v...)
		}
	}
	return all
}

// Checkpoints travel beside the records, so cutting both the journal's
// and the checkpoint file's tail on the server still shows in storage.
func TestShipperDeliversCheckpoints(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	j, err := OpenJournal(t.TempDir(), 0, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	c, err := StartCheckpointer(CheckpointerConfig{Journal: j, Key: key, Interval: 20 * time.Millisecond, Log: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	sink := &pathSink{}
	sh := StartShipper(ShipperConfig{Journal: j, Stream: "h", Sink: sink, Log: slog.Default(),
		Save: func(context.Context, uint64) error { return nil }})
	defer sh.Stop()
	for i := range 10 {
		j.Append("h", &Event{OperationName: fmt.Sprint("Op", i), ResourceID: "/SUBSCRIPTIONS/S/X", Time: time.Now().UTC().Format(TimeLayout)})
	}
	waitFor(t, func() bool {
		cps, _ := ReadCheckpoints(bytes.NewReader(sink.get(CheckpointBlob)))
		return len(cps) > 0 && cps[len(cps)-1].LastSequence == 10
	})
	c.Close()
	cps, err := ReadCheckpoints(bytes.NewReader(sink.get(CheckpointBlob)))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyCheckpointed(bytes.NewReader(sink.get("PT1H.json")), cps, pub)
	if err != nil || rep.Records != 10 || rep.CoveredThrough != 10 {
		t.Fatalf("%+v, %v", rep, err)
	}
}

// FuzzVerifyCheckpointed feeds journal and checkpoint files, seeded with
// real ones, to the parsers of `keyward audit verify`: no panic, and a
// report only for what holds.
func FuzzVerifyCheckpointed(f *testing.F) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	dir := f.TempDir()
	j, err := OpenJournal(dir, 0, slog.Default())
	if err != nil {
		f.Fatal(err)
	}
	c, err := StartCheckpointer(CheckpointerConfig{Journal: j, Key: key, Interval: time.Hour, Log: slog.Default()})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 4 {
		j.Append("h", &Event{OperationName: fmt.Sprint("Op", i), ResourceID: "/R"})
		c.Checkpoint()
	}
	c.Close()
	j.Close()
	journal, _ := os.ReadFile(j.Path("h"))
	cps, _ := os.ReadFile(CheckpointPath(j, "h"))
	f.Add(journal, cps)
	f.Add(journal[:len(journal)/2], cps)
	f.Add([]byte("{}\n{\"sequence\":1}\n"), []byte("{\"stream\":\"h\",\"index\":1}\n"))
	f.Fuzz(func(t *testing.T, journal, checkpoints []byte) {
		cps, err := ReadCheckpoints(bytes.NewReader(checkpoints))
		if err != nil {
			return
		}
		rep, err := VerifyCheckpointed(bytes.NewReader(journal), cps, pub)
		if err == nil && (rep == nil || rep.CoveredThrough > rep.Last) {
			t.Fatalf("report %+v", rep)
		}
	})
}

// TestNewStreamIsCheckpointedPromptly: a stream with no checkpoint at all
// cannot show that its checkpoints were deleted, so its first one comes
// within a second or two, not at the next interval.
func TestNewStreamIsCheckpointedPromptly(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	j, err := OpenJournal(t.TempDir(), 0, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	c, err := StartCheckpointer(CheckpointerConfig{Journal: j, Key: key, Interval: time.Hour, Log: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := j.Append("fresh", &Event{Time: time.Now().UTC().Format(TimeLayout), OperationName: "KeyGet"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		cps, err := readCheckpointFile(CheckpointPath(j, "fresh"))
		if err != nil {
			t.Fatal(err)
		}
		if len(cps) == 1 && cps[0].LastSequence == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of a new stream after 5 s: %v", cps)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The nodes of a cluster sign checkpoints with one key and append to the
// same blobs, each its own chain of each stream: interleaved, the records
// and checkpoints of two nodes split into two chains that each verify
// against their own checkpoints; a record moved into the other node's
// chain, or relabelled, does not.
func TestClusterChainsVerifyApart(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	_, journalA, cpsA := checkpointedOn(t, 7, key, "node-a")
	_, journalB, cpsB := checkpointedOn(t, 9, key, "node-b")
	var blob, cps []string // as shippers leave them: interleaved
	for i := 0; i < max(len(journalA), len(journalB)); i++ {
		if i < len(journalA) {
			blob = append(blob, journalA[i])
		}
		if i < len(journalB) {
			blob = append(blob, journalB[i])
		}
	}
	cps = append(append(cps, cpsB...), cpsA...)
	if _, err := verifyCheckpointed(t, blob, cps, pub); err == nil {
		t.Fatal("two nodes' interleaved records verified as one chain")
	}
	chains, err := SplitChains(strings.NewReader(strings.Join(blob, "\n")))
	if err != nil || len(chains) != 2 {
		t.Fatalf("split: %d chains, %v", len(chains), err)
	}
	for name, want := range map[string]int{"node-a/h": 7, "node-b/h": 9} {
		rep, err := verifyCheckpointed(t, strings.Split(strings.TrimSpace(string(chains[name])), "\n"), cps, pub)
		if err != nil || rep.Records != want || rep.Node != name[:6] || rep.Uncovered != 0 {
			t.Fatalf("chain %s: %+v, %v", name, rep, err)
		}
	}
	// Node b's last record moved to node a's chain: relabelled, its hash
	// breaks; appended as is, the chain changes node.
	moved := strings.Replace(journalB[len(journalB)-1], `"node":"node-b"`, `"node":"node-a"`, 1)
	if _, err := verifyCheckpointed(t, append(slices.Clone(journalA), moved), cps, pub); err == nil {
		t.Fatal("a record relabelled to another node verified")
	}
	if _, err := Verify(strings.NewReader(strings.Join(append(slices.Clone(journalA), journalB[len(journalB)-1]), "\n"))); err == nil {
		t.Fatal("a chain that changes node verified")
	}
}
