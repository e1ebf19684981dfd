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
	Account, From, To, Operation, Caller, Result, Key string
}

type auditData struct {
	Accounts []string
	Search   auditSearch
	Events   []auditEvent
	Matched  int
	Skip     int
	Prev     string // query strings of the neighbouring pages
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

const formTime = "2006-01-02T15:04"

func (c *Console) audit(w http.ResponseWriter, r *http.Request) {
	a := c.apiFor(r)
	q := r.URL.Query()
	var d auditData
	var accts graphList[struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}]
	if err := a.arm("GET", "/subscriptions/"+c.cfg.Subscription+"/providers/Microsoft.Storage/storageAccounts?"+storageVersion, nil, &accts); err != nil {
		d.Problems = append(d.Problems, "storage accounts: "+err.Error())
	}
	ids := map[string]string{}
	for _, x := range accts.Value {
		d.Accounts = append(d.Accounts, x.Name)
		ids[x.Name] = x.ID
	}
	s := auditSearch{Account: q.Get("account"), From: q.Get("from"), To: q.Get("to"), Operation: q.Get("operation"),
		Caller: q.Get("caller"), Result: q.Get("result"), Key: q.Get("key")}
	if s.Account == "" && len(d.Accounts) > 0 {
		s.Account = d.Accounts[0]
	}
	now := time.Now().UTC()
	from, to := now.Add(-24*time.Hour), now
	if t, err := time.Parse(formTime, s.From); err == nil {
		from = t
	}
	if t, err := time.Parse(formTime, s.To); err == nil {
		to = t
	}
	s.From, s.To = from.Format(formTime), to.Format(formTime)
	d.Search = s
	d.Skip, _ = strconv.Atoi(q.Get("skip"))
	d.Skip = max(0, min(d.Skip, 1<<20))
	id := ids[s.Account]
	if id == "" {
		if len(d.Accounts) == 0 {
			d.Problems = append(d.Problems, "You may read no storage account, so no audit logs.")
		}
		c.render(w, r, http.StatusOK, "audit", page{Title: "Audit", Nav: "audit", Data: d})
		return
	}
	const perPage = 50
	v := url.Values{"api-version": {"2026-12-01"}, "from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)},
		"$top": {strconv.Itoa(perPage)}, "$skip": {strconv.Itoa(d.Skip)}}
	for k, val := range map[string]string{"operation": s.Operation, "caller": s.Caller, "result": s.Result, "key": s.Key} {
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
		d.Problems = append(d.Problems, "audit events: "+err.Error())
	}
	d.Events, d.Matched, d.HSMs, d.Chains = res.Value, res.Matched, res.HSMs, res.Chains
	d.Chart = hourChart(res.Hours, from, to)
	pageQuery := func(skip int) string {
		pv := url.Values{"account": {s.Account}, "from": {s.From}, "to": {s.To}, "operation": {s.Operation}, "caller": {s.Caller},
			"result": {s.Result}, "key": {s.Key}, "skip": {strconv.Itoa(skip)}}
		return pv.Encode()
	}
	if d.Skip > 0 {
		d.Prev = pageQuery(max(0, d.Skip-perPage))
	}
	if d.Skip+len(d.Events) < d.Matched {
		d.Next = pageQuery(d.Skip + len(d.Events))
	}
	c.render(w, r, http.StatusOK, "audit", pageOf("Audit", "audit", d))
}

func pageOf(title, nav string, data any) page { return page{Title: title, Nav: nav, Data: data} }
