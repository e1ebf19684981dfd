package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
	return m
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
