package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Audit: a search over the AuditEvent records that a storage account the
// user may read receives (the right the story gives auditors), newest
// first a page at a time, a chart of requests per hour by outcome, and
// whether each journal's hash chain holds.

const storageVersion = "api-version=2023-01-01"

// auditEvent is the part of a record the table shows.
type auditEvent struct {
	Time           string `json:"time"`
	ResourceID     string `json:"resourceId"`
	OperationName  string `json:"operationName"`
	HTTPStatusCode int    `json:"httpStatusCode"`
	CallerIP       string `json:"callerIpAddress"`
	Identity       *struct {
		Claim struct {
			UPN   string `json:"upn"`
			AppID string `json:"appid"`
			OID   string `json:"oid"`
		} `json:"claim"`
	} `json:"identity"`
	Properties struct {
		Challenge     bool   `json:"challenge"`
		Key           string `json:"id"`
		Authorization *struct {
			Decision string `json:"decision"`
		} `json:"authorization"`
	} `json:"properties"`
	Stream string `json:"stream"`
}

func (e auditEvent) Caller() string {
	if e.Identity == nil {
		return ""
	}
	c := e.Identity.Claim
	switch {
	case c.UPN != "":
		return c.UPN
	case c.AppID != "":
		return c.AppID
	}
	return c.OID
}

func (e auditEvent) Outcome() string {
	switch {
	case e.Properties.Challenge:
		return "challenge"
	case e.HTTPStatusCode < 400:
		return "allowed"
	case e.HTTPStatusCode == 401 || e.HTTPStatusCode == 403:
		return "refused"
	}
	return "error"
}

// KeyName is the key a key operation named ("" for other operations,
// whose id property names other things).
func (e auditEvent) KeyName() string {
	if !strings.HasPrefix(e.OperationName, "Key") {
		return ""
	}
	k := e.Properties.Key
	if i := strings.Index(k, "/keys/"); i >= 0 {
		return k[i+len("/keys/"):]
	}
	return k
}

