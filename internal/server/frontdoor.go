package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/api/arm"
	"github.com/keyward/keyward/internal/api/dataplane"
	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/api/route"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/store"
)

// The front door. Every request goes one way through stages composed once
// (frontDoor):
//
//	recorded  the audit record, written after the request by the
//	          outermost stage, whatever happened inside (panics too)
//	ready     503 while the audit log cannot keep records
//	dispatch  route (host and path → surface, token audience, HSM) and
//	          match the surface's operation, once; authenticate; serve
//
// The request is never changed in place: a stage that needs a cleaned path
// or a caller passes a derived request on.

// surface is one face of the server.
type surface int

const (
	surfaceNone      surface = iota // nothing answers: 404
	surfaceDataPlane                // an HSM's data plane, by host
	surfaceARM                      // the resource manager
	surfaceGraph                    // the directory
	surfaceOpen                     // token service and metadata: no token needed
	surfaceConsole                  // the web console: its own session cookie
)

// String names a surface in metrics.
func (s surface) String() string {
	switch s {
	case surfaceDataPlane:
		return "dataplane"
	case surfaceARM:
		return "arm"
	case surfaceGraph:
		return "graph"
	case surfaceOpen:
		return "identity"
	case surfaceConsole:
		return "console"
	}
	return "none"
}

// Azure's own host names, served with Config.AzureNames.
const (
	AzureLoginHost      = "login.microsoftonline.com"
	AzureManagementHost = "management.azure.com"
	AzureGraphHost      = "graph.microsoft.com"
	AzureHSMSuffix      = "managedhsm.azure.net"
)

// faceURLs are the URLs the server's faces are reached at, each ending in
// "/": all the listen (or public) URL by default, Azure's hosts with
// Config.AzureNames.
type faceURLs struct{ authority, management, graph string }

// of returns the URL of a surface other than the data plane.
func (u faceURLs) of(s surface) string {
	switch s {
	case surfaceARM:
		return u.management
	case surfaceGraph:
		return u.graph
	}
	return u.authority
}

// destination is where the front door sends a request.
type destination struct {
	surface  surface
	audience string // the token audience the surface accepts ("" for open)
	hsm      string // the HSM the host names (data plane)
	bare     bool   // the dev HSM at the bare listen address
}

// dataPlaneRoots are the first path segments of the HSM data plane.
func isDataPlaneRoot(first string) bool {
	switch strings.ToLower(first) {
	case "keys", "deletedkeys", "rng", "providers", "securitydomain", "backup", "restore", "prebackup", "prerestore", "settings":
		return true
	}
	return false
}

// hostRoute is one row of the routing table: whether a request belongs to
// it (from its host, lower-cased and without port or trailing dot, and its
// path's first segment) and where it then goes.
type hostRoute struct {
	name  string
	match func(s *Server, host, first, path string) (destination, bool)
}

