package server_test

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
)

// The review's SSRF: a principal with only Backup User named
// http://127.0.0.1:PORT/... as the backup container, and the server sent
// the SAS token there in the clear. Without --allow-private-endpoints, the
// URLs callers name must be https to public addresses, checked when named
// and again when dialled (a name that resolves to loopback is refused).
func TestCallerNamedURLsCannotReachTheServersNetwork(t *testing.T) {
	var hits atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			hits.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	env := servertest.StartWith(t, t.TempDir(), func(c *server.Config) { c.AllowPrivateEndpoints = false })
	backupUser := env.ServicePrincipal("backup-user")
	env.Assign(backupUser.ObjectID, "7b127d3c-77bd-4e3e-bbe0-dbb8971fa7f8", "/") // Managed HSM Backup User
	tok := env.Token(backupUser.Cred, hsmResource)
	for _, uri := range []string{
		"http://127.0.0.1:" + strconv.Itoa(port) + "/internal/container",
		"https://127.0.0.1:" + strconv.Itoa(port) + "/internal/container",
		"https://[::1]:" + strconv.Itoa(port) + "/internal/container",
		"https://169.254.169.254/metadata/container",
		"https://10.1.2.3/container",
	} {
		r := env.Do("POST", "/backup?api-version=7.6", tok, map[string]any{"storageResourceUri": uri, "token": "sv=2020-01-01&sig=SECRET"})
		if r.Status != http.StatusBadRequest {
			t.Errorf("backup to %s: %d %s, want 400", uri, r.Status, r.Body)
		}
	}
	// A host name that resolves to loopback passes the first check and is
	// refused when dialled: the job fails, and nothing connects.
	job := runJob(t, env, tok, "POST", "/backup", map[string]any{"storageResourceUri": "https://localhost:" + strconv.Itoa(port) + "/internal/container", "token": "sv=2020-01-01&sig=SECRET"})
	if job["status"] != "Failed" {
		t.Errorf("backup to localhost: %v", job)
	}
	// A storage account's blob endpoint is checked the same way.
	arm := env.AdminToken("https://management.azure.com")
	sub := strings.TrimPrefix(firstSubscription(t, env), "/")
	env.Do("PUT", env.Boot.AuthorityHost+sub+"/resourcegroups/logs?api-version=2021-04-01", arm, map[string]string{"location": "local"})
	acct := map[string]any{"properties": map[string]any{"primaryEndpoints": map[string]string{"blob": "http://127.0.0.1:" + strconv.Itoa(port) + "/acct"},
		"keywardCredential": map[string]string{"accountKey": "a2V5"}}}
	if r := env.Do("PUT", env.Boot.AuthorityHost+sub+"/resourceGroups/logs/providers/Microsoft.Storage/storageAccounts/internal1?api-version=2023-01-01", arm, acct); r.Status != http.StatusBadRequest {
		t.Errorf("a storage account on loopback: %d %s", r.Status, r.Body)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the server connected %d times to a loopback listener a caller named", n)
	}
}

func firstSubscription(t *testing.T, env *servertest.Env) string {
	var subs struct {
		Value []struct{ ID string }
	}
	must(t, jsonUnmarshal(env.Do("GET", env.Boot.AuthorityHost+"subscriptions?api-version=2022-12-01", env.AdminToken("https://management.azure.com"), nil).Body, &subs))
	return subs.Value[0].ID
}
