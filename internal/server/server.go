// Package server runs Keyward: it opens the store and the seal, builds the
// domain services, and serves every HTTP surface on one TLS listener.
//
// A request goes one way through it:
//
//	TLS → route (which surface, which HSM) → authenticate (bearer JWT)
//	    → authorize (in the data plane, per operation) → handler
//
// Errors on every path are rendered as Azure's error envelope.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/api/arm"
	"github.com/keyward/keyward/internal/api/dataplane"
	"github.com/keyward/keyward/internal/api/graph"
	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/api/identityapi"
	"github.com/keyward/keyward/internal/armrbac"
	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/backup"
	"github.com/keyward/keyward/internal/controlplane"
	"github.com/keyward/keyward/internal/diagnostics"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/egress"
	"github.com/keyward/keyward/internal/events"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/keys"
	"github.com/keyward/keyward/internal/rbac"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
)

// Resource URIs that tokens are issued for.
const (
	ManagedHSMResource = "https://managedhsm.azure.net"
	GraphResource      = "https://graph.microsoft.com"
	ARMResource        = "https://management.azure.com"
)

// MaxHeaderBytes bounds a request's header block.
const MaxHeaderBytes = 64 << 10

// DevHSMName is the HSM that --dev creates and serves at the bare address.
const DevHSMName = "dev"

// Config configures a server.
type Config struct {
	// Listen is the address to listen on, such as 127.0.0.1:8443.
	Listen string
	// DataDir holds the database, the seal key, the CA and bootstrap.json.
	DataDir string
	// Dev creates an activated HSM named "dev" that answers at the bare
	// listen address.
	Dev bool
	// TLSCert and TLSKey name a certificate to use instead of generating one.
	TLSCert, TLSKey string
	// DNSSuffix is the domain under which HSMs answer as {name}.{suffix}.
	DNSSuffix string
	// AuditMaxFileBytes rotates audit journal files (default 64 MiB).
	AuditMaxFileBytes int64
	// AuditBufferBytes is how many undelivered bytes a blob sink may fall
	// behind before requests are refused (default 256 MiB).
	AuditBufferBytes int64
	// Clock is the time the key service, the rotation scheduler and the
	// sign-in lockouts see (default time.Now); tests move it to run months
	// in seconds. Tokens keep real time.
	Clock func() time.Time
	// RotationInterval is how often rotation policies are checked
	// (default one minute).
	RotationInterval time.Duration
	// EventWebhooks receive key events (CloudEvents JSON).
	EventWebhooks []string
	// FederationClient fetches trusted OIDC issuers' keys (default: an
	// HTTPS client with the system roots, under the egress policy).
	FederationClient *http.Client
	// AllowPrivateEndpoints lets the URLs callers name — backup and log
	// storage, federated issuers — use http and reach loopback and private
	// addresses; off, they are https to public addresses only, so that no
	// caller can aim the server at its own network (SSRF).
	AllowPrivateEndpoints bool
	// NoAuditForBenchmarks turns the audit log off. It exists only so a
	// benchmark can measure what auditing costs; nothing else sets it.
	NoAuditForBenchmarks bool
	// Seal is "file" (the default: a key file in the data dir) or
	// "pkcs11" (a key in the token PKCS11 names).
	Seal   string
	PKCS11 domain.PKCS11Config
	Log    *slog.Logger
}

// Server is a running Keyward.
type Server struct {
	cfg      Config
	log      *slog.Logger
	store    store.Store
	registry *domain.Registry
	rbac     *rbac.Service
	dir      *identity.Directory
	tokens   *identity.TokenService
	data     *dataplane.API
	mux      *http.ServeMux // identity, graph, metadata
	tls      *tls.Config
	closers  []func() error
	unlock   func() error // releases the data directory, after the store closes
	base     string       // authority host and management URL, ending in "/"
	port     string
	// listenHost is the host of the listen address, lower-cased: in dev
	// mode the dev HSM answers there.
	listenHost string
	boot       *Bootstrap
	audit      *audit.Log
	rotator    *keys.Rotator
	cp         *controlplane.Service
	armRBAC    *armrbac.Service
	arm        *arm.API
	sub        string // the subscription id
}

