package audit

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
)

func writeJournal(t *testing.T, n int, maxBytes int64) (*Journal, string) {
	t.Helper()
	dir := t.TempDir()
	j, err := OpenJournal(dir, maxBytes, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		e := &Event{OperationName: fmt.Sprintf("Op%d", i), Category: Category, HTTPStatusCode: 200}
		if err := j.Append("contoso-hsm", e); err != nil {
			t.Fatal(err)
		}
	}
	return j, dir
}

func readLines(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func verifyLines(lines []string) (int, error) {
	return Verify(strings.NewReader(strings.Join(lines, "\n") + "\n"))
}

func TestVerifyCleanLog(t *testing.T) {
	j, _ := writeJournal(t, 20, 0)
	defer j.Close()
	n, err := verifyLines(readLines(t, j.Path("contoso-hsm")))
	if err != nil || n != 20 {
		t.Fatalf("clean log: %d records, %v", n, err)
	}
}

func chainError(t *testing.T, err error) *ChainError {
	t.Helper()
	var ce *ChainError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a ChainError", err)
	}
	return ce
}

func TestVerifyFindsDeletion(t *testing.T) {
	j, _ := writeJournal(t, 10, 0)
	defer j.Close()
	lines := readLines(t, j.Path("contoso-hsm"))
	lines = append(lines[:4], lines[5:]...) // delete sequence 5
	_, err := verifyLines(lines)
	if ce := chainError(t, err); ce.Line != 5 || ce.Sequence != 6 || !strings.Contains(ce.Reason, "missing") {
		t.Fatalf("deletion: %v", ce)
	}
}

func TestVerifyFindsReorder(t *testing.T) {
	j, _ := writeJournal(t, 10, 0)
	defer j.Close()
	lines := readLines(t, j.Path("contoso-hsm"))
	lines[6], lines[7] = lines[7], lines[6]
	_, err := verifyLines(lines)
	if ce := chainError(t, err); ce.Line != 7 || ce.Sequence != 8 {
		t.Fatalf("reorder: %v", ce)
	}
}

func TestVerifyFindsEdit(t *testing.T) {
	j, _ := writeJournal(t, 10, 0)
	defer j.Close()
	lines := readLines(t, j.Path("contoso-hsm"))
	lines[2] = strings.Replace(lines[2], `"httpStatusCode":200`, `"httpStatusCode":403`, 1)
	_, err := verifyLines(lines)
	if ce := chainError(t, err); ce.Line != 3 || ce.Sequence != 3 || !strings.Contains(ce.Reason, "edited") {
		t.Fatalf("edit: %v", ce)
	}
	// Re-hashing the edited record does not help: the next link breaks.
	var lines2 = readLines(t, j.Path("contoso-hsm"))
	e := &Event{}
	jsonUnmarshal(t, lines2[2], e)
	e.HTTPStatusCode = 403
	e.Hash, _ = e.hash()
	lines2[2] = jsonMarshal(t, e)
	_, err = verifyLines(lines2)
	if ce := chainError(t, err); ce.Line != 4 || !strings.Contains(ce.Reason, "link") {
		t.Fatalf("re-hashed edit: %v", ce)
	}
}

func TestJournalRotatesAndResumes(t *testing.T) {
	j, dir := writeJournal(t, 50, 2000)
	j.Close()
	files, _ := (&Journal{dir: dir}).Files("contoso-hsm")
	if len(files) < 3 {
		t.Fatalf("%d files after rotation", len(files))
	}
	// The chain runs on across the files and across a restart.
	j2, err := OpenJournal(dir, 2000, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if err := j2.Append("contoso-hsm", &Event{OperationName: "After"}); err != nil {
		t.Fatal(err)
	}
	j2.Close()
	files, _ = (&Journal{dir: dir}).Files("contoso-hsm")
	var all bytes.Buffer
	for _, f := range files {
		b, _ := os.ReadFile(f)
		all.Write(b)
	}
	n, err := Verify(&all)
	if err != nil || n != 51 {
		t.Fatalf("across rotation and restart: %d, %v", n, err)
	}
	// One rotated file on its own verifies too (it anchors on its first record).
	b, _ := os.ReadFile(files[1])
	if _, err := Verify(bytes.NewReader(b)); err != nil {
		t.Fatalf("a middle file: %v", err)
	}
}
