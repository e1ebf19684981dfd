// Command kwload measures a Keyward server from a separate process: for
// each operation, requests per second, p50 and p99 latency, and — given
// the server's pid — the server's CPU time per request, next to the same
// cryptography done raw by the standard library on the load's own core.
//
// scripts/bench runs it as docs/performance.md describes: the server on
// one core (taskset -c 0, GOMAXPROCS=1), the load on the other:
//
//	GOMAXPROCS=1 taskset -c 0 keyward serve --dev &
//	GOMAXPROCS=1 taskset -c 1 kwload -server-pid $! -ops es256,rs256
//
// It signs in as the bootstrap administrator of bootstrap.json, talks only
// to that server and only on loopback, over HTTPS with keep-alive, from
// -concurrency workers; every loop is bounded by -duration.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type bootstrap struct {
	TenantID, AuthorityHost, ClientID, ClientSecret, HSMURI, CAFile string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kwload:", err)
		os.Exit(1)
	}
}

// result is one operation's measurement.
type result struct {
	name             string
	perSecond        float64
	p50, p99         time.Duration
	cpuPerRequest    time.Duration // the server's; 0 when unknown
	rawPerSecond     float64       // the same work raw, here; 0 when none
	requests, errors int64
}

func run() error {
	bootPath := flag.String("bootstrap", "keyward-data/bootstrap.json", "the server's bootstrap.json")
	names := flag.String("ops", "es256,rs256", "operations, comma-separated: "+opNames()+", or all")
	duration := flag.Duration("duration", 5*time.Second, "how long each operation is measured (at most 5m), after a 1 s warm-up")
	concurrency := flag.Int("concurrency", 8, "requests in flight (at most 256)")
	pid := flag.Int("server-pid", 0, "the server's process id, to measure its CPU time per request (/proc/PID/stat)")
	profileURL := flag.String("profile-url", "", "the server's /debug/pprof/profile URL (keyward serve --pprof)")
	profileOp := flag.String("profile-op", "es256", "the operation to profile during")
	profileOut := flag.String("profile-out", "", "where to write the CPU profile")
	markdown := flag.Bool("markdown", false, "print the table as Markdown")
	scaleKeys := flag.Int("scale", 0, "instead of -ops: create this many keys, then time gets and list pages among them")
	flag.Parse()
	if *duration <= 0 || *duration > 5*time.Minute || *concurrency < 1 || *concurrency > 256 {
		return errors.New("-duration must be in (0, 5m] and -concurrency in [1, 256]")
	}
	chosen, err := pick(*names)
	if err != nil {
		return err
	}
	var b bootstrap
	data, err := os.ReadFile(*bootPath)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return fmt.Errorf("%s: %w", *bootPath, err)
	}
	for _, u := range []string{b.HSMURI, b.AuthorityHost, *profileURL} {
		if err := loopbackOnly(u); u != "" && err != nil {
			return err
		}
	}
	hc, err := httpClient(b.CAFile, *concurrency)
	if err != nil {
		return err
	}
	ctx := context.Background()
	tok, err := token(ctx, hc, b, "https://managedhsm.azure.net/.default")
	if err != nil {
		return err
	}
	e := &target{hc: hc, b: b, tok: tok}
	if *scaleKeys > 0 {
		return scale(ctx, e, *scaleKeys, *concurrency, *pid)
	}
	fmt.Fprintf(os.Stderr, "kwload: %s each, %d in flight, GOMAXPROCS=%d here\n", *duration, *concurrency, runtime.GOMAXPROCS(0))
	var results []result
	for _, o := range chosen {
		req, err := o.setup(ctx, e)
		if err != nil {
			return fmt.Errorf("%s: %w", o.name, err)
		}
		measure(ctx, hc, req, *concurrency, time.Second) // warm-up: connections, caches
		var profile chan error
		if *profileURL != "" && *profileOut != "" && o.name == *profileOp {
			profile = make(chan error, 1)
			go func() { profile <- saveProfile(ctx, *profileURL, *duration, *profileOut) }()
		}
		cpu0, cpuErr := serverCPU(*pid)
		r := measure(ctx, hc, req, *concurrency, *duration)
		cpu1, _ := serverCPU(*pid)
		if cpuErr == nil && *pid != 0 && r.requests > 0 {
			r.cpuPerRequest = (cpu1 - cpu0) / time.Duration(r.requests)
		}
		if profile != nil {
			if err := <-profile; err != nil {
				return fmt.Errorf("profiling %s: %w", o.name, err)
			}
		}
		r.name = o.name
		if o.raw != nil {
			r.rawPerSecond = measureRaw(o.raw(), *duration)
		}
		if r.errors > 0 {
			return fmt.Errorf("%s: %d of %d requests failed", o.name, r.errors, r.requests+r.errors)
		}
		results = append(results, r)
		fmt.Fprintf(os.Stderr, "kwload: %s done\n", o.name)
	}
	report(os.Stdout, results, *markdown)
	return nil
}