// New opens the data directory (creating it on first start) and builds the
// server. Listen must name the address the server will be reached at.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.DNSSuffix == "" {
		cfg.DNSSuffix = "mhsm.localhost"
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	cfg.DataDir = dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("server: creating data dir: %w", err)
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("server: listen address %q: %w", cfg.Listen, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	s := &Server{cfg: cfg, log: cfg.Log, port: port, listenHost: strings.ToLower(host), base: "https://" + net.JoinHostPort(host, port) + "/"}
	if s.unlock, err = lockDataDir(dir); err != nil {
		return nil, err
	}
	if s.tls, err = s.tlsConfig(host); err != nil {
		s.unlock()
		return nil, err
	}
	db, err := sqlite.Open(ctx, filepath.Join(dir, "keyward.db"))
	if err != nil {
		s.unlock()
		return nil, err
	}
	s.store = db
	if err := s.build(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) tlsConfig(host string) (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	if s.cfg.TLSCert != "" {
		cert, err = tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
	} else {
		cert, err = ensureTLS(s.cfg.DataDir, []string{host, "localhost", "127.0.0.1", "*." + s.cfg.DNSSuffix})
	}
	if err != nil {
		return nil, fmt.Errorf("server: TLS certificate: %w", err)
	}
	// HTTP/1.1 only: measured with azkeys on two cores, Go's HTTP/2 costs
	// about 40 % more CPU per small request than HTTP/1.1 with keep-alive,
	// and every Azure client speaks HTTP/1.1.
	return &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: tls12Suites(), Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}, nil
}

// tls12Suites are the TLS 1.2 suites offered: forward-secret AEAD only,
// as Mozilla's "intermediate" profile (no CBC, no SHA-1, no RSA key
// exchange). TLS 1.3's suites are not configurable and all qualify.
func tls12Suites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// openSeal opens the configured seal and checks that the data directory
// was sealed with the same kind: domain keys sealed by one cannot be
// opened by the other.
func (s *Server) openSeal(ctx context.Context) (domain.Seal, error) {
	kind := s.cfg.Seal
	if kind == "" {
		kind = "file"
	}
	var seal domain.Seal
	switch kind {
	case "file":
		fs, err := domain.OpenFileSeal(filepath.Join(s.cfg.DataDir, "seal.key"), rand.Reader)
		if err != nil {
			return nil, err
		}
		seal = fs
	case "pkcs11":
		ps, err := domain.OpenPKCS11Seal(s.cfg.PKCS11)
		if err != nil {
			return nil, fmt.Errorf("server: PKCS#11 seal: %w", err)
		}
		s.closers = append(s.closers, ps.Close)
		seal = ps
	default:
		return nil, fmt.Errorf("server: unknown seal %q: use file or pkcs11", kind)
	}
	err := s.store.Update(ctx, func(tx store.Tx) error {
		have, err := tx.GetMeta(ctx, "seal")
		if errors.Is(err, store.ErrNotFound) {
			return tx.SetMeta(ctx, "seal", kind)
		}
		if err == nil && have != kind {
			return fmt.Errorf("server: this data directory is sealed with the %s seal, not %s", have, kind)
		}
		return err
	})
	return seal, err
}

