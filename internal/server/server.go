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
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/api/arm"
	"github.com/keyward/keyward/internal/api/dataplane"
	"github.com/keyward/keyward/internal/api/graph"
	"github.com/keyward/keyward/internal/api/identityapi"
	"github.com/keyward/keyward/internal/api/route"
	"github.com/keyward/keyward/internal/armrbac"
	"github.com/keyward/keyward/internal/attestation"
	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/backup"
	"github.com/keyward/keyward/internal/controlplane"
	"github.com/keyward/keyward/internal/diagnostics"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/egress"
	"github.com/keyward/keyward/internal/events"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/keys"
	"github.com/keyward/keyward/internal/pim"
	"github.com/keyward/keyward/internal/pim/armroles"
	"github.com/keyward/keyward/internal/rbac"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/postgres"
	"github.com/keyward/keyward/internal/store/sqlite"
	"github.com/keyward/keyward/internal/web"
)

// Resource URIs that tokens are issued for.
const (
	ManagedHSMResource = "https://managedhsm.azure.net"
	GraphResource      = "https://graph.microsoft.com"
	ARMResource        = "https://management.azure.com"
	// ARMClassicResource is the resource manager's other name, the
	// audience the Azure SDKs' public-cloud configuration asks for.
	ARMClassicResource = "https://management.core.windows.net"
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
	// PublicURL is the address clients reach the server at, such as a
	// load balancer's https://keyward.contoso.net: the token issuer, the
	// authority host, the management URL and the HSMs' URIs are built from
	// it, so that every node behind it issues and accepts the same tokens.
	// Default: https://{Listen}.
	PublicURL string
	// NodeName names this node in its audit records and checkpoints, its
	// delivery cursors and its logs. Default: the name kept in
	// {DataDir}/node-name, made on first start from the host name.
	NodeName string
	// DatabaseURL selects PostgreSQL (postgres://…) as the store instead
	// of SQLite in the data directory.
	DatabaseURL string
	// SealKeyFile is the file seal's key (default {DataDir}/seal.key), so
	// that several nodes can share one.
	SealKeyFile string
	// Dev creates an activated HSM named "dev" that answers at the bare
	// listen address.
	Dev bool
	// TLSCert and TLSKey name a certificate to use instead of generating one.
	TLSCert, TLSKey string
	// DNSSuffix is the domain under which HSMs answer as {name}.{suffix}.
	DNSSuffix string
	// AzureNames makes the server answer at Azure's own host names on
	// port 443, for clients whose DNS sends those names to it (a hosts
	// file, a private zone): the token service at login.microsoftonline.com,
	// the resource manager at management.azure.com, the directory at
	// graph.microsoft.com and each HSM at {name}.managedhsm.azure.net. The
	// URLs it hands out (issuer, key ids, links) name those hosts, so
	// unmodified Azure SDKs and the tools built on them work.
	AzureNames bool
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
	// FederationClient fetches OpenID issuers' keys: federated
	// credentials' issuers and key release's attestation authorities
	// (default: an HTTPS client with the system roots, under the egress
	// policy).
	FederationClient *http.Client
	// MetricsListen is where Prometheus metrics are served (GET /metrics),
	// apart from the service's address; "" serves none.
	MetricsListen string
	// KeyCacheSize is how many unsealed key versions the node keeps in
	// memory (0: keys.DefaultCacheSize; negative: none).
	KeyCacheSize int
	// Profiling also serves Go's runtime profiles (/debug/pprof/) on the
	// metrics listener: for measuring the hot path, off by default.
	Profiling bool
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
	open     *route.Table // the token service and metadata: no token
	graph    *graph.API
	handler  http.Handler // the front door, composed once
	metrics  *metrics
	routes   []hostRoute
	tls      *tls.Config
	closers  []func() error
	unlock   func() error // releases the data directory, after the store closes
	base     string       // the listen (or public) URL, ending in "/"
	urls     faceURLs     // what each face is reached at
	port     string       // the port clients reach HSMs at
	// listenHost is the host of the listen address, lower-cased: in dev
	// mode the dev HSM answers there.
	listenHost string
	publicHost string // PublicURL's host, if set
	boot       *Bootstrap
	audit      *audit.Log
	rotator    *keys.Rotator
	keys       *keys.Service
	seal       domain.Seal // the node seal, for the readiness probe
	stats      store.StatsReporter
	readiness  readiness   // the last /readyz verdict (frontdoor.go)
	journalID  string      // the audit journal's identity (node.go)
	clock      *clockGuard // nil for a store of this node's own
	cp         *controlplane.Service
	armRBAC    *armrbac.Service
	pimLoop    func(context.Context) // ends expired PIM access (pim.go)
	pim        *pim.Service          // the PIM core (pim.go)
	arm        *arm.API
	console    *web.Console
	sub        string // the subscription id
}

