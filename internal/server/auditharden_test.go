package server_test

import (
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// With the data directory's disk full the server rightly answers 503, but
// once space was freed it used to keep refusing until restarted. It must
// serve again within seconds, by itself. Root only: a small tmpfs.
func TestAuditServesAgainAfterDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root; audit.TestJournalRecoversFromFullDisk covers the journal with an injected ENOSPC")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() }) // after the server stops
	env := servertest.StartIn(t, dir)
	tok := env.AdminToken("https://managedhsm.azure.net")
	get := func() int { return env.Do("GET", "/keys?api-version=7.4", tok, nil).Status }
	if st := get(); st != 200 {
		t.Fatalf("status %d", st)
	}
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	must(t, err)
	for {
		if _, err := f.Write(make([]byte, 64<<10)); err != nil {
			break
		}
	}
	for {
		if _, err := f.Write(make([]byte, 512)); err != nil {
			break
		}
	}
	f.Close()
	refused := false
	for range 50 {
		if get() == http.StatusServiceUnavailable {
			refused = true
			break
		}
	}
	if !refused {
		t.Fatal("the server never refused with its disk full")
	}
	time.Sleep(1500 * time.Millisecond)
	if st := get(); st != http.StatusServiceUnavailable {
		t.Fatalf("with the disk still full: %d", st)
	}
	must(t, os.Remove(filler))
	start := time.Now()
	for get() != 200 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("still refusing 5s after space was freed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("serving again %v after space was freed", time.Since(start))
	env.Stop()
	readAudit(t, env, audit.StreamOf(env.Boot.HSMName)) // the chain is whole
}