// routeTable is the routing table, in order: the first row that matches
// wins. New faces (PIM, Azure's own host names) are new rows.
func routeTable() []hostRoute {
	return []hostRoute{
		{"the web console, at /console on the token service's host", func(s *Server, host, first, _ string) (destination, bool) {
			// Any host but an HSM's: the console sends a browser on to
			// its one origin, where its cookies live.
			ok := first == "console" && host != s.cfg.DNSSuffix && !strings.HasSuffix(host, "."+s.cfg.DNSSuffix)
			return destination{surface: surfaceConsole}, ok
		}},
		{"Azure's token service at login.microsoftonline.com", func(s *Server, host, _, _ string) (destination, bool) {
			return destination{surface: surfaceOpen}, s.cfg.AzureNames && host == AzureLoginHost
		}},
		{"Azure's resource manager at management.azure.com", func(s *Server, host, first, _ string) (destination, bool) {
			if !s.cfg.AzureNames || host != AzureManagementHost {
				return destination{}, false
			}
			if first == "metadata" { // /metadata/endpoints: the cloud's metadata, open
				return destination{surface: surfaceOpen}, true
			}
			return destination{surface: surfaceARM, audience: ARMResource}, true
		}},
		{"Azure's directory at graph.microsoft.com", func(s *Server, host, _, _ string) (destination, bool) {
			return destination{surface: surfaceGraph, audience: GraphResource}, s.cfg.AzureNames && host == AzureGraphHost
		}},
		{"an HSM's data plane at {name}.{suffix}", func(s *Server, host, _, _ string) (destination, bool) {
			label, under := strings.CutSuffix(host, "."+s.cfg.DNSSuffix)
			if !under {
				return destination{}, false
			}
			if label == "" || strings.Contains(label, ".") {
				return destination{}, true // {a}.{b}.{suffix} is no HSM's: 404
			}
			return destination{surface: surfaceDataPlane, audience: ManagedHSMResource, hsm: label}, true
		}},
		{"the resource manager's tenant-wide PIM collections", func(_ *Server, _, first, path string) (destination, bool) {
			// /providers/Microsoft.Authorization/roleEligibilitySchedules?$filter=asTarget()
			// and the like: what a user may activate anywhere. (The data
			// plane's /providers/Microsoft.Authorization/roleAssignments at
			// the bare address is not one of them.)
			ok := strings.EqualFold(first, "providers") && isTenantPIMPath(path)
			return destination{surface: surfaceARM, audience: ARMResource}, ok
		}},
		{"the dev HSM at the bare listen address", func(s *Server, host, first, path string) (destination, bool) {
			ok := s.cfg.Dev && host != s.cfg.DNSSuffix && s.bareHost(host) && (isDataPlaneRoot(first) ||
				!strings.EqualFold(first, "subscriptions") && strings.Contains(strings.ToLower(path), "/providers/microsoft.authorization/"))
			return destination{surface: surfaceDataPlane, audience: ManagedHSMResource, hsm: DevHSMName, bare: true}, ok
		}},
		{"the resource manager", func(_ *Server, _, first, _ string) (destination, bool) {
			return destination{surface: surfaceARM, audience: ARMResource}, strings.EqualFold(first, "subscriptions")
		}},
		{"the directory", func(_ *Server, _, first, _ string) (destination, bool) {
			// v1.0, and beta for what Graph serves only there (PIM alerts).
			return destination{surface: surfaceGraph, audience: GraphResource}, first == "v1.0" || first == "beta"
		}},
		{"the token service and metadata", func(*Server, string, string, string) (destination, bool) {
			return destination{surface: surfaceOpen}, true
		}},
	}
}

// route finds a request's destination in the routing table.
func (s *Server) route(hostport, path string) destination {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	// A fully qualified name's trailing dot names the same host.
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	first, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	for _, r := range s.routes {
		if d, ok := r.match(s, host, first, path); ok {
			return d
		}
	}
	return destination{}
}

// hostHSM names the HSM whose data plane hostport serves, as the routing
// table reads it: a key id may name its HSM by any of its addresses.
func (s *Server) hostHSM(hostport string) (string, bool) {
	d := s.route(hostport, "/keys")
	return d.hsm, d.surface == surfaceDataPlane && d.hsm != ""
}

// isTenantPIMPath tells whether path is a tenant-wide collection of the
// resource manager's PIM: role eligibility and assignment schedules and
// their requests and instances, policies, and approvals.
func isTenantPIMPath(path string) bool {
	rest, ok := strings.CutPrefix(strings.ToLower(path), "/providers/microsoft.authorization/")
	if !ok {
		return false
	}
	for _, p := range []string{"roleeligibilityschedule", "roleassignmentschedule", "rolemanagementpolic", "roleassignmentapprovals"} {
		if strings.HasPrefix(rest, p) {
			return true
		}
	}
	return false
}

// bareHost tells whether host is one of the names the bare listen address
// is reached by: the listen host, localhost or a loopback address.
func (s *Server) bareHost(host string) bool {
	if host == "localhost" || host == s.listenHost || host == s.publicHost && s.publicHost != "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// frontDoor builds the routing table and composes the stages, once.
func (s *Server) frontDoor() http.Handler {
	s.routes = routeTable()
	return s.probes(s.recorded(s.ready(http.HandlerFunc(s.dispatch))))
}

// probes answers a load balancer's health checks before anything else:
// GET /healthz (the process serves) and GET /readyz (it can serve requests:
// the store answers, the audit log keeps records and the seal seals; 503
// with the reason otherwise). They need no token, cost a store read at most, change
// nothing and carry no data, so they leave no audit record: a balancer
// polling every few seconds would otherwise fill the log.
func (s *Server) probes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || (r.URL.Path != "/healthz" && r.URL.Path != "/readyz") {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if r.URL.Path == "/healthz" {
			httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
			return
		}
		status, body := s.readiness.check(r.Context(), s.readyChecks)
		if status != http.StatusOK {
			w.Header().Set("Retry-After", "5")
		}
		httpx.WriteJSON(w, status, body)
	})
}