func opNames() string {
	var n []string
	for _, o := range ops {
		n = append(n, o.name)
	}
	return strings.Join(n, ",")
}

func pick(names string) ([]op, error) {
	if names == "all" {
		return ops, nil
	}
	var out []op
	for _, n := range strings.Split(names, ",") {
		i := slices.IndexFunc(ops, func(o op) bool { return o.name == strings.TrimSpace(n) })
		if i < 0 {
			return nil, fmt.Errorf("unknown operation %q (known: %s)", n, opNames())
		}
		out = append(out, ops[i])
	}
	return out, nil
}

// measure runs workers for d, each sending the op's request in a loop, and
// returns the rate and latencies of the answers that were 200.
func measure(ctx context.Context, hc *http.Client, newReq func(context.Context) (*http.Request, error), workers int, d time.Duration) result {
	var n, errs atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(deadline) {
				start := time.Now()
				req, err := newReq(ctx)
				if err == nil {
					var resp *http.Response
					if resp, err = hc.Do(req); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							err = fmt.Errorf("HTTP %d", resp.StatusCode)
						}
					}
				}
				if err != nil {
					errs.Add(1)
					continue
				}
				mine = append(mine, time.Since(start))
				n.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	return result{perSecond: float64(n.Load()) / d.Seconds(), p50: pct(lat, 50), p99: pct(lat, 99), requests: n.Load(), errors: errs.Load()}
}

// measureRaw runs op in a loop on this process's cores for d.
func measureRaw(op func() error, d time.Duration) float64 {
	var n atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if op() == nil {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}

func report(w io.Writer, rs []result, markdown bool) {
	row := func(cells ...string) {
		if markdown {
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
			return
		}
		fmt.Fprintf(w, "%-13s %10s %9s %9s %12s %12s %8s\n", toAny(cells)...)
	}
	row("operation", "req/s", "p50", "p99", "server CPU", "raw ops/s", "ratio")
	if markdown {
		row("---", "---:", "---:", "---:", "---:", "---:", "---:")
	}
	for _, r := range rs {
		cpu, raw, ratio := "–", "–", "–"
		if r.cpuPerRequest > 0 {
			cpu = fmt.Sprintf("%.0f µs", float64(r.cpuPerRequest)/float64(time.Microsecond))
		}
		if r.rawPerSecond > 0 {
			raw = fmt.Sprintf("%.0f", r.rawPerSecond)
			ratio = fmt.Sprintf("%.1f %%", 100*r.perSecond/r.rawPerSecond)
		}
		row(r.name, fmt.Sprintf("%.0f", r.perSecond), r.p50.String(), r.p99.String(), cpu, raw, ratio)
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i := range s {
		out[i] = s[i]
	}
	return out
}

// serverCPU is the user and system time the process has used, from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s: Linux's
// USER_HZ).
func serverCPU(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, errors.New("no pid")
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	var utime, stime int64
	if _, err := fmt.Sscan(f[11], &utime); err != nil {
		return 0, err
	}
	if _, err := fmt.Sscan(f[12], &stime); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// saveProfile fetches a CPU profile of d from the server.
func saveProfile(ctx context.Context, profileURL string, d time.Duration, out string) error {
	u := profileURL + "?seconds=" + fmt.Sprint(int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// loopbackOnly refuses targets off this machine: a load test here may only
// send traffic to loopback addresses.
func loopbackOnly(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return err
	}
	host := p.Hostname()
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refusing to load %s: only loopback targets are allowed", host)
}

func httpClient(caFile string, conns int) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns,
	}}, nil
}

func token(ctx context.Context, hc *http.Client, b bootstrap, scope string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {b.ClientID}, "client_secret": {b.ClientSecret},
		"scope": {scope}}
	req, _ := http.NewRequestWithContext(ctx, "POST", strings.TrimSuffix(b.AuthorityHost, "/")+"/"+b.TenantID+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var t struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil || t.AccessToken == "" {
		return "", fmt.Errorf("no token (HTTP %d)", resp.StatusCode)
	}
	return t.AccessToken, nil
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[(len(sorted)-1)*p/100].Round(10 * time.Microsecond)
}