func (s *Server) build(ctx context.Context) error {
	seal, err := s.openSeal(ctx)
	if err != nil {
		return err
	}
	tenant, err := s.metaID(ctx, "tenant")
	if err != nil {
		return err
	}
	s.dir = identity.NewDirectory(s.store, tenant, rand.Reader, time.Now)
	pepper, err := identity.LoadOrCreatePepper(ctx, s.store, seal, rand.Reader)
	if err != nil {
		return err
	}
	s.dir.SetPepper(pepper)
	key, err := identity.LoadOrCreateSigningKey(ctx, s.store, seal, rand.Reader, time.Now())
	if err != nil {
		return err
	}
	s.tokens = identity.NewTokenService(key, s.base+tenant+"/v2.0", s.dir,
		[]string{ManagedHSMResource, GraphResource, ARMResource, strings.TrimSuffix(s.base, "/")}, time.Now)
	s.registry = domain.NewRegistry(s.store, seal, rand.Reader, time.Now)
	s.rbac = rbac.NewService(s.store, s.dir, time.Now)
	clock := s.cfg.Clock
	if clock == nil {
		clock = time.Now
	}
	keySvc := keys.NewService(s.store, rand.Reader, clock)
	backups := backup.NewService(s.store, s.registry, time.Now)
	backups.Egress = egress.Policy{AllowPrivate: s.cfg.AllowPrivateEndpoints}
	s.data = dataplane.New(keySvc, s.rbac, s.registry, backups, s.log)
	subscription, err := s.metaID(ctx, "subscription")
	if err != nil {
		return err
	}
	s.sub = subscription
	journal, err := audit.OpenJournal(filepath.Join(s.cfg.DataDir, "audit"), s.cfg.AuditMaxFileBytes, s.log)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, journal.Close)
	s.audit = audit.NewLog(journal)
	if err := s.startAuditCheckpoints(ctx, seal, journal); err != nil {
		return err
	}
	cp := &controlplane.Service{HSMs: s.registry, RBAC: s.rbac, Keys: keySvc, Store: s.store, Dir: s.dir}
	s.cp = cp
	s.armRBAC = armrbac.NewService(s.store, s.dir, time.Now)

	s.mux = http.NewServeMux()
	egressPolicy := egress.Policy{AllowPrivate: s.cfg.AllowPrivateEndpoints}
	fedClient := s.cfg.FederationClient
	if fedClient == nil {
		fedClient = egressPolicy.Client(10 * time.Second)
	}
	idAPI := identityapi.New(s.dir, identity.NewFederation(s.dir, fedClient, time.Now), s.tokens, s.base, s.log)
	idAPI.Throttle = identity.NewThrottle(identity.ThrottleConfig{Now: clock}) // lockouts follow the test clock
	idAPI.OnAttempt = func(ctx context.Context, subject string) {
		if info, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
			info.signInSubject = subject
		}
	}
	idAPI.Register(s.mux)
	graph.New(s.dir, s.log).Register(s.mux)
	armAPI := arm.New(cp, s.armRBAC, s.dir, subscription, s.HSMURI, s.log)
	armAPI.ManagementURL = strings.TrimSuffix(s.base, "/")
	armAPI.Register(s.mux)
	s.arm = armAPI
	limit := s.cfg.AuditBufferBytes
	if limit == 0 {
		limit = 256 << 20
	}
	diag := diagnostics.New(s.store, seal, s.audit, limit, s.dir, s.log)
	diag.Egress = egressPolicy
	armAPI.RegisterDiagnostics(s.mux, diag)
	if err := diag.Start(ctx); err != nil {
		return err
	}
	s.closers = append(s.closers, diag.Stop)
	publisher := events.NewPublisher(s.cfg.EventWebhooks, nil, s.log)
	s.closers = append(s.closers, publisher.Close)
	s.registry.OnSecurityDomainEvent = func(ctx context.Context, e domain.SecurityDomainEvent) {
		s.alertSecurityDomain(ctx, publisher, e)
	}
	keySvc.SetEvents(publisher, func(h *domain.HSM) string { return s.hsmResourceIDOf(h) })
	s.rotator = keys.NewRotator(keySvc, s.registry.List, s.log)
	s.rotator.Record = s.recordScheduled
	s.mux.HandleFunc("GET /metadata/endpoints", s.metadata)

	s.boot, err = s.bootstrap(ctx, tenant)
	return err
}

// Security-domain alert events (Keyward's; Event Grid has none for these).
const (
	EventSecurityDomainDownloadRequested = "Keyward.ManagedHSM.SecurityDomainDownloadRequested"
	EventSecurityDomainDownloadApproved  = "Keyward.ManagedHSM.SecurityDomainDownloadApproved"
	EventSecurityDomainDownloaded        = "Keyward.ManagedHSM.SecurityDomainDownloaded"
	EventSecurityDomainSettingChanged    = "Keyward.ManagedHSM.SecurityDomainDownloadApprovalChanged"
)

// alertSecurityDomain raises an alert for a step of a security-domain
// download from an active HSM: a webhook event and a warning in the log.
func (s *Server) alertSecurityDomain(ctx context.Context, p *events.Publisher, e domain.SecurityDomainEvent) {
	typ := map[string]string{"requested": EventSecurityDomainDownloadRequested, "approved": EventSecurityDomainDownloadApproved,
		"downloaded": EventSecurityDomainDownloaded, "setting": EventSecurityDomainSettingChanged}[e.Kind]
	uri := s.HSMURI(e.HSM.Name)
	s.log.WarnContext(ctx, "security domain "+e.Kind, "hsm", e.HSM.Name, "operation", e.Request.Operation, "request", e.Request.ID,
		"requester", e.Request.Requester, "approver", e.Request.Approver)
	id, name := uri+"/securitydomain/download", e.Request.Operation
	if e.Request.ID != "" {
		id, name = uri+"/securitydomain/download/requests/"+e.Request.ID, e.Request.ID
	}
	p.Publish(events.Event{SpecVersion: "1.0", Type: typ, Source: s.hsmResourceIDOf(e.HSM), ID: uuid.NewString(),
		Time: time.Now().UTC().Format(time.RFC3339), Subject: name, DataContentType: "application/json",
		Data: events.Data{ID: id, VaultName: e.HSM.Name, ObjectType: "SecurityDomainDownloadRequest", ObjectName: name}})
}

