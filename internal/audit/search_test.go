package audit

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"
)

// TestSearch: criteria, newest first, paging, the hourly counts by
// outcome (challenges left out), a record still being written, files
// rotated, and a chain broken by an edit or by a file that was deleted.
func TestSearch(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, 4<<10, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	base := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	add := func(at time.Time, op string, status int, upn, key string, challenge bool) {
		t.Helper()
		e := &Event{Time: at.Format(TimeLayout), ResourceID: "/SUBSCRIPTIONS/S/HSM1", OperationName: op, HTTPStatusCode: status, Category: Category,
			Properties: Properties{Key: key, Challenge: challenge}}
		if upn != "" {
			e.Identity = &Identity{Claim: Claims{UPN: upn}}
		}
		if err := j.Append("hsm1", e); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 60 { // two hours of signs, one minute apart, and rotations on the way
		add(base.Add(time.Duration(i)*2*time.Minute), "KeySign", 200, "app@contoso.example", "https://hsm1/keys/payments/1", false)
	}
	add(base.Add(30*time.Minute), "KeySign", 403, "erin@contoso.example", "https://hsm1/keys/payments", false)
	add(base.Add(31*time.Minute), "KeyCreate", 401, "", "https://hsm1/keys/other", true)
	add(base.Add(90*time.Minute), "KeyGet", 500, "alice@contoso.example", "https://hsm1/keys/other", false)
	files, _ := j.Files("hsm1")
	if len(files) < 2 {
		t.Fatalf("the journal did not rotate: %v", files)
	}
	all := Query{From: base.Add(-time.Hour), To: base.Add(3 * time.Hour)}
	res, err := j.Search([]StreamQuery{{Stream: "hsm1"}}, all)
	if err != nil {
		t.Fatal(err)
	}
	if res.Matched != 63 || len(res.Events) != 50 || res.Events[0].OperationName != "KeySign" || res.Events[0].Time < res.Events[49].Time {
		t.Fatalf("all records: %d matched, %d on the page, first %+v", res.Matched, len(res.Events), res.Events[0])
	}
	if len(res.Chains) != 1 || !res.Chains[0].Holds || res.Chains[0].Records != 63 {
		t.Fatalf("chain: %+v", res.Chains)
	}
	var allowed, refused, errs int
	for _, h := range res.Hours {
		allowed, refused, errs = allowed+h.Allowed, refused+h.Refused, errs+h.Errors
	}
	if len(res.Hours) != 2 || allowed != 60 || refused != 1 || errs != 1 {
		t.Fatalf("hours: %+v", res.Hours)
	}
	for name, tc := range map[string]struct {
		q    Query
		want int
	}{
		"refused":           {Query{Result: string(Refused)}, 1},
		"challenges":        {Query{Result: string(Challenged)}, 1},
		"errors":            {Query{Result: string(Errored)}, 1},
		"by caller":         {Query{Caller: "ERIN"}, 1},
		"by operation":      {Query{Operation: "keyget"}, 1},
		"by key":            {Query{Key: "other"}, 2},
		"by time":           {Query{From: base.Add(89 * time.Minute), To: base.Add(91 * time.Minute)}, 2},
		"second page":       {Query{Skip: 50}, 13},
		"past the last one": {Query{Skip: 100}, 0},
	} {
		q := tc.q
		if q.From.IsZero() {
			q.From, q.To = all.From, all.To
		}
		res, err := j.Search([]StreamQuery{{Stream: "hsm1"}}, q)
		if err != nil {
			t.Fatal(err)
		}
		got := len(res.Events)
		if q.Skip == 0 {
			got = res.Matched
		}
		if got != tc.want {
			t.Errorf("%s: %d, want %d", name, got, tc.want)
		}
	}

	// Only the resource's records, and only since a time.
	for name, tc := range map[string]struct {
		sq   StreamQuery
		want int
	}{
		"this resource":    {StreamQuery{Stream: "hsm1", ResourceID: "/SUBSCRIPTIONS/S/HSM1"}, 63},
		"another resource": {StreamQuery{Stream: "hsm1", ResourceID: "/subscriptions/s/other"}, 0},
		"since":            {StreamQuery{Stream: "hsm1", Since: base.Add(100 * time.Minute)}, 10},
	} {
		res, err := j.Search([]StreamQuery{tc.sq}, all)
		if err != nil {
			t.Fatal(err)
		}
		var hours int
		for _, h := range res.Hours {
			hours += h.Allowed + h.Refused + h.Errors
		}
		if res.Matched != tc.want || hours > tc.want {
			t.Errorf("%s: %d matched, %d in the chart, want %d", name, res.Matched, hours, tc.want)
		}
	}
	// Deep pages are bounded, and so are searches at once.
	if res, _ := j.Search([]StreamQuery{{Stream: "hsm1"}}, Query{From: all.From, To: all.To, Skip: 1 << 30}); len(res.Events) != 0 {
		t.Errorf("a skip past MaxSkip: %d records", len(res.Events))
	}
	for range MaxSearches {
		j.searches <- struct{}{}
	}
	if _, err := j.Search([]StreamQuery{{Stream: "hsm1"}}, all); !errors.Is(err, ErrSearchBusy) {
		t.Errorf("a search beyond MaxSearches: %v", err)
	}
	for range MaxSearches {
		<-j.searches
	}

	// A record half written is left out, and the chain still holds.
	cur := j.Path("hsm1")
	f, _ := os.OpenFile(cur, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-12-01T09:00:00.0000000Z","operationName":"Ke`)
	f.Close()
	if res, _ := j.Search([]StreamQuery{{Stream: "hsm1"}}, all); !res.Chains[0].Holds || res.Matched != 63 {
		t.Fatalf("with a half-written record: %+v, %d", res.Chains, res.Matched)
	}

	// An edited record breaks the chain, and the search says where.
	b, _ := os.ReadFile(files[0])
	os.WriteFile(files[0], bytes.Replace(b, []byte(`"httpStatusCode":200`), []byte(`"httpStatusCode":201`), 1), 0o600)
	if res, _ := j.Search([]StreamQuery{{Stream: "hsm1"}}, all); res.Chains[0].Holds || res.Chains[0].Problem == "" {
		t.Fatalf("an edited record: %+v", res.Chains)
	}
	// A rotated file deleted in the middle breaks it between files.
	os.WriteFile(files[0], b, 0o600)
	if len(files) >= 3 {
		os.Remove(files[1])
		if res, _ := j.Search([]StreamQuery{{Stream: "hsm1"}}, all); res.Chains[0].Holds {
			t.Fatalf("a deleted file: %+v", res.Chains)
		}
	}
	// A stream name that is no stream's reads nothing.
	if res, err := j.Search([]StreamQuery{{Stream: "../etc"}}, all); err != nil || len(res.Chains) != 0 {
		t.Fatalf("a bad stream name: %+v %v", res, err)
	}
}