// readinessEvery is how often /readyz checks for real: however many
// probes come (it needs no token), the store, the audit log and the seal
// are asked at most once a second.
const readinessEvery = time.Second

// readiness keeps the last readiness verdict, shared by every probe.
type readiness struct {
	mu     sync.Mutex
	at     time.Time
	status int
	body   map[string]any
}

// check returns the verdict, computing it with run when the last is older
// than readinessEvery. Probes arriving meanwhile wait for it.
func (rd *readiness) check(ctx context.Context, run func(context.Context) (int, map[string]any)) (int, map[string]any) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if rd.body == nil || time.Since(rd.at) >= readinessEvery {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		rd.status, rd.body = run(ctx)
		rd.at = time.Now()
	}
	return rd.status, rd.body
}

// readyChecks asks the store, the audit log and the seal.
func (s *Server) readyChecks(ctx context.Context) (int, map[string]any) {
	checks := map[string]string{"store": "ok", "audit": "ok", "seal": "ok"}
	ready := true
	if err := s.store.View(ctx, func(tx store.Tx) error { _, err := tx.GetNode(ctx); return err }); err != nil {
		checks["store"], ready = "unreachable", false
		s.log.Warn("not ready: the store does not answer", "err", err)
	}
	if err := s.audit.Ready(); err != nil {
		checks["audit"], ready = "cannot keep records", false
	}
	// A PKCS#11 token can go away (its session, its device); sealing a
	// few bytes shows it is there.
	if _, err := s.seal.Seal(ctx, []byte("ready"), []byte("keyward readiness probe")); err != nil {
		checks["seal"], ready = "cannot seal", false
		s.log.Warn("not ready: the seal does not seal", "err", err)
	}
	if !ready {
		return http.StatusServiceUnavailable, map[string]any{"status": "not ready", "checks": checks}
	}
	return http.StatusOK, map[string]any{"status": "ready", "checks": checks}
}

// ServeHTTP serves a request through the front door.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// requestInfo is what the stages learn about a request, for its record.
type requestInfo struct {
	rec     route.Record
	surface string // the surface the request reached, for metrics
	caller  *identity.Caller
	hsm     string // the HSM addressed, if it exists
	base    string // the configured URL of the surface the request reached
}

type requestInfoKey struct{}

func infoOf(r *http.Request) *requestInfo {
	info, _ := r.Context().Value(requestInfoKey{}).(*requestInfo)
	return info
}

// recorded is the outermost stage: it sets the response headers every
// answer carries, derives the request the others see (a clean path, the
// record in its context) and writes the audit record when the request
// ends, whatever happened.
func (s *Server) recorded(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h := sw.Header()
		h.Set("x-ms-request-id", uuid.NewString())
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Strict-Transport-Security", "max-age=31536000;includeSubDomains")
		info := &requestInfo{}
		ctx := route.WithRecord(context.WithValue(r.Context(), requestInfoKey{}, info), &info.rec)
		req := withPath(r.WithContext(ctx), cleanPath(r.URL.Path))
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("panic serving request", "method", req.Method, "path", req.URL.Path, "panic", p)
				httpx.WriteError(sw, req, s.log, fmt.Errorf("panic: %v", p))
			}
			if !s.cfg.NoAuditForBenchmarks {
				s.record(req, info, sw.status, start)
			}
			s.metrics.observe(info.surface, info.rec.Operation, sw.status, time.Since(start))
			// At debug level: the audit log records every request, and a
			// second line per request at info level costs about 4 % of a
			// P-256 signature.
			s.log.Debug("request", "method", req.Method, "host", req.Host, "path", req.URL.Path, "status", sw.status,
				"ms", time.Since(start).Milliseconds(), "op", info.rec.Operation)
		}()
		next.ServeHTTP(sw, req)
	})
}

