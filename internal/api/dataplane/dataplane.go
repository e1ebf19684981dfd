// Package dataplane serves the Managed HSM data-plane REST API of one HSM:
// keys, cryptographic operations and random bytes.
//
// Requests arrive authenticated (the server's middleware put the caller in
// the context). Here they are matched against one operation table, which
// names for each operation its data action and scope; the authorizer is
// asked before the handler runs. Handlers decode the wire JSON, call the
// keys service and encode the answer, nothing more.
package dataplane

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/api/route"
	"github.com/keyward/keyward/internal/attestation"
	"github.com/keyward/keyward/internal/backup"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/keys"
	"github.com/keyward/keyward/internal/rbac"
)

// apiVersions are the api-version values real clients send; others are
// refused.
var apiVersions = map[string]bool{
	"7.0": true, "7.1": true, "7.2": true, "7.3": true, "7.4": true, "7.5": true, "7.6": true,
	"7.3-preview": true, "7.4-preview.1": true, "7.5-preview.1": true, "7.6-preview.2": true,
	"2025-06-01": true, "2025-07-01": true,
}

// SupportedAPIVersion reports whether v is an api-version real clients
// send, which the data plane accepts.
func SupportedAPIVersion(v string) bool { return apiVersions[v] }

// API serves the data plane.
type API struct {
	keys    *keys.Service
	rbac    *rbac.Service
	hsms    *domain.Registry
	backups *backup.Service
	release Release
	hostHSM HostHSM
	log     *slog.Logger
	ops     []operation
}

// HostHSM names the HSM whose data plane a host (with its port) serves,
// by whichever of its addresses: its own name under the DNS suffix, the
// bare listen address of the dev HSM, Azure's name in drop-in use.
type HostHSM func(hostport string) (hsm string, ok bool)

// Release is what secure key release needs beside the keys: a verifier of
// attestation tokens, and the signer of what is released.
type Release struct {
	Verifier *attestation.Verifier
	Signer   *ReleaseSigner
}

// New returns the data-plane API; r both decides requests and serves the
// role management operations, hsms serves the security domain, b the full
// backups, rel key release; hostHSM reads the HSM a key id names.
func New(k *keys.Service, r *rbac.Service, hsms *domain.Registry, b *backup.Service, rel Release, hostHSM HostHSM, log *slog.Logger) *API {
	return &API{keys: k, rbac: r, hsms: hsms, backups: b, release: rel, hostHSM: hostHSM, log: log, ops: allOperations()}
}

// call is one matched request.
type call struct {
	w       http.ResponseWriter
	r       *http.Request
	ctx     context.Context
	hsm     *domain.HSM
	name    string
	version string
	id      string // a security-domain download request's id
	// scope is the RBAC scope a role-assignment path names ("/" otherwise).
	scope string
	// base is the scheme and host the client used, for ids and links.
	base string
}

// Match is a request matched to its operation, once: the front door
// matches before it authenticates (so a refused request is still recorded
// under its operation) and Serve runs what was matched.
type Match struct {
	op    *operation
	c     *call
	scope string // the RBAC scope a role-assignment path names
	bad   error  // a scope that does not parse
}

// Match finds the operation of a request for method and path (cleaned by
// the front door), or returns nil.
func (a *API) Match(method, path string) *Match {
	scope := "/"
	var bad error
	if sc, rest, ok := splitScope(path); ok {
		path = rest
		if scope, bad = rbac.CleanScope(sc); bad != nil {
			scope = "/"
		}
	}
	op, c := a.match(method, path)
	if op == nil {
		return nil
	}
	c.scope = scope
	return &Match{op: op, c: c, scope: scope, bad: bad}
}

// Describe fills rec with what m names: the operation, its action, the
// key and the scope.
func (m *Match) Describe(rec *route.Record) {
	rec.Operation, rec.Action, rec.Key, rec.Scope = m.op.name, string(m.op.action), m.c.name, m.op.scope(m.c)
}

// Serve runs the matched operation m of an authenticated request addressed
// to HSM h, whose configured URI (no trailing slash) is base: key ids and
// links are built from it, never from the request's Host header.
func (a *API) Serve(w http.ResponseWriter, r *http.Request, h *domain.HSM, base string, m *Match) {
	if err := a.serve(w, r, h, base, m); err != nil {
		httpx.WriteError(w, r, a.log, err)
	}
}

