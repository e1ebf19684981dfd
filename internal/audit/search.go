package audit

import (
	"bytes"
	"container/heap"
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
	Result    string // "", an Outcome, or several, with commas between
	Key       string // the key the request named
	Skip, Top int    // Top zero: 50; Skip at most MaxSkip
}

// MaxSkip bounds how deep a search pages: the search keeps the newest
// Skip+Top matches, never all of them.
const MaxSkip = 10000

// StreamQuery names a stream to search and which of its records belong
// to the searcher: those of one resource (a stream is named after an HSM,
// and a later HSM of the same name is another resource), written since a
// time (a diagnostic setting delivers what is written after it).
type StreamQuery struct {
	Stream     string
	ResourceID string    // "" for any; compared without regard to case
	Since      time.Time // zero for all
}

// ErrSearchBusy refuses a search while MaxSearches run.
var ErrSearchBusy = errors.New("audit: too many searches at once")

// MaxSearches bounds the searches a journal runs at once: each reads up
// to MaxSearchBytes.
const MaxSearches = 2

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

// MaxSearchBytes bounds what one search reads, shared among its streams:
// each stream's newest files, up to its share. Older records are in the
// blob archive.
const MaxSearchBytes = 64 << 20

// Search runs q over streams of j. The hourly counts cover the records
// that meet every criterion but the result, split by outcome. At most MaxSearches run at once; another gets ErrSearchBusy.
func (j *Journal) Search(streams []StreamQuery, q Query) (*SearchResult, error) {
	select {
	case j.searches <- struct{}{}:
		defer func() { <-j.searches }()
	default:
		return nil, ErrSearchBusy
	}
	if q.To.IsZero() {
		q.To = time.Now()
	}
	if q.Top <= 0 || q.Top > 500 {
		q.Top = 50
	}
	q.Skip = max(0, min(q.Skip, MaxSkip))
	res := &SearchResult{}
	hours := map[int64]*HourCount{}
	newest := &eventHeap{} // the newest Skip+Top matches, oldest on top
	keep := q.Skip + q.Top
	budget := int64(MaxSearchBytes) / int64(max(1, len(streams)))
	for _, sq := range streams {
		if !ValidStream(sq.Stream) {
			continue
		}
		status, err := j.searchStream(sq.Stream, budget, func(e *Event) {
			if sq.ResourceID != "" && !strings.EqualFold(e.ResourceID, sq.ResourceID) {
				return
			}
			t, err := time.Parse(time.RFC3339Nano, e.Time)
			if err != nil || t.Before(q.From) || t.After(q.To) || t.Before(sq.Since) {
				return
			}
			if !q.matchesButResult(e) {
				return
			}
			h := t.Truncate(time.Hour).Unix()
			hc := hours[h]
			if hc == nil {
				hc = &HourCount{Hour: time.Unix(h, 0).UTC()}
				hours[h] = hc
			}
			outcome := OutcomeOf(e)
			switch outcome {
			case Allowed:
				hc.Allowed++
			case Refused:
				hc.Refused++
			case Errored:
				hc.Errors++
			}
			if q.Result == "" || slices.Contains(strings.Split(q.Result, ","), string(outcome)) {
				res.Matched++
				if newest.Len() < keep {
					heap.Push(newest, *e)
				} else if e.Time > (*newest)[0].Time {
					(*newest)[0] = *e
					heap.Fix(newest, 0)
				}
			}
		})
		if err != nil {
			return nil, err
		}
		res.Chains = append(res.Chains, status)
	}
	// Newest first.
	matched := []Event(*newest)
	slices.SortStableFunc(matched, func(a, b Event) int { return strings.Compare(b.Time, a.Time) })
	if q.Skip < len(matched) {
		res.Events = slices.Clone(matched[q.Skip:min(len(matched), q.Skip+q.Top)])
	}
	for _, hc := range hours {
		res.Hours = append(res.Hours, *hc)
	}
	slices.SortFunc(res.Hours, func(a, b HourCount) int { return a.Hour.Compare(b.Hour) })
	return res, nil
}

func (q *Query) matchesButResult(e *Event) bool {
	has := func(field, want string) bool {
		return want == "" || strings.Contains(strings.ToLower(field), strings.ToLower(want))
	}
	var caller string
	if e.Identity != nil {
		c := e.Identity.Claim
		caller = c.UPN + " " + c.AppID + " " + c.ObjectID
	}
	return has(e.OperationName, q.Operation) && has(caller, q.Caller) && has(e.Properties.Key, q.Key)
}

// eventHeap is a min-heap of records by time: the oldest kept is on top.
type eventHeap []Event

func (h eventHeap) Len() int           { return len(h) }
func (h eventHeap) Less(i, k int) bool { return h[i].Time < h[k].Time }
func (h eventHeap) Swap(i, k int)      { h[i], h[k] = h[k], h[i] }
func (h *eventHeap) Push(x any)        { *h = append(*h, x.(Event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// searchStream walks the newest files of stream (up to budget bytes),
// checking the chain within and across them, and calls each with every
// record read. A record still being written (no newline yet) is left out.
func (j *Journal) searchStream(stream string, budget int64, each func(*Event)) (ChainStatus, error) {
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
		if total+fi.Size() > budget && first < len(files) {
			st.Partial = true
			break
		}
		total += fi.Size()
		first--
	}
	var last *Event
	for _, path := range files[first:] {
		b, err := readWhole(path, budget)
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
