package oidc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRedirectsStayOnHTTPS: a discovery document or key set that redirects
// off https is not followed.
func TestRedirectsStayOnHTTPS(t *testing.T) {
	k := NewKeys(nil, time.Now, false)
	u, _ := url.Parse("http://plain.example/keys")
	if err := k.client.CheckRedirect(&http.Request{URL: u}, []*http.Request{{}}); err == nil {
		t.Fatal("a redirect to http is followed")
	}
	u, _ = url.Parse("https://example.com/keys")
	if err := k.client.CheckRedirect(&http.Request{URL: u}, []*http.Request{{}}); err != nil {
		t.Fatalf("an https redirect: %v", err)
	}
}

// TestConcurrentAsksFetchOnce replays an attack: requests that came
// together each fetched the issuer's metadata (each up to the fetch
// timeout). Now they wait for one fetch.
func TestConcurrentAsksFetchOnce(t *testing.T) {
	var fetches atomic.Int32
	release := make(chan struct{})
	var srv *httptest.Server
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		<-release
		json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/keys"})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"keys":[]}`)) })
	srv = httptest.NewTLSServer(mux)
	defer srv.Close()
	k := NewKeys(srv.Client(), time.Now, false)

	var wg sync.WaitGroup
	for range 30 {
		wg.Go(func() {
			if _, err := k.For(context.Background(), srv.URL); err != nil {
				t.Error(err)
			}
		})
	}
	for fetches.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the others ask meanwhile
	close(release)
	wg.Wait()
	if n := fetches.Load(); n != 1 {
		t.Fatalf("30 concurrent asks fetched %d times", n)
	}

}

// TestCacheIsBounded: however many issuers are asked for, the cache keeps
// at most MaxIssuers, dropping the oldest.
func TestCacheIsBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	k := NewKeys(nil, func() time.Time { return now }, false)
	for i := range MaxIssuers + 100 {
		now = now.Add(time.Millisecond)
		k.For(context.Background(), fmt.Sprintf("http://issuer-%d.example", i)) // refused without a fetch
	}
	if len(k.cache) != MaxIssuers {
		t.Fatalf("the cache holds %d issuers", len(k.cache))
	}
	if _, ok := k.cache["http://issuer-0.example"]; ok {
		t.Fatal("the oldest issuer was kept")
	}
	if _, ok := k.cache[fmt.Sprintf("http://issuer-%d.example", MaxIssuers+99)]; !ok {
		t.Fatal("the newest issuer was dropped")
	}
}
