package server_test

// Regression tests for the outside review's findings on the server's front
// door: each test replays the attack, black-box over HTTPS.

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/servertest"
)

const (
	armResource   = "https://management.azure.com"
	graphResource = "https://graph.microsoft.com"
)

// sendAs sends a request to the server's address with the Host header
// set to host (the URL keeps the loopback address, as a client that was
// pointed at the server would).
func sendAs(t *testing.T, env *servertest.Env, method, host, path, token string) *servertest.Response {
	t.Helper()
	u, err := url.Parse(env.Boot.HSMURI)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, "https://"+u.Host+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := env.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &servertest.Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

func serverPort(t *testing.T, env *servertest.Env) string {
	u, err := url.Parse(env.Boot.HSMURI)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// journalRecords reads a journal stream's records.
func journalRecords(t *testing.T, env *servertest.Env, stream string) []map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(env.Dir, "audit", stream+".jsonl"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// waitForRecord waits until a record of stream satisfies match: records
// are written after the response.
func waitForRecord(t *testing.T, env *servertest.Env, stream string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, r := range journalRecords(t, env, stream) {
			if match(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching record in the %s stream", stream)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Attack 1: a Host naming an HSM label that is no valid stream name, or no
// HSM at all, stopped every request on every surface with 503.
func TestUnknownHSMHostCannotStopTheService(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	port := serverPort(t, env)
	tok := env.AdminToken(hsmResource)
	labels := []string{"a_b", strings.Repeat("x", 70), "nosuch", "tenant", "Nosuch2"}
	for _, label := range labels {
		host := label + ".mhsm.localhost:" + port
		if r := sendAs(t, env, "GET", host, "/keys?api-version=7.4", ""); r.Status != http.StatusUnauthorized {
			t.Fatalf("%s without a token: %d %s", label, r.Status, r.Body)
		}
		r := sendAs(t, env, "GET", host, "/keys?api-version=7.4", tok)
		if r.Status != http.StatusNotFound {
			t.Fatalf("%s with a token: %d %s, want 404", label, r.Status, r.Body)
		}
		// The service goes on serving, on every surface.
		if r := env.Do("GET", "/keys?api-version=7.4", tok, nil); r.Status != http.StatusOK {
			t.Fatalf("after a request for %s the dev HSM answers %d %s", label[:min(len(label), 10)], r.Status, r.Body)
		}
		if r := env.Do("GET", env.Boot.AuthorityHost+"subscriptions?api-version=2022-12-01", env.AdminToken(armResource), nil); r.Status != http.StatusOK {
			t.Fatalf("after a request for %s ARM answers %d %s", label[:min(len(label), 10)], r.Status, r.Body)
		}
		// The request is recorded in the tenant's stream.
		waitForRecord(t, env, "tenant", func(m map[string]any) bool {
			p, _ := m["properties"].(map[string]any)
			h, _ := p["requestHost"].(string)
			u, _ := m["requestUri"].(string)
			return strings.HasPrefix(h, label+".mhsm.localhost") && strings.HasPrefix(u, env.Boot.AuthorityHost) && m["httpStatusCode"] == float64(404)
		})
	}
	// No stream was opened for a name that is no HSM's.
	files, err := os.ReadDir(filepath.Join(env.Dir, "audit"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := strings.ToLower(f.Name())
		for _, label := range labels[:3] {
			if strings.HasPrefix(name, strings.ToLower(label[:min(len(label), 10)])) {
				t.Errorf("the journal has a file %s for an HSM that does not exist", f.Name())
			}
		}
		if strings.HasPrefix(name, "nosuch") {
			t.Errorf("the journal has a file %s for an HSM that does not exist", f.Name())
		}
	}
}

// Attack 4: failed sign-in on the management and directory surfaces
// dropped the connection and left no record. Every surface answers 401
// with its challenge, and records the refusal.
func TestEverySurfaceChallengesBadTokens(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	base := env.Boot.AuthorityHost
	surfaces := []struct{ name, url, resource, otherResource string }{
		{"data plane", env.Boot.HSMURI + "/keys?api-version=7.4", hsmResource, armResource},
		{"resource manager", base + "subscriptions?api-version=2022-12-01", armResource, graphResource},
		{"graph", base + "v1.0/users", graphResource, hsmResource},
	}
	for _, s := range surfaces {
		credentials := map[string]string{
			"none":           "",
			"empty bearer":   "Bearer ",
			"garbage bearer": "Bearer not.a.jwt",
			"basic":          "Basic YWRtaW46YWRtaW4=",
			"other audience": "Bearer " + env.AdminToken(s.otherResource),
		}
		for what, header := range credentials {
			agent := "keyward-test/" + strings.ReplaceAll(s.name+"-"+what, " ", "-")
			req, err := http.NewRequest("GET", s.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if header != "" {
				req.Header.Set("Authorization", header)
			}
			req.Header.Set("User-Agent", agent)
			resp, err := env.HTTP.Do(req)
			if err != nil {
				t.Fatalf("%s, %s token: the request failed: %v", s.name, what, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s, %s token: %d, want 401", s.name, what, resp.StatusCode)
			}
			ch := resp.Header.Get("WWW-Authenticate")
			if !strings.HasPrefix(ch, `Bearer authorization="`) || !strings.Contains(ch, `resource="`+s.resource+`"`) {
				t.Fatalf("%s, %s token: challenge %q", s.name, what, ch)
			}
			stream := "tenant"
			if s.name == "data plane" {
				stream = "dev"
			}
			waitForRecord(t, env, stream, func(m map[string]any) bool {
				return m["clientInfo"] == agent && m["httpStatusCode"] == float64(401)
			})
		}
	}
}

// Item 8: the dev HSM's bare-address fallback answered for any host, so
// {other}.{x}.{suffix} and a trailing-dot name reached the dev HSM; and
// key ids were built from the request's Host header.
func TestDevFallbackAndKeyIDsFollowConfiguration(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	port := serverPort(t, env)
	tok := env.AdminToken(hsmResource)
	for _, host := range []string{"other.x.mhsm.localhost:" + port, "evil.example:" + port, "mhsm.localhost:" + port} {
		if r := sendAs(t, env, "GET", host, "/keys?api-version=7.4", tok); r.Status != http.StatusNotFound {
			t.Errorf("Host %s reached a data plane: %d %s", host, r.Status, r.Body)
		}
	}
	// A fully qualified name with its trailing dot is the same HSM.
	if r := sendAs(t, env, "GET", "dev.mhsm.localhost.:"+port, "/keys?api-version=7.4", tok); r.Status != http.StatusOK {
		t.Errorf("dev.mhsm.localhost. answers %d %s", r.Status, r.Body)
	}
	// Key ids come from the HSM's configured URI, whatever the Host says.
	devURI := env.Server.HSMURI("dev")
	for host, want := range map[string]string{
		"dev.mhsm.localhost:1":       devURI,
		"127.0.0.1:1":                env.Boot.HSMURI,
		"DEV.mhsm.localhost:" + port: devURI,
	} {
		u, _ := url.Parse(env.Boot.HSMURI)
		req, _ := http.NewRequest("POST", "https://"+u.Host+"/keys/k"+strconv.Itoa(len(host))+"/create?api-version=7.4",
			strings.NewReader(`{"kty":"EC","crv":"P-256"}`))
		req.Host = host
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := env.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Key struct{ Kid string } }
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(out.Key.Kid, want+"/keys/") {
			t.Errorf("Host %s: %d, kid %q, want it under %s", host, resp.StatusCode, out.Key.Kid, want)
		}
	}
}

// Item 8: TLS 1.2 offered CBC-SHA1 suites.
func TestTLS12OffersOnlyAEADSuites(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	u, _ := url.Parse(env.Boot.HSMURI)
	pem, err := os.ReadFile(env.Boot.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	dial := func(suites []uint16) error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", u.Host,
			&tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS12, CipherSuites: suites})
		if err == nil {
			c.Close()
		}
		return err
	}
	for _, s := range []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256} {
		if dial([]uint16{s}) == nil {
			t.Errorf("the server accepted TLS 1.2 with %s", tls.CipherSuiteName(s))
		}
	}
	if err := dial([]uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}); err != nil {
		t.Errorf("TLS 1.2 with ECDHE and AES-GCM refused: %v", err)
	}
}

// Item 10: two servers on one data directory overwrote each other's files.
func TestSecondServerOnADataDirectoryRefusesToStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := servertest.StartIn(t, dir)
	if _, err := servertest.TryStart(t, dir, nil); err == nil {
		t.Fatal("a second server started on a data directory in use")
	} else if !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Fatalf("the refusal does not name the holder: %v", err)
	}
	first.Stop()
	servertest.StartIn(t, dir) // free again once the first has stopped
}

// Item 8: the database files took the umask's mode (0644), readable by
// every local user, when the directory existed already.
func TestDatabaseFilesAreOwnerOnly(t *testing.T) {
	t.Setenv(servertest.EngineEnv, "sqlite") // the files are SQLite's, in both runs
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A database left world-readable by an earlier version is tightened.
	env := servertest.StartIn(t, dir)
	env.Stop()
	if err := os.Chmod(filepath.Join(dir, "keyward.db"), 0o644); err != nil {
		t.Fatal(err)
	}
	env = servertest.StartIn(t, dir)
	if r := env.Do("GET", "/keys?api-version=7.4", env.AdminToken(hsmResource), nil); r.Status != http.StatusOK {
		t.Fatalf("list keys: %d", r.Status)
	}
	for _, name := range []string{"keyward.db", "keyward.db-wal", "keyward.db-shm"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
}

// Item 6: headers are copied into audit records; a 100 KiB header block
// is refused before any handler runs.
func TestOversizeHeadersRefused(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	r := env.DoWithHeaders("GET", "/keys?api-version=7.4", "", nil, map[string]string{"User-Agent": strings.Repeat("A", 100<<10)})
	if r.Status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 100 KiB header: %d, want 431", r.Status)
	}
}

// Item 8: a custom role with the data action "*" was accepted, granting
// every data action, including ones a later version adds.
func TestCustomRoleRefusesBareWildcard(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	tok := env.AdminToken(hsmResource)
	for _, perms := range []map[string]any{
		{"dataActions": []string{"*"}},
		{"dataActions": []string{"Microsoft.KeyVault/managedHsm/keys/read/action"}, "notDataActions": []string{" * "}},
	} {
		r := env.Do("PUT", "/providers/Microsoft.Authorization/roleDefinitions/"+servertest.NewGUID()+"?api-version=7.6", tok,
			map[string]any{"properties": map[string]any{"roleName": "everything", "permissions": []map[string]any{perms}}})
		if r.Status != http.StatusBadRequest || r.ErrorCode() != "BadParameter" {
			t.Errorf("%v: %d %s, want 400 BadParameter", perms, r.Status, r.Body)
		}
	}
}

// Item 8: repeated key_ops were stored and shown as sent.
func TestDuplicateKeyOpsAreFolded(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	tok := env.AdminToken(hsmResource)
	r := env.Do("POST", "/keys/dup/create?api-version=7.4", tok,
		map[string]any{"kty": "EC", "crv": "P-256", "key_ops": []string{"sign", "sign", "verify", "sign"}})
	var out struct {
		Key struct {
			KeyOps []string `json:"key_ops"`
		}
	}
	if err := json.Unmarshal(r.Body, &out); err != nil || r.Status != http.StatusOK {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	if strings.Join(out.Key.KeyOps, ",") != "sign,verify" {
		t.Errorf("create: key_ops %v, want [sign verify]", out.Key.KeyOps)
	}
	r = env.Do("PATCH", "/keys/dup?api-version=7.4", tok, map[string]any{"key_ops": []string{"verify", "verify"}})
	if err := json.Unmarshal(r.Body, &out); err != nil || r.Status != http.StatusOK {
		t.Fatalf("update: %d %s", r.Status, r.Body)
	}
	if strings.Join(out.Key.KeyOps, ",") != "verify" {
		t.Errorf("update: key_ops %v, want [verify]", out.Key.KeyOps)
	}
}

// Item 6: failed sign-ins name the account they were for (never the
// secret), so that guessing against one account shows in the log.
func TestFailedSignInRecordsItsSubject(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"guessed-client-id"},
		"client_secret": {"wrong-secret-value"}, "scope": {hsmResource + "/.default"}}
	resp, err := env.HTTP.PostForm(env.Boot.AuthorityHost+env.Boot.TenantID+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 {
		t.Fatalf("a wrong secret: %d", resp.StatusCode)
	}
	rec := waitForRecord(t, env, "tenant", func(m map[string]any) bool {
		p, _ := m["properties"].(map[string]any)
		return p["signInSubject"] == "guessed-client-id"
	})
	if b, _ := json.Marshal(rec); strings.Contains(string(b), "wrong-secret-value") {
		t.Fatal("the record holds the secret")
	}
}

// The review's follow-ups on records: requestUri came from the Host
// header (a client could make records name any host), and a query word
// with no "=" was kept as sent, though it may be a secret.
func TestRecordNamesTheConfiguredHost(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	r := sendAs(t, env, "GET", "evil.example", "/metadata/endpoints?S9secretonly&api-version=1", "")
	if r.Status != http.StatusOK {
		t.Fatalf("metadata: %d", r.Status)
	}
	rec := waitForRecord(t, env, "tenant", func(m map[string]any) bool {
		p, _ := m["properties"].(map[string]any)
		return p["requestHost"] == "evil.example"
	})
	u := rec["requestUri"].(string)
	if !strings.HasPrefix(u, env.Boot.AuthorityHost+"metadata/endpoints?") || strings.Contains(u, "S9secretonly") || !strings.Contains(u, "api-version=1") {
		t.Fatalf("requestUri %q", u)
	}
}

// The review grew the server's memory from 88 to 361 MB as a principal
// with no role, asking ARM PIM lists for assignedTo('<random string>'):
// each made-up id was looked up and cached. An id must be an object id.
func TestPIMAssignedToTakesObjectIDsOnly(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	nobody := env.ServicePrincipal("nobody")
	sub := firstSubscription(t, env)
	for _, f := range []string{"assignedTo('" + strings.Repeat("a", 900) + "')", "assignedTo('not-an-id')"} {
		r := env.Do("GET", env.Boot.AuthorityHost+strings.TrimPrefix(sub, "/")+"/providers/Microsoft.Authorization/roleAssignmentScheduleRequests?api-version=2020-10-01&$filter="+url.QueryEscape(f),
			env.Token(nobody.Cred, armResource), nil)
		if r.Status != http.StatusBadRequest || r.ErrorCode() != "InvalidFilterInQueryString" {
			t.Errorf("%.40s: %d %s", f, r.Status, r.Body)
		}
	}
}
