// Command kwload measures signing throughput of a Keyward server from a
// separate process, next to raw Go signing on the same machine.
//
//	go run ./cmd/keyward serve --dev &
//	go run ./cmd/kwload -alg RS256 -duration 10s
//
// To compare with raw signing on the same cores, give the server its own
// core and the load its own (README, Performance):
//
//	GOMAXPROCS=1 taskset -c 0 keyward serve --dev &
//	GOMAXPROCS=1 taskset -c 1 kwload -alg RS256 -concurrency 4
//
// It signs with one key of the dev HSM as the bootstrap administrator,
// over HTTPS with keep-alive, from -concurrency workers, for -duration.
// It talks only to the server named in bootstrap.json, and only on
// loopback. Every loop is bounded by the duration.
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
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

func run() error {
	bootPath := flag.String("bootstrap", "keyward-data/bootstrap.json", "the server's bootstrap.json")
	alg := flag.String("alg", "RS256", "RS256 (an RSA-2048 key) or ES256 (a P-256 key)")
	duration := flag.Duration("duration", 10*time.Second, "how long each measurement runs (at most 5m)")
	concurrency := flag.Int("concurrency", 8, "requests in flight (at most 256)")
	flag.Parse()
	if *duration <= 0 || *duration > 5*time.Minute || *concurrency < 1 || *concurrency > 256 {
		return errors.New("-duration must be in (0, 5m] and -concurrency in [1, 256]")
	}
	var b bootstrap
	data, err := os.ReadFile(*bootPath)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return fmt.Errorf("%s: %w", *bootPath, err)
	}
	if err := loopbackOnly(b.HSMURI); err != nil {
		return err
	}
	hc, err := httpClient(b.CAFile, *concurrency)
	if err != nil {
		return err
	}
	ctx := context.Background()
	tok, err := token(ctx, hc, b)
	if err != nil {
		return err
	}
	key, create := "kwload-rsa2048", `{"kty":"RSA-HSM","key_size":2048}`
	if *alg == "ES256" {
		key, create = "kwload-p256", `{"kty":"EC-HSM","crv":"P-256"}`
	} else if *alg != "RS256" {
		return fmt.Errorf("unknown -alg %q", *alg)
	}
	if st, body, err := do(ctx, hc, tok, "POST", b.HSMURI+"/keys/"+key+"/create?api-version=7.6", []byte(create)); err != nil || st != 200 {
		return fmt.Errorf("creating %s: %d %s %v", key, st, body, err)
	}
	digest := sha256.Sum256([]byte("kwload"))
	body, _ := json.Marshal(map[string]string{"alg": *alg, "value": base64.RawURLEncoding.EncodeToString(digest[:])})
	signURL := b.HSMURI + "/keys/" + key + "/sign?api-version=7.6"

	fmt.Printf("kwload: %s with %s for %s, %d in flight, GOMAXPROCS=%d\n", *alg, key, *duration, *concurrency, runtime.GOMAXPROCS(0))
	rawOps := measureRaw(*alg, *duration)
	ops, lat, errs := measureServer(ctx, hc, tok, signURL, body, *concurrency, *duration)
	if errs > 0 {
		return fmt.Errorf("%d requests failed", errs)
	}
	slices.Sort(lat)
	fmt.Printf("raw Go signing:   %8.0f signatures/s\n", rawOps)
	fmt.Printf("through Keyward:  %8.0f signatures/s   p50 %v  p99 %v\n", ops, pct(lat, 50), pct(lat, 99))
	fmt.Printf("ratio:            %8.1f %%\n", 100*ops/rawOps)
	return nil
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

func token(ctx context.Context, hc *http.Client, b bootstrap) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {b.ClientID}, "client_secret": {b.ClientSecret},
		"scope": {"https://managedhsm.azure.net/.default"}}
	req, _ := http.NewRequestWithContext(ctx, "POST", b.AuthorityHost+b.TenantID+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
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

func do(ctx context.Context, hc *http.Client, tok, method, u string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

func measureServer(ctx context.Context, hc *http.Client, tok, u string, body []byte, workers int, d time.Duration) (float64, []time.Duration, int64) {
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
				st, _, err := do(ctx, hc, tok, "POST", u, body)
				if err != nil || st != 200 {
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
	return float64(n.Load()) / d.Seconds(), lat, errs.Load()
}

// measureRaw signs with the standard library on every core for d.
func measureRaw(alg string, d time.Duration) float64 {
	digest := sha256.Sum256([]byte("kwload"))
	var sign func() error
	if alg == "ES256" {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		sign = func() error { _, err := ecdsa.SignASN1(rand.Reader, k, digest[:]); return err }
	} else {
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		sign = func() error { _, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, digest[:]); return err }
	}
	var n atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if sign() == nil {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[(len(sorted)-1)*p/100].Round(10 * time.Microsecond)
}
