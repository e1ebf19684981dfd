package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/servertest"
)

// ARM and Graph records name the operation as Azure does (the action, not
// a route pattern) and carry the authorization decision with the role
// assignment that allowed it, as the data plane's do.
func TestRecordsNameTheActionAndDecision(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	arm := env.AdminToken(armResource)
	sub := firstSubscription(t, env)
	if r := env.Do("PUT", env.Boot.AuthorityHost+strings.TrimPrefix(sub, "/")+"/resourcegroups/audited?api-version=2021-04-01", arm,
		map[string]string{"location": "local"}); r.Status != http.StatusCreated {
		t.Fatalf("create group: %d %s", r.Status, r.Body)
	}
	allowed := waitForRecord(t, env, "tenant", func(m map[string]any) bool {
		return m["operationName"] == "Microsoft.Resources/subscriptions/resourceGroups/write" && m["httpStatusCode"] == float64(201)
	})
	authz := allowed["properties"].(map[string]any)["authorization"].(map[string]any)
	if authz["decision"] != "Allowed" || !strings.Contains(authz["roleAssignmentId"].(string), "/providers/Microsoft.Authorization/roleAssignments/") ||
		authz["roleDefinitionId"] == "" {
		t.Fatalf("allowed ARM write: %v", authz)
	}
	nobody := env.ServicePrincipal("nobody")
	if r := env.Do("DELETE", env.Boot.AuthorityHost+strings.TrimPrefix(sub, "/")+"/resourcegroups/audited?api-version=2021-04-01",
		env.Token(nobody.Cred, armResource), nil); r.Status != http.StatusForbidden {
		t.Fatalf("delete by nobody: %d %s", r.Status, r.Body)
	}
	denied := waitForRecord(t, env, "tenant", func(m map[string]any) bool {
		return m["operationName"] == "Microsoft.Resources/subscriptions/resourceGroups/delete" && m["httpStatusCode"] == float64(403)
	})
	if d := denied["properties"].(map[string]any)["authorization"].(map[string]any)["decision"]; d != "Denied" {
		t.Fatalf("denied ARM delete: %v", denied["properties"])
	}
	// Role assignments at any scope are rows too.
	env.Do("GET", env.Boot.AuthorityHost+strings.TrimPrefix(sub, "/")+"/resourceGroups/audited/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01", arm, nil)
	waitForRecord(t, env, "tenant", func(m map[string]any) bool {
		p, _ := m["properties"].(map[string]any)
		return m["operationName"] == "Microsoft.Authorization/roleAssignments/read" && strings.HasSuffix(strings.ToLower(p["requestScope"].(string)), "/resourcegroups/audited")
	})
	// Graph: a directory write names Entra's permission and the role.
	if r := env.Graph("POST", "/groups", map[string]any{"displayName": "Audited", "mailNickname": "audited"}); r.Status != http.StatusCreated {
		t.Fatalf("create group: %d %s", r.Status, r.Body)
	}
	g := waitForRecord(t, env, "tenant", func(m map[string]any) bool { return m["operationName"] == "microsoft.directory/groups/create" })
	if a := g["properties"].(map[string]any)["authorization"].(map[string]any); a["decision"] != "Allowed" || a["roleDefinitionId"] == "" {
		t.Fatalf("graph write: %v", a)
	}
}

// A load balancer's probes: no token, JSON, no audit record.
func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	before := len(journalRecords(t, env, "tenant"))
	for path, want := range map[string]string{"/healthz": `"status":"ok"`, "/readyz": `"status":"ready"`} {
		r := env.Do("GET", env.Boot.AuthorityHost+strings.TrimPrefix(path, "/"), "", nil)
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), want) {
			t.Fatalf("%s: %d %s", path, r.Status, r.Body)
		}
	}
	// A POST is no probe: it goes through the door like any request.
	if r := env.Do("POST", env.Boot.AuthorityHost+"healthz", "", nil); r.Status != http.StatusNotFound {
		t.Fatalf("POST /healthz: %d", r.Status)
	}
	waitForRecord(t, env, "tenant", func(m map[string]any) bool { return m["httpStatusCode"] == float64(404) })
	for _, m := range journalRecords(t, env, "tenant")[before:] {
		u, _ := m["requestUri"].(string)
		if strings.HasSuffix(u, "/readyz") || strings.HasSuffix(u, "/healthz") && m["httpStatusCode"] != float64(404) {
			t.Fatalf("a probe left a record: %v", m)
		}
	}
}

// Prometheus metrics: requests by surface, operation and result, the
// latency histogram, whether the audit log keeps records and its backlog,
// cache hits, the database pool and leases held.
func TestMetrics(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	tok := env.AdminToken(hsmResource)
	env.Do("GET", "/keys?api-version=7.4", tok, nil)
	env.Do("GET", "/keys?api-version=7.4", "", nil)
	env.Do("GET", "/keys/absent?api-version=7.4", tok, nil) // the token again: from the cache
	rec := httptest.NewRecorder()
	env.Server.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`keyward_requests_total{code="200",operation="KeyList",result="Success",surface="dataplane"} 1`,
		`keyward_requests_total{code="401",operation="KeyList",result="Failure",surface="dataplane"} 1`,
		`keyward_request_duration_seconds_count{surface="dataplane"} 3`,
		`keyward_audit_ready 1`,
		`keyward_audit_backlog_records 0`,
		`keyward_audit_shipping_lag_seconds 0`,
		`keyward_cache_hits_total{cache="tokens"} 1`,
		`keyward_cache_misses_total{cache="tokens"} 1`,
		`keyward_cache_hits_total{cache="keys"} `,
		`keyward_db_connections_open `,
		`keyward_invalidation_listening 1`,
		`keyward_lease_held{lease="rotation"} `, // 1 once the first round took it
		`keyward_lease_held{lease="pim-expiry"} `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, tok[:20]) {
		t.Fatal("a token in the metrics")
	}
}