// metaID returns a node-wide id (the tenant, the subscription), creating
// it on first start.
func (s *Server) metaID(ctx context.Context, name string) (string, error) {
	var id string
	err := s.store.Update(ctx, func(tx store.Tx) error {
		v, err := tx.GetMeta(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			id = uuid.NewString()
			return tx.SetMeta(ctx, name, id)
		}
		id = v
		return err
	})
	return id, err
}

// HSMURI is the data-plane URL of an HSM: https://{name}.{suffix}:{port}.
func (s *Server) HSMURI(name string) string {
	return "https://" + name + "." + s.cfg.DNSSuffix + ":" + s.port
}

// Bootstrap returns what the first start created.
func (s *Server) Bootstrap() *Bootstrap { return s.boot }

// BaseURL is the authority host and management URL, ending in "/".
func (s *Server) BaseURL() string { return s.base }

// CAFile is the path of the CA certificate clients should trust.
func (s *Server) CAFile() string { return filepath.Join(s.cfg.DataDir, caCertFile) }

// Serve serves on ln until ctx is done, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		// Headers are copied into audit records: bound them well below
		// net/http's 1 MiB default.
		MaxHeaderBytes: MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	srv.TLSConfig = s.tls
	interval := s.cfg.RotationInterval
	if interval <= 0 {
		interval = time.Minute
	}
	rotCtx, stopRotation := context.WithCancel(ctx)
	defer stopRotation()
	go s.rotator.Run(rotCtx, interval)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(ln, s.tls)) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	return nil
}

// Close stops delivery, closes the audit journal and the seal (in the
// reverse order of opening), then the store.
func (s *Server) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	errs = append(errs, s.store.Close())
	return errors.Join(append(errs, s.unlock())...)
}

// dataPlaneRoots are the first path segments of the HSM data plane.
var dataPlaneRoots = map[string]bool{
	"keys": true, "deletedkeys": true, "rng": true, "providers": true, "securitydomain": true,
	"backup": true, "restore": true, "prebackup": true, "prerestore": true, "settings": true,
}

// ServeHTTP routes a request to its surface. Audit is the outermost
// layer: every request, refused or not, leaves one record; and when the
// audit log cannot keep records, requests are refused before they run.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	w = sw
	h := w.Header()
	h.Set("x-ms-request-id", uuid.NewString())
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Strict-Transport-Security", "max-age=31536000;includeSubDomains")
	if err := s.audit.Ready(); err != nil {
		s.log.Error("refusing request: the audit log cannot keep records", "err", err)
		h.Set("Retry-After", "5")
		httpx.WriteError(w, r, s.log, fault.Errorf(fault.Unavailable, "ServiceUnavailable",
			"The service cannot record this request in its audit log right now; it was not performed. Retry later."))
		return
	}
	info := &requestInfo{}
	r = r.WithContext(dataplane.WithInfo(context.WithValue(r.Context(), requestInfoKey{}, info), &info.data))
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", p)
			httpx.WriteError(w, r, s.log, fmt.Errorf("panic: %v", p))
		}
		if !s.cfg.NoAuditForBenchmarks {
			s.record(r, info, sw.status, start)
		}
	}()

	r.URL.Path = cleanPath(r.URL.Path)
	first, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	// r stays the request the deferred audit record reads: an
	// authenticated copy goes by another name, so a refused sign-in still
	// leaves a record of the request it refused.
	switch name, bare, ok := s.hsmName(r.Host, first, r.URL.Path); {
	case ok:
		s.serveDataPlane(w, r, info, name, bare)
	case first == "v1.0":
		if ar := s.authenticate(w, r, GraphResource); ar != nil {
			s.serveMux(w, ar)
		}
	case strings.EqualFold(first, "subscriptions"):
		r.URL.Path = arm.Canonicalize(r.URL.Path)
		ar := s.authenticate(w, r, ARMResource)
		if ar == nil {
			return
		}
		if arm.IsAuthorizationPath(r.URL.Path) {
			info.pattern = "ARM " + r.Method + " roleAssignments/roleDefinitions"
			s.arm.ServeAuthorization(w, ar)
		} else {
			s.serveMux(w, ar)
		}
	default:
		s.serveMux(w, r)
	}
	// At debug level: the audit log records every request, and a second
	// line per request at info level costs about 4 % of a P-256 signature.
	s.log.Debug("request", "method", r.Method, "host", r.Host, "path", r.URL.Path, "status", sw.status,
		"ms", time.Since(start).Milliseconds(), "op", info.data.Operation)
}