// New opens the data directory (creating it on first start) and builds the
// server. Listen must name the address the server will be reached at.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.AzureNames {
		if cfg.PublicURL != "" {
			return nil, fmt.Errorf("server: --azure-names and --public-url: the Azure names are the public URLs")
		}
		if cfg.DNSSuffix == "" || cfg.DNSSuffix == "mhsm.localhost" {
			cfg.DNSSuffix = AzureHSMSuffix
		}
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
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, fmt.Errorf("server: --public-url %q: want https://host[:port], nothing after", cfg.PublicURL)
		}
		s.publicHost, s.port = strings.ToLower(u.Hostname()), u.Port()
		if s.port == "" {
			s.port = "443"
		}
		s.base = "https://" + u.Host + "/"
	}
	s.urls = faceURLs{authority: s.base, management: s.base, graph: s.base}
	if cfg.AzureNames {
		// Clients reach every name on 443, whatever the listener's port
		// behind a forward.
		s.port = "443"
		s.urls = faceURLs{authority: "https://" + AzureLoginHost + "/", management: "https://" + AzureManagementHost + "/",
			graph: "https://" + AzureGraphHost + "/"}
	}
	if s.unlock, err = lockDataDir(dir); err != nil {
		return nil, err
	}
	if s.cfg.NodeName, err = nodeName(dir, cfg.NodeName); err != nil {
		s.unlock()
		return nil, err
	}
	s.log = s.log.With("node", s.cfg.NodeName)
	s.cfg.Log = s.log
	if s.store, err = openStore(ctx, s.cfg, dir); err != nil {
		s.unlock()
		return nil, err
	}
	s.stats, _ = s.store.(store.StatsReporter)
	if c, ok := s.store.(store.Clock); ok {
		// A shared store: leases only while this node's clock is in step.
		s.clock = newClockGuard(c, time.Now, s.log)
		if err := s.clock.measure(ctx); err != nil {
			s.log.Warn("measuring the clock skew", "err", err)
		}
		s.store = leaseGuarded{Store: s.store, allow: s.clock.allow}
	}
	if err := s.build(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// tlsConfig loads the configured certificate, or one the cluster CA
// issues to this node.
func (s *Server) tlsConfig(ctx context.Context, seal domain.Seal) (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	if s.cfg.TLSCert != "" {
		cert, err = tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
	} else {
		hosts := []string{s.listenHost, "localhost", "127.0.0.1", "*." + s.cfg.DNSSuffix}
		if s.publicHost != "" {
			hosts = append(hosts, s.publicHost)
		}
		if s.cfg.AzureNames {
			hosts = append(hosts, AzureLoginHost, AzureManagementHost, AzureGraphHost)
		}
		ca, caKey, caErr := loadOrCreateCA(ctx, s.store, seal, s.cfg.DataDir)
		if caErr != nil {
			return nil, caErr
		}
		cert, err = ensureTLS(s.cfg.DataDir, ca, caKey, hosts)
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

// openStore opens PostgreSQL when a database URL is given, else SQLite in
// the data directory (the embedded default).
func openStore(ctx context.Context, cfg Config, dir string) (store.Store, error) {
	if cfg.DatabaseURL != "" {
		db, err := postgres.OpenWith(ctx, cfg.DatabaseURL, postgres.Options{Log: cfg.Log})
		if err != nil {
			return nil, fmt.Errorf("server: the database at --database: %w", err)
		}
		return db, nil
	}
	return sqlite.Open(ctx, filepath.Join(dir, "keyward.db"))
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
		path := s.cfg.SealKeyFile
		if path == "" {
			path = filepath.Join(s.cfg.DataDir, "seal.key")
		}
		if err := s.sealKeyExpected(ctx, path); err != nil {
			return nil, err
		}
		fileSeal, err := domain.OpenFileSeal(path, rand.Reader)
		if err != nil {
			return nil, err
		}
		seal = fileSeal
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
		n, err := tx.GetNode(ctx)
		switch {
		case err != nil:
			return err
		case n.Seal == "":
			n.Seal = kind
			return tx.UpdateNode(ctx, n)
		case n.Seal != kind:
			return fmt.Errorf("server: this data directory is sealed with the %s seal, not %s", n.Seal, kind)
		}
		return nil
	})
	return seal, err
}

// sealKeyExpected refuses to make a new file seal key at path when the
// store was sealed already: the key was lost or, for a node joining a
// cluster, not copied from the first node. A new key could open nothing.
func (s *Server) sealKeyExpected(ctx context.Context, path string) error {
	// The settings first: the node that seals the store made its key file
	// before, so a file missing after the store reads sealed is missing
	// indeed (and not about to be made by a node starting alongside).
	var n *store.NodeSettings
	if err := s.store.View(ctx, func(tx store.Tx) (err error) { n, err = tx.GetNode(ctx); return err }); err != nil {
		return err
	}
	if n.Seal != "file" {
		return nil // never sealed, or by another seal (openSeal says so)
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("server: the store is sealed already, but the seal key %s does not exist: "+
			"copy the key the first node made (every node of a cluster uses the same one)", path)
	}
	return nil
}

func (s *Server) build(ctx context.Context) error {
	// One clock for every service: tests move it to run months in seconds
	// (rotation, lockouts, validity windows). Tokens, and the external
	// tokens federation verifies, keep real time: clients judge them by it.
	clock := s.cfg.Clock
	if clock == nil {
		clock = time.Now
	}
	realTime := time.Now
	seal, err := s.openSeal(ctx)
	if err != nil {
		return err
	}
	if s.tls, err = s.tlsConfig(ctx, seal); err != nil {
		return err
	}
	s.seal = seal
	if err := s.checkPublicURL(ctx); err != nil {
		return err
	}
	tenant, err := s.nodeID(ctx, func(n *store.NodeSettings) *string { return &n.TenantID })
	if err != nil {
		return err
	}
	pepper, err := identity.LoadOrCreatePepper(ctx, s.store, seal, rand.Reader)
	if err != nil {
		return err
	}
	s.dir = identity.NewDirectory(s.store, tenant, rand.Reader, clock)
	s.dir.SetPepper(pepper)
	s.dir.SetSeal(seal)
	key, err := identity.LoadOrCreateSigningKey(ctx, s.store, seal, rand.Reader, realTime())
	if err != nil {
		return err
	}
	s.tokens = identity.NewTokenService(key, s.urls.authority+tenant+"/v2.0", s.dir,
		[]string{ManagedHSMResource, GraphResource, ARMResource, ARMClassicResource, strings.TrimSuffix(s.base, "/")}, realTime)
	publisher := events.NewPublisher(s.cfg.EventWebhooks, nil, s.log)
	s.closers = append(s.closers, publisher.Close)
	s.registry = domain.NewRegistry(s.store, seal, rand.Reader, clock, func(ctx context.Context, e domain.SecurityDomainEvent) {
		s.alertSecurityDomain(ctx, publisher, e)
	})
	s.rbac = rbac.NewService(s.store, s.dir, clock)
	keySvc := keys.NewService(s.store, rand.Reader, clock, keys.Events{Publisher: publisher, Source: s.hsmResourceIDOf})
	if s.cfg.KeyCacheSize != 0 {
		keySvc.SetCacheSize(max(s.cfg.KeyCacheSize, 0))
	}
	egressPolicy := egress.Policy{AllowPrivate: s.cfg.AllowPrivateEndpoints}
	backups := backup.NewService(s.store, s.registry, clock, egressPolicy, s.cfg.NodeName)
	if err := backups.FailInterrupted(ctx); err != nil {
		return err
	}
	// Federated credentials' issuers and attestation authorities are
	// fetched alike: OpenID metadata, under the egress policy.
	fedClient := s.cfg.FederationClient
	if fedClient == nil {
		fedClient = egressPolicy.Client(10 * time.Second)
	}
	releaseSigner, err := dataplane.NewReleaseSigner(s.tls.Certificates[0])
	if err != nil {
		return err
	}
	s.data = dataplane.New(keySvc, s.rbac, s.registry, backups,
		dataplane.Release{Verifier: attestation.NewVerifier(fedClient, realTime), Signer: releaseSigner}, s.hostHSM, s.log)
	subscription, err := s.nodeID(ctx, func(n *store.NodeSettings) *string { return &n.SubscriptionID })
	if err != nil {
		return err
	}
	s.sub = subscription
	journal, err := audit.OpenJournal(filepath.Join(s.cfg.DataDir, "audit"), s.cfg.AuditMaxFileBytes, s.log)
	if err != nil {
		return err
	}
	journal.SetNode(s.cfg.NodeName)
	journalID, err := loadOrCreateJournalID(journal.Dir())
	if err != nil {
		return err
	}
	s.journalID = journalID
	if s.cfg.DatabaseURL != "" {
		if err := s.claimNode(ctx); err != nil {
			return err
		}
		s.closers = append(s.closers, s.releaseNodeClaim)
	}
	s.closers = append(s.closers, journal.Close)
	s.audit = audit.NewLog(journal)
	if err := s.startAuditCheckpoints(ctx, seal, journal); err != nil {
		return err
	}
	cp := &controlplane.Service{HSMs: s.registry, RBAC: s.rbac, Keys: keySvc, Store: s.store, Dir: s.dir}
	s.cp = cp

	idAPI := identityapi.New(s.dir, identity.NewFederation(s.dir, fedClient, realTime), s.tokens,
		identity.NewThrottle(identity.ThrottleConfig{Now: clock}), s.urls.authority, s.log)
	s.open = route.NewTable(append(idAPI.Operations(),
		route.Op{Name: "CloudMetadata", Method: http.MethodGet, Pattern: "/metadata/endpoints", Handle: s.metadata})...)
	s.graph = graph.New(s.dir, s.log)
	s.buildPIM(publisher, clock, tenant)
	limit := s.cfg.AuditBufferBytes
	if limit == 0 {
		limit = 256 << 20
	}
	diag := diagnostics.New(diagnostics.Config{Store: s.store, Seal: seal, Log: s.audit, Limit: limit, Directory: s.dir,
		Egress: egressPolicy, JournalID: journalID, Logger: s.log})
	scopes := arm.Scopes{ControlPlane: cp, Diagnostics: diag, Subscription: subscription}
	s.armRBAC = armrbac.NewService(s.store, s.dir, clock, scopes.Exists)
	s.arm = arm.New(arm.Deps{ControlPlane: cp, RBAC: s.armRBAC, Directory: s.dir, Diagnostics: diag, Subscription: subscription,
		PIM:    s.rolePIM(armroles.New(s.store, s.dir, clock, scopes.Exists)),
		HSMURI: s.HSMURI, ManagementURL: s.urls.management, Log: s.log, Audit: journal})
	if err := diag.Start(ctx); err != nil {
		return err
	}
	s.closers = append(s.closers, diag.Stop)
	s.keys = keySvc
	s.rotator = keys.NewRotator(keySvc, s.registry.List, s.recordScheduled, s.log)
	s.metrics = newMetrics(s)
	if err := s.buildConsole(subscription); err != nil {
		return err
	}
	s.handler = s.frontDoor()

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

// nodeID returns a node-wide id (the tenant, the subscription: the field
// of the node settings that field picks), creating it on first start.
func (s *Server) nodeID(ctx context.Context, field func(*store.NodeSettings) *string) (string, error) {
	var id string
	err := s.store.Update(ctx, func(tx store.Tx) error {
		n, err := tx.GetNode(ctx)
		if err != nil {
			return err
		}
		if id = *field(n); id != "" {
			return nil
		}
		id = uuid.NewString()
		*field(n) = id
		return tx.UpdateNode(ctx, n)
	})
	return id, err
}

// HSMURI is the data-plane URL of an HSM: https://{name}.{suffix}:{port}.
func (s *Server) HSMURI(name string) string {
	if s.port == "443" {
		return "https://" + name + "." + s.cfg.DNSSuffix
	}
	return "https://" + name + "." + s.cfg.DNSSuffix + ":" + s.port
}

// Bootstrap returns what the first start created.
func (s *Server) Bootstrap() *Bootstrap { return s.boot }

// BaseURL is the authority host and management URL, ending in "/".
func (s *Server) BaseURL() string { return s.base }

// AuthorityURL is the token service's host, ending in "/": BaseURL, or
// Azure's login host with AzureNames.
func (s *Server) AuthorityURL() string { return s.urls.authority }

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
	// The background loops end with Serve, and Serve returns only once
	// they have: a rotation or PIM pass still running when Close follows
	// would write to a journal and a store being closed.
	rotCtx, stopRotation := context.WithCancel(ctx)
	var loops sync.WaitGroup
	defer func() { stopRotation(); loops.Wait() }()
	loops.Go(func() { s.rotator.Run(rotCtx, interval) })
	if s.clock != nil {
		loops.Go(func() { s.clock.run(rotCtx) })
	}
	if s.cfg.DatabaseURL != "" {
		loops.Go(func() { s.renewNodeClaim(rotCtx) })
	}
	if s.cfg.MetricsListen != "" {
		loops.Go(func() {
			if err := s.serveMetrics(rotCtx, s.cfg.MetricsListen); err != nil {
				s.log.Error("metrics not served", "err", err)
			}
		})
	}
	loops.Go(func() { s.pimLoop(rotCtx) })
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
