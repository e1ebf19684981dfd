package cli

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFacesGoToTheServer: the resource manager's and the directory's URLs
// come from the server's metadata, and the CLI sends bearer tokens there.
// They must be https, and their hosts are dialled at the server signed in
// to, whatever DNS says: a server at Azure's names reached by address, or
// one whose metadata names another host, gets the tokens itself and no
// one else does.
func TestFacesGoToTheServer(t *testing.T) {
	var got []string
	var rm string // what the metadata names as the resource manager
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Host+r.URL.Path)
		if r.URL.Path == "/metadata/endpoints" {
			json.NewEncoder(w).Encode(map[string]any{"authentication": map[string]string{"tenant": "t"},
				"resourceManager": rm, "graph": "https://graph.microsoft.com/"})
		}
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)

	// httptest's certificate names example.com: the faces are there.
	p := &profile{Server: srv.URL + "/", CAFile: ca}
	discoverWith := func(named string) error {
		rm = named
		return discover(context.Background(), p)
	}
	for _, bad := range []string{"http://example.com/", "https://example.com/sub/path", "ftp://example.com/"} {
		if err := discoverWith(bad); err == nil || !strings.Contains(err.Error(), "resourceManager") {
			t.Errorf("metadata naming %s: %v", bad, err)
		}
	}
	if err := discoverWith("https://example.com/"); err != nil {
		t.Fatal(err)
	}
	if p.Management != "https://example.com/" || p.Graph != "https://graph.microsoft.com/" {
		t.Fatalf("profile: %+v", p)
	}
	hc, err := newHTTPClient(p)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	resp, err := hc.Get(p.managementURL() + "subscriptions")
	if err != nil {
		t.Fatalf("the resource manager's host was not dialled at the server: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if len(got) != 1 || got[0] != "example.com/subscriptions" {
		t.Fatalf("the server saw %v", got)
	}
}
