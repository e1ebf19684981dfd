package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// Search reads a journal's streams back for people: the records that match
// a query, newest first, a page at a time; how many requests each hour
// had, by outcome; and whether each stream's chain holds.

// Query selects records. Text fields match case-insensitively anywhere in
// their field; empty matches all.
type Query struct {
	From, To  time.Time // To zero: now
	Operation string
	Caller    string // UPN, app id or object id
	Result    string // "" or an Outcome
	Key       string // the key the request named
	Skip, Top int    // Top zero: 50
}

// Outcome is how a request ended, as the console's chart splits them.
type Outcome string

const (
	Allowed Outcome = "allowed" // answered 1xx–3xx
	Refused Outcome = "refused" // 401 or 403: a bad token, or no right
	Errored Outcome = "error"   // any other failure
	// Challenged is the 401 that answers a request without a token: the
	// first leg of every Azure SDK call, which then retries with one. It
	// is no refusal, and the chart leaves it out.
	Challenged Outcome = "challenge"
)

// OutcomeOf classifies a record.
func OutcomeOf(e *Event) Outcome {
	switch {
	case e.Properties.Challenge:
		return Challenged
	case e.HTTPStatusCode < 400:
		return Allowed
	case e.HTTPStatusCode == 401 || e.HTTPStatusCode == 403:
		return Refused
	}
	return Errored
}

// HourCount is the number of requests of one hour, by outcome.
type HourCount struct {
	Hour                     time.Time
	Allowed, Refused, Errors int
}

// ChainStatus is what the chain check found in one stream.
type ChainStatus struct {
	Stream  string
	Records int
	Holds   bool
	Problem string // when it does not hold
	// Partial is set when only the stream's newest files were read.
	Partial bool
}

// SearchResult is a page of matching records and what the search saw.
type SearchResult struct {
	Events  []Event // newest first
	Matched int     // all matching records, over every page
	Hours   []HourCount
	Chains  []ChainStatus
}

// MaxSearchBytes bounds what one search reads of a stream: its newest
// files, up to this size. Older records are in the blob archive.
const MaxSearchBytes = 64 << 20

// Search runs q over streams of j. The hourly counts cover every record
// of the time range, whatever the other criteria.
func (j *Journal) Search(streams []string, q Query) (*SearchResult, error) {
	if q.To.IsZero() {
		q.To = time.Now()
	}
	if q.Top <= 0 || q.Top > 500 {
		q.Top = 50
	}
	res := &SearchResult{}
	hours := map[int64]*HourCount{}
	var matched []Event
	for _, name := range streams {
		if !ValidStream(name) {
			continue
		}
		status, err := j.searchStream(name, func(e *Event) {
			t, err := time.Parse(time.RFC3339Nano, e.Time)
			if err != nil || t.Before(q.From) || t.After(q.To) {
				return
			}
			h := t.Truncate(time.Hour).Unix()
			hc := hours[h]
			if hc == nil {
				hc = &HourCount{Hour: time.Unix(h, 0).UTC()}
				hours[h] = hc
			}
			switch OutcomeOf(e) {
			case Allowed:
				hc.Allowed++
			case Refused:
				hc.Refused++
			case Errored:
				hc.Errors++
			}
			if q.matches(e) {
				matched = append(matched, *e)
			}
		})
		if err != nil {
			return nil, err
		}
		res.Chains = append(res.Chains, status)
	}
	// Newest first; within a stream the order is the chain's.
	slices.SortStableFunc(matched, func(a, b Event) int { return strings.Compare(b.Time, a.Time) })
	res.Matched = len(matched)
	if q.Skip < len(matched) {
		res.Events = matched[q.Skip:min(len(matched), q.Skip+q.Top)]
	}
	for _, hc := range hours {
		res.Hours = append(res.Hours, *hc)
	}
	slices.SortFunc(res.Hours, func(a, b HourCount) int { return a.Hour.Compare(b.Hour) })
	return res, nil
}

func (q *Query) matches(e *Event) bool {
	has := func(field, want string) bool {
		return want == "" || strings.Contains(strings.ToLower(field), strings.ToLower(want))
	}
	var caller string
	if e.Identity != nil {
		c := e.Identity.Claim
		caller = c.UPN + " " + c.AppID + " " + c.ObjectID
	}
	return has(e.OperationName, q.Operation) && has(caller, q.Caller) && has(e.Properties.Key, q.Key) &&
		(q.Result == "" || Outcome(q.Result) == OutcomeOf(e))
}

// searchStream walks the newest files of stream (up to MaxSearchBytes),
// checking the chain within and across them, and calls each with every
// record read. A record still being written (no newline yet) is left out.
func (j *Journal) searchStream(stream string, each func(*Event)) (ChainStatus, error) {
	st := ChainStatus{Stream: stream, Holds: true}
	files, err := j.Files(stream)
	if err != nil {
		return st, fmt.Errorf("audit: listing the files of stream %s: %w", stream, err)
	}
	first, total := len(files), int64(0)
	for first > 0 {
		fi, err := os.Stat(files[first-1])
		if err != nil {
			return st, fmt.Errorf("audit: reading stream %s: %w", stream, err)
		}
		if total+fi.Size() > MaxSearchBytes && first < len(files) {
			st.Partial = true
			break
		}
		total += fi.Size()
		first--
	}
	var last *Event
	for _, path := range files[first:] {
		b, err := readWhole(path, MaxSearchBytes)
		if err != nil {
			return st, fmt.Errorf("audit: reading stream %s: %w", stream, err)
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			b = b[:i+1]
		} else {
			b = nil
		}
		firstInFile := true
		n, err := walk(bytes.NewReader(b), func(e *Event) error {
			if firstInFile && last != nil && (e.PreviousHash != last.Hash || e.Sequence != last.Sequence+1) {
				return &ChainError{Sequence: e.Sequence, Reason: "the file does not continue the one before it (records deleted between files)"}
			}
			firstInFile = false
			each(e)
			ev := *e
			last = &ev
			return nil
		})
		st.Records += n
		var ce *ChainError
		if errors.As(err, &ce) {
			st.Holds, st.Problem = false, ce.Error()
			return st, nil
		}
		if err != nil {
			return st, fmt.Errorf("audit: reading stream %s: %w", stream, err)
		}
	}
	return st, nil
}

// readWhole reads at most limit bytes of path.
func readWhole(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}