// When is the record's time to the second.
func (e auditEvent) When() string {
	t, err := time.Parse(time.RFC3339Nano, e.Time)
	if err != nil {
		return e.Time
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

type auditSearch struct {
	Account, HSM, From, To, Operation, Caller, Result, Key string
}

type auditData struct {
	Accounts []string
	Search   auditSearch
	Events   []auditRow
	Matched  int
	Skip     int
	Prev     string // the neighbouring pages' URLs
	Next     string
	HSMs     []string
	Chains   []struct {
		Stream  string `json:"stream"`
		Records int    `json:"records"`
		Holds   bool   `json:"holds"`
		Problem string `json:"problem"`
		Partial bool   `json:"partial"`
	}
	Chart    chart
	Problems []string
}

// auditRow is a record as the table shows it.
type auditRow struct {
	auditEvent
	Who string // the caller, named
}

const formTime = "2006-01-02T15:04"

// resultChoices are the result filter's options; "" hides challenges.
var resultChoices = map[string]string{"": "allowed,refused,error", "all": "", "allowed": "allowed", "refused": "refused",
	"error": "error", "challenge": "challenge"}

func (c *Console) audit(w http.ResponseWriter, r *http.Request) {
	a := c.apiFor(r)
	q := r.URL.Query()
	var d auditData
	var accts graphList[struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}]
	if err := a.arm("GET", "/subscriptions/"+c.cfg.Subscription+"/providers/Microsoft.Storage/storageAccounts?"+storageVersion, nil, &accts); err != nil {
		d.Problems = append(d.Problems, describe("the storage accounts", err))
	}
	ids := map[string]string{}
	for _, x := range accts.Value {
		d.Accounts = append(d.Accounts, x.Name)
		ids[x.Name] = x.ID
	}
	s := auditSearch{Account: q.Get("account"), HSM: q.Get("hsm"), From: q.Get("from"), To: q.Get("to"), Operation: q.Get("operation"),
		Caller: q.Get("caller"), Result: q.Get("result"), Key: q.Get("key")}
	results, ok := resultChoices[s.Result]
	if !ok {
		s.Result, results = "", resultChoices[""]
	}
	if s.Account == "" && len(d.Accounts) > 0 {
		s.Account = d.Accounts[0]
	}
	// The search runs to now, or to the end of the minute asked for; the
	// pages after the first keep the first's end (until), so that records
	// arriving meanwhile do not shift them.
	now := time.Now().UTC()
	from, to := now.Add(-24*time.Hour), now
	if t, err := time.Parse(formTime, s.To); err == nil {
		to = t.Add(time.Minute - time.Nanosecond)
	}
	if t, err := time.Parse(time.RFC3339Nano, q.Get("until")); err == nil && t.Before(to) {
		to = t
	}
	if t, err := time.Parse(formTime, s.From); err == nil {
		from = t
	}
	s.From = from.Format(formTime)
	if s.To != "" {
		s.To = to.Format(formTime)
	}
	d.Search = s
	d.Skip, _ = strconv.Atoi(q.Get("skip"))
	d.Skip = max(0, min(d.Skip, 10000))
	id := ids[s.Account]
	if id == "" {
		if len(d.Accounts) == 0 {
			d.Problems = append(d.Problems, "You may read no storage account that receives audit logs, so there are no logs to show. "+
				"(The story's auditors are Reader on the account their HSM's diagnostic setting sends logs to.)")
		}
		c.render(w, r, http.StatusOK, "audit", pageOf("Audit", "audit", d))
		return
	}
	const perPage = 50
	v := url.Values{"api-version": {"2026-12-01"}, "from": {from.Format(time.RFC3339Nano)}, "to": {to.Format(time.RFC3339Nano)},
		"$top": {strconv.Itoa(perPage)}, "$skip": {strconv.Itoa(d.Skip)}}
	for k, val := range map[string]string{"hsm": s.HSM, "operation": s.Operation, "caller": s.Caller, "result": results, "key": s.Key} {
		if val != "" {
			v.Set(k, val)
		}
	}
	var res struct {
		Value   []auditEvent `json:"value"`
		Matched int          `json:"matched"`
		HSMs    []string     `json:"hsms"`
		Hours   []hourCount  `json:"hours"`
		Chains  []struct {
			Stream  string `json:"stream"`
			Records int    `json:"records"`
			Holds   bool   `json:"holds"`
			Problem string `json:"problem"`
			Partial bool   `json:"partial"`
		} `json:"chains"`
	}
	if err := a.arm("GET", armScope(id)+"/providers/Keyward.Insights/auditEvents?"+v.Encode(), nil, &res); err != nil {
		d.Problems = append(d.Problems, describe("the audit records", err))
	}
	var oids []string
	for _, e := range res.Value {
		if e.Identity != nil && e.Identity.Claim.UPN == "" && e.Identity.Claim.OID != "" {
			oids = append(oids, e.Identity.Claim.OID)
		}
	}
	names := a.names(oids)
	for _, e := range res.Value {
		who := e.Caller()
		if e.Identity != nil && e.Identity.Claim.UPN == "" && e.Identity.Claim.OID != "" {
			who = names.of(e.Identity.Claim.OID)
		}
		d.Events = append(d.Events, auditRow{auditEvent: e, Who: who})
	}
	d.Matched, d.HSMs, d.Chains = res.Matched, res.HSMs, res.Chains
	d.Chart = hourChart(res.Hours, from, to)
	pageURL := func(skip int) string {
		pv := url.Values{"account": {s.Account}, "hsm": {s.HSM}, "from": {s.From}, "to": {s.To}, "until": {to.Format(time.RFC3339Nano)},
			"operation": {s.Operation}, "caller": {s.Caller}, "result": {s.Result}, "key": {s.Key}, "skip": {strconv.Itoa(skip)}}
		return c.base + "audit?" + pv.Encode()
	}
	if d.Skip > 0 {
		d.Prev = pageURL(max(0, d.Skip-perPage))
	}
	if d.Skip+len(d.Events) < d.Matched {
		d.Next = pageURL(d.Skip + len(d.Events))
	}
	c.render(w, r, http.StatusOK, "audit", pageOf("Audit", "audit", d))
}

func pageOf(title, nav string, data any) page { return page{Title: title, Nav: nav, Data: data} }