// ready refuses requests while the audit log cannot keep their records:
// nothing runs unlogged.
func (s *Server) ready(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.audit.Ready(); err != nil {
			s.log.Error("refusing request: the audit log cannot keep records", "err", err)
			w.Header().Set("Retry-After", "5")
			httpx.WriteError(w, r, s.log, fault.Errorf(fault.Unavailable, "ServiceUnavailable",
				"The service cannot record this request in its audit log right now; it was not performed. Retry later."))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// dispatch routes a request to its surface, matches its operation once,
// authenticates the caller for the surface's audience and serves it.
func (s *Server) dispatch(w http.ResponseWriter, r *http.Request) {
	info := infoOf(r)
	d := s.route(r.Host, r.URL.Path)
	info.surface = d.surface.String()
	switch d.surface {
	case surfaceDataPlane:
		s.serveDataPlane(w, r, info, d)
	case surfaceARM:
		ar := withPath(r, arm.Canonicalize(r.URL.Path))
		op, params := s.arm.Match(ar.Method, ar.URL.Path)
		s.serveTable(w, ar, info, d, op, params, s.arm.Serve)
	case surfaceGraph:
		op, params := s.graph.Match(r.Method, r.URL.Path)
		s.serveTable(w, r, info, d, op, params, s.graph.Serve)
	case surfaceOpen:
		op, params := s.open.Match(r.Method, r.URL.Path)
		s.serveTable(w, r, info, d, op, params, func(w http.ResponseWriter, r *http.Request, op *route.Op) {
			if err := op.Handle(w, r); err != nil {
				httpx.WriteError(w, r, s.log, err)
			}
		})
	case surfaceConsole:
		info.base = strings.TrimSuffix(s.urls.authority, "/")
		s.console.ServeHTTP(w, r)
	default:
		s.notFound(w, r)
	}
}

// serveTable serves a request of a surface with an operation table: the
// operation is named in the record even when the caller is refused.
func (s *Server) serveTable(w http.ResponseWriter, r *http.Request, info *requestInfo, d destination, op *route.Op, params []route.Param,
	serve func(http.ResponseWriter, *http.Request, *route.Op)) {
	info.base = strings.TrimSuffix(s.urls.of(d.surface), "/")
	if op != nil {
		info.rec.Operation = op.Name
	}
	ar := r
	if d.audience != "" {
		if ar = s.authenticate(w, r, d.audience); ar == nil {
			return
		}
	}
	if op == nil {
		s.notFound(w, ar)
		return
	}
	serve(w, route.Bind(ar, params), op)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	httpx.WriteError(w, r, s.log, fault.Errorf(fault.NotFound, "NotFound", "no operation matches %s %s", r.Method, r.URL.Path))
}

// serveDataPlane serves a request addressed to an HSM. Only an HSM that
// exists gets the request's audit record in its own stream; a name that is
// no HSM's is answered 404 and recorded in the tenant's stream, so no
// outside request can open a journal stream. Key ids and links are built
// from the HSM's configured URI, never from the Host header.
func (s *Server) serveDataPlane(w http.ResponseWriter, r *http.Request, info *requestInfo, d destination) {
	h, err := s.registry.Get(r.Context(), d.hsm)
	var m *dataplane.Match
	if err == nil {
		info.hsm = h.Name
		info.base = s.HSMURI(h.Name)
		if d.bare {
			info.base = strings.TrimSuffix(s.base, "/")
		}
		if m = s.data.Match(r.Method, r.URL.Path); m != nil {
			m.Describe(&info.rec) // named even if authentication fails
		}
	} else {
		info.rec.Operation = "data plane of no HSM"
		info.base = strings.TrimSuffix(s.base, "/")
	}
	ar := s.authenticate(w, r, d.audience)
	if ar == nil {
		return
	}
	if err == nil && !h.Deleted.IsZero() {
		err = domain.HSMNotFound(h.Name)
	}
	switch {
	case err != nil:
		httpx.WriteError(w, ar, s.log, err)
	case m == nil:
		httpx.WriteError(w, ar, s.log, fault.Errorf(fault.NotFound, "NotFound", "no operation matches %s %s", ar.Method, ar.URL.Path))
	default:
		s.data.Serve(w, ar, h, info.base, m)
	}
}

// authenticate verifies the bearer token for resource and returns r with
// the caller in its context, or answers 401 with Azure's challenge and
// returns nil. The token itself is never logged.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, resource string) *http.Request {
	challenge := func() {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="%s%s", resource="%s"`, s.urls.authority, s.dir.TenantID(), resource))
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		if info, ok := r.Context().Value(requestInfoKey{}).(*requestInfo); ok {
			info.rec.Challenge = true
		}
		challenge()
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusUnauthorized)
		return nil
	}
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		challenge()
		httpx.WriteError(w, r, s.log, identity.ErrInvalidToken.With("the Authorization header must carry a Bearer token"))
		return nil
	}
	var c *identity.Caller
	var err error
	if resource == ARMResource { // the SDKs' public cloud asks for the other name
		c, err = s.tokens.Verify(strings.TrimSpace(tok), ARMResource, ARMClassicResource)
	} else {
		c, err = s.tokens.Verify(strings.TrimSpace(tok), resource)
	}
	if err != nil {
		s.log.Info("token rejected", "path", r.URL.Path, "reason", err)
		challenge()
		httpx.WriteError(w, r, s.log, identity.ErrInvalidToken.With("the access token is not valid: expired, for another audience, or not signed by this server"))
		return nil
	}
	if info, ok := r.Context().Value(requestInfoKey{}).(*requestInfo); ok {
		info.caller = c
	}
	return r.WithContext(identity.NewContext(r.Context(), c))
}

// withPath returns a shallow copy of r whose URL has path; r is not
// changed.
func withPath(r *http.Request, path string) *http.Request {
	if path == r.URL.Path {
		return r
	}
	u := *r.URL
	u.Path, u.RawPath = path, ""
	out := r.WithContext(r.Context())
	out.URL = &u
	return out
}

// cleanPath collapses repeated slashes and drops a trailing one, without
// redirecting: clients send "//providers/..." and "/keys/name/".
func cleanPath(p string) string {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	return p
}

// metadata serves cloud metadata in the shape of ARM's
// /metadata/endpoints, so clients learn the login host, the tenant and the
// HSM DNS suffix from the server URL alone.
func (s *Server) metadata(w http.ResponseWriter, r *http.Request) error {
	var m metadataDoc
	m.Authentication.LoginEndpoint = s.urls.authority
	m.Authentication.Audiences = []string{ARMResource}
	m.Authentication.Tenant = s.dir.TenantID()
	m.ResourceManager, m.Graph, m.MicrosoftGraphResourceID = s.urls.management, s.urls.graph, GraphResource
	m.Suffixes = map[string]string{"mhsmDns": strings.TrimPrefix(s.HSMURI(""), "https://")}
	m.FIPS.Enabled, m.FIPS.Module = kcrypto.FIPSMode(), kcrypto.FIPSModuleVersion()
	if s.cfg.Dev {
		m.DevHSMURI = strings.TrimSuffix(s.base, "/")
		if s.cfg.AzureNames {
			m.DevHSMURI = s.HSMURI(DevHSMName)
		}
	}
	httpx.WriteJSON(w, http.StatusOK, m)
	return nil
}

type metadataDoc struct {
	Authentication struct {
		LoginEndpoint string   `json:"loginEndpoint"`
		Audiences     []string `json:"audiences"`
		Tenant        string   `json:"tenant"`
	} `json:"authentication"`
	ResourceManager          string            `json:"resourceManager"`
	MicrosoftGraphResourceID string            `json:"microsoftGraphResourceId"`
	Graph                    string            `json:"graph"`
	Suffixes                 map[string]string `json:"suffixes"`
	DevHSMURI                string            `json:"keywardDevHsmUri,omitempty"`
	// FIPS says whether the server runs in FIPS 140-3 mode (serve --fips)
	// and which Go Cryptographic Module it is built with.
	FIPS struct {
		Enabled bool   `json:"enabled"`
		Module  string `json:"goCryptographicModule"`
	} `json:"keywardFips140"`
}

// statusWriter remembers the status a handler answered, for the record.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
