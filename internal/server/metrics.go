package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keyward/keyward/internal/store"
)

// metrics are the server's Prometheus metrics, in a registry of its own
// (never the process-wide default), served on a listener of its own so
// that they are not on the service's address.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "keyward", Name: "requests_total",
		Help: "Requests served, by surface, operation and result (Success or Failure) and HTTP status.",
	}, []string{"surface", "operation", "result", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "keyward", Name: "request_duration_seconds",
		Help:    "Time to serve a request, by surface.",
		Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
	}, []string{"surface"})
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "keyward", Name: "audit_ready",
		Help: "1 while the audit log keeps records (requests are served), 0 while it cannot (requests get 503).",
	}, func() float64 {
		if s.audit.Ready() != nil {
			return 0
		}
		return 1
	})
	m.reg.MustRegister(m.requests, m.duration, ready,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(stateMetrics(s)...)
	return m
}

// stateMetrics are read when scraped, from the figures the parts keep
// anyway: nothing on the request path but an atomic add per cache lookup.
func stateMetrics(s *Server) []prometheus.Collector {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "keyward", Name: name, Help: help}, f)
	}
	counter := func(name, help string, labels prometheus.Labels, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "keyward", Name: name, Help: help, ConstLabels: labels}, f)
	}
	held := func(lease string, f func() bool) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "keyward", Name: "lease_held",
			Help: "1 while this node holds the lease of work that runs on one node at a time.", ConstLabels: prometheus.Labels{"lease": lease}},
			func() float64 { return b2f(f()) })
	}
	stats := func() store.Stats {
		if s.stats != nil {
			return s.stats.Stats()
		}
		return store.Stats{}
	}
	cache := func(name string, f func() (uint64, uint64)) []prometheus.Collector {
		l := prometheus.Labels{"cache": name}
		return []prometheus.Collector{
			counter("cache_hits_total", "Lookups a cache answered.", l, func() float64 { h, _ := f(); return float64(h) }),
			counter("cache_misses_total", "Lookups a cache could not answer.", l, func() float64 { _, m := f(); return float64(m) }),
		}
	}
	out := []prometheus.Collector{
		gauge("audit_backlog_records", "Audit records written but not yet delivered to the diagnostic settings' storage.",
			func() float64 { n, _ := s.audit.Backlog(); return float64(n) }),
		gauge("audit_shipping_lag_seconds", "How long since every shipper last had nothing left to deliver (0 when caught up).",
			func() float64 { _, d := s.audit.Backlog(); return d.Seconds() }),
		gauge("db_connections_open", "Open database connections.", func() float64 { return float64(stats().OpenConns) }),
		gauge("db_connections_in_use", "Database connections in use.", func() float64 { return float64(stats().InUseConns) }),
		gauge("db_connections_idle", "Idle database connections.", func() float64 { return float64(stats().IdleConns) }),
		counter("db_connection_waits_total", "Acquisitions that waited for a database connection.", nil,
			func() float64 { return float64(stats().Waits) }),
		counter("invalidations_received_total", "Change notifications received from other nodes.", nil,
			func() float64 { return float64(stats().Notifications) }),
		gauge("invalidation_lag_seconds", "Delay of the last change notification from another node, commit to receipt.",
			func() float64 { return stats().NotificationLag.Seconds() }),
		gauge("invalidation_listening", "1 while this node hears other nodes' changes (0: its caches are dropped until it does).",
			func() float64 { return b2f(stats().Listening) }),
		held("rotation", s.rotator.Held),
	}
	if s.clock != nil {
		out = append(out, gauge("clock_skew_seconds", "This node's clock minus the database's; past 2 s the node takes no leases.",
			func() float64 { return s.clock.Skew().Seconds() }))
	}
	if s.pim != nil {
		out = append(out, held("pim-expiry", s.pim.Held))
	}
	out = append(out, cache("keys", s.keys.CacheStats)...)
	return append(out, cache("tokens", s.tokens.CacheStats)...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// observe counts a finished request.
func (m *metrics) observe(surface, operation string, status int, took time.Duration) {
	if surface == "" {
		surface = "none"
	}
	result := "Failure"
	if status >= 200 && status < 300 {
		result = "Success"
	}
	m.requests.WithLabelValues(surface, operation, result, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(surface).Observe(took.Seconds())
}

// MetricsHandler serves the metrics in Prometheus's text format.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
}

// serveMetrics serves the metrics on addr until ctx is done.
func (s *Server) serveMetrics(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("server: metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.MetricsHandler())
	if s.cfg.Profiling {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: MaxHeaderBytes}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	s.log.Info("metrics", "listen", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: metrics: %w", err)
	}
	return nil
}