func (a *API) serve(w http.ResponseWriter, r *http.Request, h *domain.HSM, base string, m *Match) error {
	v := r.URL.Query().Get("api-version")
	if v == "" {
		return fault.Invalidf("the api-version query parameter is required")
	}
	if !SupportedAPIVersion(v) {
		return fault.Invalidf("the api-version '%s' is not supported; use one of 7.2 to 7.6, 2025-06-01 or 2025-07-01", v)
	}
	if m.bad != nil {
		return m.bad
	}
	op, c := m.op, m.c
	c.w, c.hsm, c.r, c.ctx, c.base = w, h, r, r.Context(), base
	resource := op.scope(c)
	rec := route.RecordOf(r.Context())
	caller, _ := identity.FromContext(r.Context())
	req := rbac.Request{HSM: h, Caller: caller, Action: op.action, Scope: resource}
	d, err := a.rbac.Decide(r.Context(), req)
	if err != nil {
		return err
	}
	rec.Decision = &route.Decision{Allowed: d.Allowed, AssignmentID: d.AssignmentID, RoleID: d.RoleID}
	if !d.Allowed {
		return rbac.Denied(req)
	}
	if h.State != domain.StateActive && !op.beforeActivation {
		return fault.Errorf(fault.Forbidden, "HSMNotActivated", "Operation is not allowed: the HSM is not activated (state %s). Download its security domain to activate it, or upload one to recover it.", h.State)
	}
	return op.handle(a, c)
}

// match finds the operation for the request. Literal segments match
// case-insensitively (older clients send "wrapKey"); the first matching
// entry of the table wins, so literal routes come before wildcards.
func (a *API) match(method, path string) (*operation, *call) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for i := range a.ops {
		op := &a.ops[i]
		if op.method != method || len(op.path) != len(segs) {
			continue
		}
		c := &call{}
		ok := true
		for j, p := range op.path {
			switch p {
			case "{name}":
				c.name = segs[j]
			case "{version}":
				c.version = segs[j]
			case "{id}":
				c.id = segs[j]
			default:
				ok = ok && strings.EqualFold(p, segs[j])
			}
		}
		if ok {
			return op, c
		}
	}
	return nil, nil
}

// kid is the versioned key id; Azure SDKs parse it as host/keys/name/version.
func (c *call) kid(name, version string) string {
	return c.base + "/keys/" + name + "/" + version
}

// nextLink returns the absolute link to the page after cursor, carrying
// the api-version as Azure's pagers require.
func (c *call) nextLink(cursor string) *string {
	if cursor == "" {
		return nil
	}
	q := url.Values{}
	q.Set("api-version", c.r.URL.Query().Get("api-version"))
	q.Set("$skiptoken", base64.RawURLEncoding.EncodeToString([]byte(cursor)))
	if m := c.r.URL.Query().Get("maxresults"); m != "" {
		q.Set("maxresults", m)
	}
	s := c.base + c.r.URL.Path + "?" + q.Encode()
	return &s
}

// page reads $skiptoken and maxresults.
func (c *call) page() (cursor string, max int, err error) {
	q := c.r.URL.Query()
	if t := q.Get("$skiptoken"); t != "" {
		b, err := base64.RawURLEncoding.DecodeString(t)
		if err != nil {
			return "", 0, fault.Invalidf("the $skiptoken is not valid")
		}
		cursor = string(b)
	}
	if m := q.Get("maxresults"); m != "" {
		if max, err = strconv.Atoi(m); err != nil || max < 1 || max > keys.MaxPageSize {
			return "", 0, fault.Invalidf("maxresults must be an integer between 1 and %d", keys.MaxPageSize)
		}
	}
	return cursor, max, nil
}

func (c *call) readJSON(v any) error { return httpx.ReadJSON(c.w, c.r, v) }

func (c *call) ok(v any) error { return c.status(http.StatusOK, v) }

func (c *call) status(st int, v any) error {
	httpx.WriteJSON(c.w, st, v)
	return nil
}

func (c *call) bundle(v *keys.Version) keyBundle {
	b := keyBundle{Key: publicOut(c.kid(v.Name, v.Version), v), Attributes: attributesOut(v), Tags: v.Tags, ReleasePolicy: policyOut(v.ReleasePolicy)}
	if !v.Deleted.IsZero() {
		b.deletedFields = c.deleted(v)
	}
	return b
}

func (c *call) deleted(v *keys.Version) deletedFields {
	return deletedFields{RecoveryID: c.base + "/deletedkeys/" + v.Name, DeletedDate: unixPtr(v.Deleted),
		ScheduledPurgeDate: unixPtr(v.ScheduledPurge)}
}
