package oidc

import (
	"net/http"
	"net/url"
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
