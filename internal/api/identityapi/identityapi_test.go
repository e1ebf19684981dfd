package identityapi

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/api/route"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/internal/store/sqlite"
)

// newTestAPI serves the identity API's operations; subjects collects the
// sign-in subject each token request recorded.
func newTestAPI(t *testing.T) (*API, *identity.Directory, *httptest.Server, func() []string) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "id.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	seal, err := domain.OpenFileSeal(filepath.Join(t.TempDir(), "seal"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := identity.NewDirectory(db, "tenant-1", rand.Reader, time.Now)
	pepper, err := identity.LoadOrCreatePepper(ctx, db, seal, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir.SetPepper(pepper)
	key, err := identity.LoadOrCreateSigningKey(ctx, db, seal, rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tokens := identity.NewTokenService(key, "https://kw/tenant-1/v2.0", dir, []string{"https://managedhsm.azure.net"}, time.Now)
	a := New(dir, identity.NewFederation(dir, nil, time.Now), tokens, nil, "https://kw/", slog.New(slog.NewTextHandler(io.Discard, nil)))
	mux := http.NewServeMux()
	var mu sync.Mutex
	var seen []string
	for _, op := range a.Operations() {
		mux.HandleFunc(op.Method+" "+op.Pattern, func(w http.ResponseWriter, r *http.Request) {
			rec := &route.Record{}
			op.Handle(w, r.WithContext(route.WithRecord(r.Context(), rec)))
			if op.Name == "Token" {
				mu.Lock()
				seen = append(seen, rec.SignInSubject)
				mu.Unlock()
			}
		})
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	subjects := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(seen) }
	return a, dir, srv, subjects
}

// TestRecordNamesTheSubject: each token request's record names the client
// id (form or HTTP Basic) or the user name, never a secret, also when the
// request fails.
func TestRecordNamesTheSubject(t *testing.T) {
	ctx := context.Background()
	_, dir, srv, subjects := newTestAPI(t)
	p, _ := dir.CreateServicePrincipal(ctx, store.KindServicePrincipal, "app")
	secret, _, err := dir.AddSecret(ctx, p.ID, "s")
	if err != nil {
		t.Fatal(err)
	}
	scope := "https://managedhsm.azure.net/.default"
	post := func(form url.Values, basicUser, basicPass string) int {
		req, _ := http.NewRequest("POST", srv.URL+"/tenant-1/oauth2/v2.0/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basicUser != "" {
			req.SetBasicAuth(basicUser, basicPass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := post(url.Values{"grant_type": {"client_credentials"}, "client_id": {p.AppID}, "client_secret": {secret}, "scope": {scope}}, "", ""); st != 200 {
		t.Fatalf("good secret: %d", st)
	}
	post(url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}, p.AppID, "wrong")
	post(url.Values{"grant_type": {"password"}, "username": {"eve@contoso.test"}, "password": {"guess"}, "scope": {scope}}, "", "")
	post(url.Values{"grant_type": {"client_credentials"}, "client_id": {"x"}, "client_secret": {"y"}, "scope": {"https://evil/.default"}}, "", "")
	post(url.Values{}, "", "")
	want := []string{p.AppID, p.AppID, "eve@contoso.test", "x", ""}
	seen := subjects()
	if !slices.Equal(seen, want) {
		t.Fatalf("records named %q, want %q", seen, want)
	}
	for _, s := range seen {
		if strings.Contains(s, secret) || s == "wrong" || s == "guess" {
			t.Fatalf("a record holds a secret: %q", s)
		}
	}
}

// TestSourceOf: the lockout's source is the peer address; X-Forwarded-For
// is ignored and an IPv6 peer stands for its /64.
func TestSourceOf(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.7:5555":             "192.0.2.7",
		"[::ffff:192.0.2.7]:1":       "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443": "2001:db8:1:2::/64",
		"not an address":             "not an address",
	} {
		r := httptest.NewRequest("POST", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", "203.0.113.9")
		if got := sourceOf(r); got != want {
			t.Errorf("sourceOf(%s) = %s, want %s", remote, got, want)
		}
	}
}
