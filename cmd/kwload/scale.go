package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// scale is the state-scale measurement: create n keys (at concurrency),
// then read them as a big tenant does — gets of random keys, and list
// pages at the start, the middle and the end of the list — and the
// server's memory.
func scale(ctx context.Context, e *target, n, concurrency, pid int) error {
	name := func(i int) string { return fmt.Sprintf("scale-%07d", i) }
	start := time.Now()
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := e.createKey(ctx, name(i), `{"kty":"EC-HSM","crv":"P-256"}`); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				if i > 0 && i%100000 == 0 {
					fmt.Fprintf(os.Stderr, "kwload: %d keys, %.0f/s\n", i, float64(i)/time.Since(start).Seconds())
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d creations failed, the first: %v", f, n, firstErr.Load())
	}
	fmt.Printf("| create %d keys | %.0f keys/s | %s |\n", n, float64(n)/took.Seconds(), took.Round(time.Second))

	timed := func(what string, count int, u func() string) error {
		var lat []time.Duration
		for range count {
			t0 := time.Now()
			st, err := e.status(ctx, u())
			if err != nil || st != http.StatusOK {
				return fmt.Errorf("%s: %d %v", what, st, err)
			}
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		fmt.Printf("| %s | p50 %s | p99 %s |\n", what, pct(lat, 50), pct(lat, 99))
		return nil
	}
	page := func(after int) func() string {
		return func() string {
			u := e.hsm("/keys" + apiVersion + "&maxresults=25")
			if after >= 0 {
				u += "&$skiptoken=" + base64.RawURLEncoding.EncodeToString([]byte(name(after)))
			}
			return u
		}
	}
	steps := []struct {
		what string
		u    func() string
	}{
		{"get a random key (2 000)", func() string { return e.hsm("/keys/" + name(rand.IntN(n)) + apiVersion) }},
		{"list, first page (25)", page(-1)},
		{"list, a middle page", page(n / 2)},
		{"list, the last page", page(n - 26)},
	}
	for i, s := range steps {
		count := 200
		if i == 0 {
			count = 2000
		}
		if err := timed(s.what, count, s.u); err != nil {
			return err
		}
	}
	if pid != 0 {
		if rss, err := serverRSS(pid); err == nil {
			fmt.Printf("| server memory (VmRSS) | %s | |\n", rss)
		}
	}
	return nil
}

// status sends a GET and reads its answer whole.
func (e *target) status(ctx context.Context, u string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+e.tok)
	resp, err := e.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// serverRSS is the server's resident memory, from /proc/PID/status.
func serverRSS(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no VmRSS")
}
