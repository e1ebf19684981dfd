package audit

import (
	"bufio"
	"cmp"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"slices"
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
	return walk(r, nil)
}

// walk checks the chain of r as Verify does, calling each (when not nil)
// with every record that holds.
func walk(r io.Reader, each func(e *Event) error) (int, error) {
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
		case prev != nil && e.Node != prev.Node:
			return n, &ChainError{Line: line, Sequence: e.Sequence, Reason: fmt.Sprintf("it was written by node %q, not %q", e.Node, prev.Node)}
		case prev != nil && e.Sequence <= prev.Sequence:
			return n, &ChainError{Line: line, Sequence: e.Sequence, Reason: fmt.Sprintf("it comes after sequence %d (reordered or repeated)", prev.Sequence)}
		case prev != nil && e.Sequence != prev.Sequence+1:
			return n, &ChainError{Line: line, Sequence: e.Sequence, Reason: fmt.Sprintf("sequence %d to %d is missing (deleted)", prev.Sequence+1, e.Sequence-1)}
		case prev != nil && e.PreviousHash != prev.Hash:
			return n, &ChainError{Line: line, Sequence: e.Sequence, Reason: "it does not link to the record before it"}
		}
		if each != nil {
			if err := each(&e); err != nil {
				return n, err
			}
		}
		prev = &e
		n++
	}
	return n, sc.Err()
}

// CheckpointProblem is what is wrong with a journal given its checkpoints.
type CheckpointProblem string

// The problems VerifyCheckpointed reports.
const (
	// Forged: a checkpoint's signature does not verify with the public
	// key, or two checkpoints claim the same place.
	Forged CheckpointProblem = "forged checkpoint"
	// MissingTail: a checkpoint vouches for records the journal does not
	// have, or has with other content: its last records were cut (or
	// cut and rewritten).
	MissingTail CheckpointProblem = "missing tail"
	// MissingCheckpoint: no checkpoint of the journal's stream, or a gap in
	// the numbers of its checkpoints.
	MissingCheckpoint CheckpointProblem = "missing checkpoint"
)

// CheckpointError names what does not hold between a journal and its
// checkpoints.
type CheckpointError struct {
	Problem CheckpointProblem
	Stream  string
	Index   uint64 // the checkpoint concerned, if one is
	Reason  string
}

func (e *CheckpointError) Error() string {
	if e.Index != 0 {
		return fmt.Sprintf("audit: %s: checkpoint %d of stream %q: %s", e.Problem, e.Index, e.Stream, e.Reason)
	}
	return fmt.Sprintf("audit: %s: stream %q: %s", e.Problem, e.Stream, e.Reason)
}

// Report is what VerifyCheckpointed found in a journal that holds.
type Report struct {
	Node        string // the cluster node that wrote it ("" for one node)
	Stream      string
	Records     int
	First, Last uint64 // sequence numbers of the first and last records
	// Checkpoints counts the checkpoints of the stream that were checked.
	Checkpoints int
	// CoveredThrough is the last sequence a checkpoint vouches for;
	// Uncovered counts the records after it, which a checkpoint cannot
	// yet vouch for (recent ones, or ones cut from a checkpoint file).
	CoveredThrough uint64
	Uncovered      uint64
}