// requestInfo collects what the layers of the pipeline learn about a
// request, for the request log (and the audit record).
type requestInfo struct {
	caller  *identity.Caller
	hsm     string // the HSM addressed, if any
	pattern string // the route of a non-HSM request
	base    string // the configured URL of the HSM addressed, if any
	// signInSubject is the client id or user name a token request was
	// for: a failed one names it in its record.
	signInSubject string
	data          dataplane.Info
}

type requestInfoKey struct{}

// serveMux serves the identity, Graph and metadata endpoints, answering
// unknown paths with Azure's error envelope rather than a text 404.
func (s *Server) serveMux(w http.ResponseWriter, r *http.Request) {
	_, pattern := s.mux.Handler(r)
	if info, ok := r.Context().Value(requestInfoKey{}).(*requestInfo); ok {
		info.pattern = pattern
	}
	if pattern == "" {
		httpx.WriteError(w, r, s.log, fault.Errorf(fault.NotFound, "NotFound", "no operation matches %s %s", r.Method, r.URL.Path))
		return
	}
	s.mux.ServeHTTP(w, r)
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

// hsmName tells whether a request is for an HSM data plane, and which: a
// host {name}.{suffix} (a trailing dot, as in a fully qualified name, is
// the same host), or in dev mode a data-plane path at the bare listen
// address (bare). Any other host under the suffix, such as
// {a}.{b}.{suffix}, is no HSM's and never falls back to the dev HSM.
func (s *Server) hsmName(hostport, first, path string) (name string, bare, ok bool) {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if label, under := strings.CutSuffix(host, "."+s.cfg.DNSSuffix); under {
		return label, false, label != "" && !strings.Contains(label, ".")
	}
	if host == s.cfg.DNSSuffix || !s.cfg.Dev || !s.bareHost(host) {
		return "", false, false
	}
	if dataPlaneRoots[strings.ToLower(first)] ||
		!strings.EqualFold(first, "subscriptions") && strings.Contains(strings.ToLower(path), "/providers/microsoft.authorization/") {
		return DevHSMName, true, true
	}
	return "", false, false
}

// bareHost tells whether host is one of the names the bare listen address
// is reached by: the listen host, localhost or a loopback address.
func (s *Server) bareHost(host string) bool {
	if host == "localhost" || host == s.listenHost {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serveDataPlane serves a request addressed to the HSM called name. Only
// an HSM that exists gets the request's audit record in its own stream;
// a name that is no HSM's is answered 404 and recorded in the tenant's
// stream, so no outside request can open a journal stream. Key ids and
// links are built from the HSM's configured URI, never from the Host
// header.
func (s *Server) serveDataPlane(w http.ResponseWriter, r *http.Request, info *requestInfo, name string, bare bool) {
	h, err := s.registry.Get(r.Context(), name)
	if err == nil {
		info.hsm = h.Name
		info.data = s.data.Describe(r) // named even if authentication fails
		info.base = s.HSMURI(h.Name)
		if bare {
			info.base = strings.TrimSuffix(s.base, "/")
		}
	} else {
		info.pattern = "data plane of no HSM"
	}
	ar := s.authenticate(w, r, ManagedHSMResource)
	if ar == nil {
		return
	}
	if err == nil && !h.Deleted.IsZero() {
		err = domain.ErrHSMNotFound
	}
	if err != nil {
		httpx.WriteError(w, ar, s.log, err)
		return
	}
	s.data.Serve(w, ar, h, info.base)
}

// authenticate verifies the bearer token for resource and returns r with
// the caller in its context, or answers 401 with Azure's challenge and
// returns nil. The token itself is never logged.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, resource string) *http.Request {
	challenge := func() {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="%s%s", resource="%s"`, s.base, s.dir.TenantID(), resource))
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
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
	c, err := s.tokens.Verify(strings.TrimSpace(tok), resource)
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
}

// metadata serves cloud metadata in the shape of ARM's
// /metadata/endpoints, so clients learn the login host, the tenant and the
// HSM DNS suffix from the server URL alone.
func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	var m metadataDoc
	m.Authentication.LoginEndpoint = s.base
	m.Authentication.Audiences = []string{ARMResource}
	m.Authentication.Tenant = s.dir.TenantID()
	m.ResourceManager, m.Graph, m.MicrosoftGraphResourceID = s.base, s.base, GraphResource
	m.Suffixes = map[string]string{"mhsmDns": "." + s.cfg.DNSSuffix + ":" + s.port}
	if s.cfg.Dev {
		m.DevHSMURI = strings.TrimSuffix(s.base, "/")
	}
	httpx.WriteJSON(w, http.StatusOK, m)
}

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
