package server_test

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/servertest"
)

// sendWithHost sends GET path to the server with the given Host header.
func sendWithHost(t *testing.T, env *servertest.Env, host, path string) int {
	t.Helper()
	req, err := http.NewRequest("GET", strings.TrimSuffix(env.Boot.AuthorityHost, "/")+path, nil)
	must(t, err)
	u, _ := url.Parse(env.Boot.AuthorityHost)
	req.Host = host + ":" + u.Port()
	resp, err := env.HTTP.Do(req)
	must(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// One unauthenticated request whose Host named an HSM label that cannot be
// a stream used to fail the journal: every request after it got 503.
func TestAuditBadHSMLabelDoesNotStopTheService(t *testing.T) {
	env := servertest.Start(t)
	for _, label := range []string{"a_b", strings.Repeat("x", 65)} {
		if st := sendWithHost(t, env, label+".mhsm.localhost", "/keys?api-version=7.4"); st == http.StatusServiceUnavailable {
			t.Fatalf("the request for %s was refused: %d", label, st)
		}
	}
	if r := env.Do("GET", "/keys?api-version=7.4", env.AdminToken("https://managedhsm.azure.net"), nil); r.Status != 200 {
		t.Fatalf("after requests for bad labels: %d %s", r.Status, r.Body)
	}
}

// A client could make each record, and the storage it is shipped to, grow
// by as much as the server reads of a request; and query-string secrets
// landed in the log as sent.
func TestAuditRecordCapsAndRedacts(t *testing.T) {
	env := servertest.Start(t)
	long := strings.Repeat("A", 16<<10)
	r := env.DoWithHeaders("GET", "/keys?api-version=7.4&maxresults=5&client_secret=hunter2&pad="+long, "", nil,
		map[string]string{"User-Agent": long, "x-ms-client-request-id": long})
	if r.Status != 401 {
		t.Fatalf("status %d", r.Status)
	}
	env.Do("GET", env.Boot.AuthorityHost+env.Boot.TenantID+"/v2.0/.well-known/openid-configuration?Client_Secret=hunter2&API-Version=1", "", nil)
	var found bool
	for _, stream := range []string{audit.StreamOf(env.Boot.HSMName), audit.TenantStream} {
		for _, e := range readAudit(t, env, stream) {
			for name, v := range map[string]string{"requestUri": e.RequestURI, "clientInfo": e.ClientInfo, "correlationId": e.CorrelationID} {
				if len(v) > 4<<10 {
					t.Errorf("%s of %s is %d bytes", name, e.OperationName, len(v))
				}
				if len(v) > 1000 && !strings.HasSuffix(v, "…[truncated]") {
					t.Errorf("%s of %s is cut without a mark", name, e.OperationName)
				}
			}
			if strings.Contains(e.RequestURI, "client_secret=") {
				found = true
				if !strings.Contains(e.RequestURI, "api-version=7.4&maxresults=5&client_secret=REDACTED&pad=REDACTED") {
					t.Errorf("requestUri = %.200s", e.RequestURI)
				}
			}
			if strings.Contains(e.RequestURI, "Client_Secret=") && !strings.HasSuffix(e.RequestURI, "?Client_Secret=REDACTED&API-Version=1") {
				t.Errorf("requestUri = %s", e.RequestURI)
			}
		}
	}
	if !found {
		t.Fatal("no record of the request")
	}
	env.Stop()
	filepath.WalkDir(filepath.Join(env.Dir, "audit"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), "hunter2") {
				t.Errorf("the secret is in %s", p)
			}
		}
		return nil
	})
}
