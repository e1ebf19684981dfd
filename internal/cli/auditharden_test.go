package cli

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/servertest"
)

// Records hold what clients sent. A user agent or URI with terminal
// escapes used to reach an auditor's terminal as is through
// `keyward audit query -o table` or `-o tsv`.
func TestAuditQueryEscapesControlCharacters(t *testing.T) {
	dir := t.TempDir()
	j, err := audit.OpenJournal(dir, 0, slog.Default())
	must(t, err)
	evil := "curl\x1b]0;owned\x07\x1b[2J\u202egnp.exe\r\nfake line"
	must(t, j.Append("h", &audit.Event{Time: "2026-01-01T00:00:00.0000000Z", OperationName: "KeyGet\x1b[31m",
		ClientInfo: evil, RequestURI: "https://h/keys/" + evil, HTTPStatusCode: 200}))
	must(t, j.Close())
	k := kw{t, t.TempDir()}
	for _, format := range []string{"table", "tsv"} {
		out := k.ok("audit", "query", "--file", j.Path("h"), "-o", format)
		if i := strings.IndexFunc(out, func(r rune) bool {
			return r != '\n' && r != '\t' && (needsEscape(r))
		}); i >= 0 {
			t.Fatalf("-o %s printed %q", format, out)
		}
		if strings.Count(out, "\n") != map[string]int{"table": 2, "tsv": 0}[format] {
			t.Fatalf("-o %s: a record spans lines: %q", format, out)
		}
		if !strings.Contains(out, `\x1b]0;owned\x07\x1b[2J\u202egnp.exe\x0d\x0afake line`) {
			t.Fatalf("-o %s: %q", format, out)
		}
	}
	// JSON output is JSON: its encoder escapes them already.
	if out := k.ok("audit", "query", "--file", j.Path("h")); strings.ContainsAny(out, "\x1b\x07\r") {
		t.Fatalf("json: %q", out)
	}
}

// `keyward audit verify` used to call a journal intact after its last
// records were deleted: a hash chain cannot see its own end cut off. With
// the server's signed checkpoints it names the missing tail, a forged
// checkpoint and missing ones.
func TestAuditVerifyNamesACutTail(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	for range 5 {
		env.Do("GET", "/keys?api-version=7.4", env.AdminToken("https://managedhsm.azure.net"), nil)
	}
	env.Stop() // the last checkpoint is signed at shutdown
	auditDir := filepath.Join(env.Dir, "audit")
	journal := filepath.Join(auditDir, audit.StreamOf(env.Boot.HSMName)+".jsonl")
	pub := filepath.Join(auditDir, "checkpoint-public-key.pem")
	k := kw{t, t.TempDir()}
	verify := func(args ...string) (string, string, int) {
		return k.run("", append([]string{"audit", "verify", "--file", journal}, args...)...)
	}
	if out, errs, code := verify("--public-key", pub); code != 0 || !strings.Contains(out, `"uncoveredRecords": 0`) {
		t.Fatalf("the untouched log: %d %s %s", code, out, errs)
	}
	// Cut the last three records.
	data, err := os.ReadFile(journal)
	must(t, err)
	lines := strings.SplitAfter(strings.TrimSuffix(string(data), "\n"), "\n")
	must(t, os.WriteFile(journal, []byte(strings.Join(lines[:len(lines)-3], "")), 0o600))
	if _, errs, code := verify(); code != 0 {
		t.Fatalf("the chain alone: %s", errs) // all a chain can tell
	}
	if _, errs, code := verify("--public-key", pub); code == 0 || !strings.Contains(errs, "missing tail") || !strings.Contains(errs, "are missing") {
		t.Fatalf("a cut tail: exit %d: %s", code, errs)
	}
	// Checkpoints dropped.
	if _, errs, code := verify("--public-key", pub, "--checkpoints", t.TempDir()); code == 0 || !strings.Contains(errs, "missing checkpoint") {
		t.Fatalf("no checkpoints: exit %d: %s", code, errs)
	}
	// A checkpoint edited to vouch for the cut journal.
	cpFile := filepath.Join(auditDir, "checkpoints", audit.StreamOf(env.Boot.HSMName)+".jsonl")
	cps, err := os.ReadFile(cpFile)
	must(t, err)
	forged := strings.Replace(string(cps), `"lastSequence":`, `"lastSequence":1`, 1)
	must(t, os.WriteFile(cpFile, []byte(forged), 0o600))
	if _, errs, code := verify("--public-key", pub); code == 0 || !strings.Contains(errs, "forged checkpoint") {
		t.Fatalf("a forged checkpoint: exit %d: %s", code, errs)
	}
}
