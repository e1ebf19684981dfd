package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
)

// ChainError names the first record that breaks a chain.
type ChainError struct {
	Line     int    // 1-based line in the input
	Sequence uint64 // the record's sequence number, if it parsed
	Reason   string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("audit: record at line %d (sequence %d) breaks the chain: %s", e.Line, e.Sequence, e.Reason)
}

// Verify reads a journal (one or more files of one stream, concatenated in
// order) and checks every record's hash and its link to the one before.
// It returns the number of records, and a *ChainError at the first record
// that was edited, follows a deletion, or is out of order. The first
// record is taken as the anchor: a file that starts after a rotation
// continues a chain whose start is elsewhere.
func Verify(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var prev *Event
	n := 0
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return n, &ChainError{Line: line, Reason: "not a JSON record"}
		}
		want, err := e.hash()
		if err != nil {
			return n, err
		}
		switch {
		case want != e.Hash:
			return n, &ChainError{Line: line, Sequence: e.Sequence, Reason: "its content does not match its hash (edited)"}
		case prev == nil && e.Sequence == 1 && e.PreviousHash != "":
			return n, &ChainError{Line: line, Sequence: e.Sequence, Reason: "the first record names a predecessor"}
		case prev != nil && e.Stream != prev.Stream:
			return n, &ChainError{Line: line, Sequence: e.Sequence, Reason: fmt.Sprintf("it belongs to stream %q, not %q", e.Stream, prev.Stream)}
		case prev != nil && e.Sequence <= prev.Sequence:
			return n, &ChainError{Line: line, Sequence: e.Sequence, Reason: fmt.Sprintf("it comes after sequence %d (reordered or repeated)", prev.Sequence)}
		case prev != nil && e.Sequence != prev.Sequence+1:
			return n, &ChainError{Line: line, Sequence: e.Sequence, Reason: fmt.Sprintf("sequence %d to %d is missing (deleted)", prev.Sequence+1, e.Sequence-1)}
		case prev != nil && e.PreviousHash != prev.Hash:
			return n, &ChainError{Line: line, Sequence: e.Sequence, Reason: "it does not link to the record before it"}
		}
		prev = &e
		n++
	}
	return n, sc.Err()
}
