// Package route holds what every surface of the server shares about a
// request: its operation table, matched once, and the Record that the
// pipeline fills as the request goes through and the audit record reads.
//
// A surface (the resource manager, the directory, the token service) lists
// its operations as rows: the name audit records give the operation, the
// method and path pattern that select it, the right it needs and the
// handler. Literal segments match without regard to case, as Azure's paths
// do; {name} binds one segment, read with PathValue.
package route

import (
	"context"
	"net/http"
	"strings"
)

// Op is one operation.
type Op struct {
	// Name is what the audit record calls the operation: for the resource
	// manager, Azure's action (Microsoft.KeyVault/managedHSMs/write).
	Name    string
	Method  string
	Pattern string
	// Action is the right the caller needs on Scope's resource; "" when
	// the handler decides (lists that show what the caller may read).
	Action string
	Scope  func(*http.Request) string
	Handle func(http.ResponseWriter, *http.Request) error
}

// Table is a surface's operations, in order: the first row that matches
// wins, so literal rows come before ones with a parameter in their place.
type Table struct {
	rows []row
}

type row struct {
	op   Op
	segs []string
}

// NewTable returns a table of ops.
func NewTable(ops ...Op) *Table {
	t := &Table{}
	for _, op := range ops {
		t.rows = append(t.rows, row{op: op, segs: split(op.Pattern)})
	}
	return t
}

// Ops lists the table's operations in order.
func (t *Table) Ops() []Op {
	out := make([]Op, len(t.rows))
	for i, r := range t.rows {
		out[i] = r.op
	}
	return out
}

func split(path string) []string {
	path = strings.Trim(path, "/")
	if path == "" {
		return nil
	}
	return strings.Split(path, "/")
}

// Param is a path parameter a pattern bound.
type Param struct{ Name, Value string }

// Match finds the operation for method and path. The path is cleaned of
// repeated and trailing slashes by the caller.
func (t *Table) Match(method, path string) (*Op, []Param) {
	segs := split(path)
	for i := range t.rows {
		r := &t.rows[i]
		if r.op.Method != method || len(r.segs) != len(segs) {
			continue
		}
		params, ok := bind(r.segs, segs)
		if ok {
			return &r.op, params
		}
	}
	return nil, nil
}

func bind(pattern, segs []string) ([]Param, bool) {
	var params []Param
	for j, p := range pattern {
		if len(p) > 2 && p[0] == '{' && p[len(p)-1] == '}' {
			if segs[j] == "" {
				return nil, false
			}
			params = append(params, Param{p[1 : len(p)-1], segs[j]})
			continue
		}
		if !strings.EqualFold(p, segs[j]) {
			return nil, false
		}
	}
	return params, true
}

// Bind returns a shallow copy of r whose PathValue answers params; r
// itself is not changed.
func Bind(r *http.Request, params []Param) *http.Request {
	if len(params) == 0 {
		return r
	}
	r = r.WithContext(r.Context())
	for _, p := range params {
		r.SetPathValue(p.Name, p.Value)
	}
	return r
}

// Record is what the pipeline learns about a request, for its audit
// record: each stage fills what it knows, the outermost writes it.
type Record struct {
	// Operation names the matched operation ("" if none matched).
	Operation string
	// Action and Scope are the right checked and where.
	Action, Scope string
	// Key is the key a data-plane path names.
	Key string
	// Decision is the authorization decision, once made.
	Decision *Decision
	// SignInSubject is the client id or user name a token request was for.
	SignInSubject string
	// Challenge is set when the request carried no access token: the 401
	// that begins every SDK call, not a refusal.
	Challenge bool
}

// Decision is the outcome of an authorization: allowed or not, and the
// role assignment (and its role) that allowed it.
type Decision struct {
	Allowed              bool
	AssignmentID, RoleID string
}

type recordKey struct{}

// WithRecord returns a context carrying rec.
func WithRecord(ctx context.Context, rec *Record) context.Context {
	return context.WithValue(ctx, recordKey{}, rec)
}

// RecordOf returns the request's record; outside a pipeline, a throwaway
// one, so stages need not check.
func RecordOf(ctx context.Context) *Record {
	if rec, ok := ctx.Value(recordKey{}).(*Record); ok {
		return rec
	}
	return &Record{}
}
