package arm

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/fault"
)

// AuditSearcher reads audit records back: the node's journal.
type AuditSearcher interface {
	Search(streams []audit.StreamQuery, q audit.Query) (*audit.SearchResult, error)
}

// The AuditEvent records a storage account receives, searched: a Keyward
// extension (Azure's are read from the account's blobs, or from Log
// Analytics), under the account because reading the account is the right
// the story gives auditors ("Auditors need read access to the Storage
// account where the managed HSM logs are stored"). It answers with what
// the account receives, as this node's journal holds it: the records of
// every HSM whose enabled diagnostic setting sends its logs there, written
// since the setting was put, of that HSM resource only (not of an earlier
// HSM of the same name).
const auditEventsPath = "/providers/Keyward.Insights/auditEvents"

// accountScope is the storage account an audit search reads.
func accountScope(r *http.Request) string {
	return r.URL.Path[:len(r.URL.Path)-len(auditEventsPath)]
}

// auditEventsPage is the answer.
type auditEventsPage struct {
	Value    []audit.Event `json:"value"`
	Matched  int           `json:"matched"`
	HSMs     []string      `json:"hsms"`
	Hours    []auditHour   `json:"hours"`
	Chains   []auditChain  `json:"chains"`
	NextLink string        `json:"nextLink,omitempty"`
}

type auditHour struct {
	Hour    string `json:"hour"`
	Allowed int    `json:"allowed"`
	Refused int    `json:"refused"`
	Errors  int    `json:"error"`
}

type auditChain struct {
	Stream  string `json:"stream"`
	Records int    `json:"records"`
	Holds   bool   `json:"holds"`
	Problem string `json:"problem,omitempty"`
	Partial bool   `json:"partial,omitempty"`
}

func (a *API) auditEvents(w http.ResponseWriter, r *http.Request) error {
	if a.audit == nil {
		return fault.Errorf(fault.NotFound, "NotFound", "this server keeps no audit journal to search")
	}
	acct, err := a.diag.Account(r.Context(), r.PathValue("rg"), r.PathValue("account"))
	if err != nil {
		return err
	}
	q, err := auditQuery(r.URL.Query())
	if err != nil {
		return err
	}
	settings, err := a.diag.ListSettings(r.Context(), "")
	if err != nil {
		return err
	}
	only := strings.ToLower(r.URL.Query().Get("hsm"))
	page := auditEventsPage{Value: []audit.Event{}, HSMs: []string{}, Hours: []auditHour{}, Chains: []auditChain{}}
	// An HSM may send its logs to the account under several settings: it
	// is searched once, since the earliest of them.
	since := map[string]time.Time{}
	for _, s := range settings {
		hsm := strings.ToLower(s.HSM)
		if !s.Enabled || !strings.EqualFold(s.StorageAccount, acct.Name) {
			continue
		}
		if t, seen := since[hsm]; !seen || s.Since.Before(t) {
			since[hsm] = s.Since
		}
	}
	var streams []audit.StreamQuery
	for hsm, t := range since {
		// A soft-deleted HSM's name is still its own; a purged one's is
		// free for another HSM, whose setting is its own.
		h, err := a.cp.HSMs.Get(r.Context(), hsm)
		if fault.KindOf(err) == fault.NotFound {
			continue
		}
		if err != nil {
			return err
		}
		page.HSMs = append(page.HSMs, hsm)
		if only == "" || only == hsm {
			id := *h
			if id.ResourceGroup == "" { // the dev HSM's, as its records name it
				id.ResourceGroup = "keyward"
			}
			streams = append(streams, audit.StreamQuery{Stream: audit.StreamOf(hsm), ResourceID: a.hsmID(&id), Since: t})
		}
	}
	slices.Sort(page.HSMs)
	slices.SortFunc(streams, func(x, y audit.StreamQuery) int { return strings.Compare(x.Stream, y.Stream) })
	res, err := a.audit.Search(streams, q)
	if errors.Is(err, audit.ErrSearchBusy) {
		w.Header().Set("Retry-After", "2")
		return fault.Errorf(fault.Unavailable, "ServerBusy", "Other audit searches are running: retry in a moment.")
	}
	if err != nil {
		return err
	}
	page.Value = append(page.Value, res.Events...)
	page.Matched = res.Matched
	for _, h := range res.Hours {
		page.Hours = append(page.Hours, auditHour{Hour: h.Hour.Format(time.RFC3339), Allowed: h.Allowed, Refused: h.Refused, Errors: h.Errors})
	}
	for _, c := range res.Chains {
		page.Chains = append(page.Chains, auditChain{Stream: c.Stream, Records: c.Records, Holds: c.Holds, Problem: c.Problem, Partial: c.Partial})
	}
	if next := q.Skip + len(res.Events); next < res.Matched {
		v := r.URL.Query()
		v.Set("$skip", strconv.Itoa(next))
		page.NextLink = a.managementURL + r.URL.Path + "?" + v.Encode()
	}
	httpx.WriteJSON(w, http.StatusOK, page)
	return nil
}

// auditQuery reads a search's parameters: from and to (RFC 3339; the last
// 24 hours by default), operation, caller, result, key, $top and $skip.
func auditQuery(v url.Values) (audit.Query, error) {
	q := audit.Query{Operation: v.Get("operation"), Caller: v.Get("caller"), Result: v.Get("result"), Key: v.Get("key")}
	var err error
	for _, t := range []struct {
		name string
		into *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if s := v.Get(t.name); s != "" {
			if *t.into, err = time.Parse(time.RFC3339, s); err != nil {
				return q, fault.Invalidf("%s must be a time in RFC 3339 form (2026-12-01T08:00:00Z)", t.name)
			}
		}
	}
	if q.To.IsZero() {
		q.To = time.Now().UTC()
	}
	if q.From.IsZero() {
		q.From = q.To.Add(-24 * time.Hour)
	}
	if q.To.Sub(q.From) > 31*24*time.Hour || q.To.Before(q.From) {
		return q, fault.Invalidf("from and to must span at most 31 days, from first")
	}
	if q.Result != "" {
		for _, o := range strings.Split(q.Result, ",") {
			switch audit.Outcome(o) {
			case audit.Allowed, audit.Refused, audit.Errored, audit.Challenged:
			default:
				return q, fault.Invalidf("result must be allowed, refused, error or challenge, or several with commas between")
			}
		}
	}
	for _, n := range []struct {
		name string
		into *int
		max  int
	}{{"$top", &q.Top, 500}, {"$skip", &q.Skip, audit.MaxSkip}} {
		if s := v.Get(n.name); s != "" {
			if *n.into, err = strconv.Atoi(s); err != nil || *n.into < 0 || *n.into > n.max {
				return q, fault.Invalidf("%s must be a whole number from 0 to %d", n.name, n.max)
			}
		}
	}
	return q, nil
}