// VerifyCheckpointed checks a journal as Verify does, and against the
// checkpoints of its stream, which must be signed with pub. It returns a
// *CheckpointError when a checkpoint is forged (any of cps, of any
// stream), when one vouches for records the journal lacks or has with
// other content (a missing tail), and when there is no checkpoint of the
// journal's stream or its numbers have a gap (a missing checkpoint), and
// a *ChainError when the chain itself breaks. Records after the last
// checkpoint are not an error; the Report counts them.
func VerifyCheckpointed(r io.Reader, cps []Checkpoint, pub ed25519.PublicKey) (*Report, error) {
	// Chains are a node's stream: the nodes of a cluster sign with one
	// key, and each keeps its own chain of each stream.
	byChain := map[string][]*Checkpoint{}
	for i := range cps {
		c := &cps[i]
		if !c.verify(pub) {
			return nil, &CheckpointError{Problem: Forged, Stream: c.chainName(), Index: c.Index,
				Reason: fmt.Sprintf("its signature (key %s) does not verify with the public key (key %s)", c.KeyID, KeyID(pub))}
		}
		byChain[c.chainName()] = append(byChain[c.chainName()], c)
	}
	for chain, list := range byChain {
		list, err := orderCheckpoints(chain, list)
		if err != nil {
			return nil, err
		}
		byChain[chain] = list
	}
	rep := &Report{}
	chain := ""
	at := map[uint64][]*Checkpoint{} // the chain's checkpoints by LastSequence
	n, err := walk(r, func(e *Event) error {
		if rep.Stream == "" {
			rep.Node, rep.Stream, rep.First = e.Node, e.Stream, e.Sequence
			chain = e.chainName()
			for _, c := range byChain[chain] {
				at[c.LastSequence] = append(at[c.LastSequence], c)
			}
		}
		rep.Last = e.Sequence
		for _, c := range at[e.Sequence] {
			if c.LastHash != e.Hash {
				return &CheckpointError{Problem: MissingTail, Stream: c.Stream, Index: c.Index,
					Reason: fmt.Sprintf("it vouches for another record %d than the journal's (of %s): the records from there on were cut and rewritten", e.Sequence, c.Time)}
			}
			rep.Checkpoints++
			rep.CoveredThrough = max(rep.CoveredThrough, c.LastSequence)
		}
		return nil
	})
	rep.Records = n
	if err != nil {
		return nil, err
	}
	if rep.Stream == "" && len(byChain) == 1 {
		for c, list := range byChain {
			chain = c // an empty journal: its checkpoints still speak
			rep.Node, rep.Stream = list[0].Node, list[0].Stream
		}
	}
	list := byChain[chain]
	if len(list) == 0 {
		return nil, &CheckpointError{Problem: MissingCheckpoint, Stream: chain,
			Reason: "no checkpoint of this stream was given: its checkpoints were deleted, or never written"}
	}
	for _, c := range list {
		switch {
		case c.LastSequence > rep.Last:
			return nil, &CheckpointError{Problem: MissingTail, Stream: c.Stream, Index: c.Index,
				Reason: fmt.Sprintf("it vouches for records up to %d (at %s), but the journal ends at %d: records %d to %d are missing",
					c.LastSequence, c.Time, rep.Last, rep.Last+1, c.LastSequence)}
		case c.LastSequence < rep.First:
			rep.Checkpoints++ // of records before these files
		}
	}
	if rep.Records > 0 && rep.CoveredThrough < rep.Last {
		rep.Uncovered = rep.Last - max(rep.CoveredThrough, rep.First-1)
	}
	return rep, nil
}

// orderCheckpoints sorts a stream's checkpoints by Index, drops copies
// (a checkpoint shipped twice), and checks that the numbers have no gap
// and each links to the one before. The first may be any number: a
// setting that started shipping later has the later ones only.
func orderCheckpoints(stream string, list []*Checkpoint) ([]*Checkpoint, error) {
	slices.SortStableFunc(list, func(a, b *Checkpoint) int { return cmp.Compare(a.Index, b.Index) })
	out := list[:0:0]
	for _, c := range list {
		if len(out) > 0 {
			prev := out[len(out)-1]
			switch {
			case c.Index == prev.Index && c.Digest() == prev.Digest():
				continue
			case c.Index == prev.Index:
				return nil, &CheckpointError{Problem: Forged, Stream: stream, Index: c.Index, Reason: "two different checkpoints carry this number"}
			case c.Index != prev.Index+1:
				return nil, &CheckpointError{Problem: MissingCheckpoint, Stream: stream, Index: c.Index,
					Reason: fmt.Sprintf("checkpoints %d to %d are missing", prev.Index+1, c.Index-1)}
			case c.Previous != prev.Digest():
				return nil, &CheckpointError{Problem: Forged, Stream: stream, Index: c.Index, Reason: "it does not link to the checkpoint before it"}
			case c.LastSequence < prev.LastSequence:
				return nil, &CheckpointError{Problem: MissingTail, Stream: stream, Index: c.Index,
					Reason: fmt.Sprintf("the journal went back from record %d to %d between checkpoints: its tail was cut", prev.LastSequence, c.LastSequence)}
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// chainName names the chain of a record: its stream, and its node's name
// before it in a cluster ("node/stream").
func (e *Event) chainName() string { return chainName(e.Node, e.Stream) }

func (c *Checkpoint) chainName() string { return chainName(c.Node, c.Stream) }

func chainName(node, stream string) string {
	if node == "" {
		return stream
	}
	return node + "/" + stream
}

// SplitChains reads records (JSON lines, as delivered to blob storage,
// where the nodes of a cluster append to the same blobs) and returns each
// chain's lines in their order, by chain name ("node/stream", or the
// stream for one node), so that each can be verified on its own. A line
// that is no record is a *ChainError.
func SplitChains(r io.Reader) (map[string][]byte, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	out := map[string][]byte{}
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e struct{ Node, Stream string }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, &ChainError{Line: line, Reason: "not a JSON record"}
		}
		name := chainName(e.Node, e.Stream)
		out[name] = append(append(out[name], sc.Bytes()...), '\n')
	}
	return out, sc.Err()
}
