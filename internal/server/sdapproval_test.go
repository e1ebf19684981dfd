package server_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/events"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
)

// Attack 7: any Administrator could download an active HSM's security
// domain again, alone, to certificates of their own, and with a key
// backup recover plaintext private keys offline. Now a second principal
// holding the download right at "/" must approve, the approval binds the
// certificates and quorum, and every step raises an alert.
func TestSecurityDomainRedownloadNeedsSecondAdministrator(t *testing.T) {
	var mu sync.Mutex
	var alerts []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e events.Event
		json.NewDecoder(r.Body).Decode(&e)
		mu.Lock()
		alerts = append(alerts, e.Type)
		mu.Unlock()
	}))
	defer hook.Close()
	env := servertest.StartWith(t, t.TempDir(), func(c *server.Config) { c.EventWebhooks = []string{hook.URL} })
	// The dev HSM's seeded administrator approves; an administrator it
	// granted asks.
	approverTok := env.AdminToken(hsmResource)
	requester := env.ServicePrincipal("requester")
	env.Assign(requester.ObjectID, roleColumns[0].id, "/")
	tok := env.Token(requester.Cred, hsmResource)
	custodians := func() []map[string]any {
		var out []map[string]any
		for range 3 {
			_, c := selfSigned(t, 2048)
			out = append(out, map[string]any{"kty": "RSA", "x5c": []string{base64.StdEncoding.EncodeToString(c.Raw)}})
		}
		return out
	}
	mine := custodians()
	download := func(tok string, certs []map[string]any, required int) *servertest.Response {
		return env.Do("POST", "/securitydomain/download?api-version=7.4", tok, map[string]any{"certificates": certs, "required": required})
	}

	// The attacker, alone: refused, and the request waits as pending.
	r := download(tok, mine, 2)
	if r.Status != http.StatusForbidden || r.ErrorCode() != "SecurityDomainDownloadApprovalRequired" || strings.Contains(string(r.Body), `"value"`) {
		t.Fatalf("re-download by one administrator: %d %s", r.Status, r.Body)
	}
	if again := download(tok, mine, 2); again.Status != http.StatusForbidden {
		t.Fatalf("second try: %d %s", again.Status, again.Body)
	}
	list := func(tok string) []map[string]any {
		r := env.Do("GET", "/securitydomain/download/requests?api-version=7.4", tok, nil)
		var out struct{ Value []map[string]any }
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &out) != nil {
			t.Fatalf("list requests: %d %s", r.Status, r.Body)
		}
		return out.Value
	}
	reqs := list(approverTok)
	if len(reqs) != 1 || reqs[0]["status"] != "Pending" || reqs[0]["operation"] != "download" {
		t.Fatalf("requests after two tries: %v", reqs)
	}
	id := reqs[0]["id"].(string)
	if !strings.Contains(string(r.Body), id) {
		t.Errorf("the refusal does not name the request %s: %s", id, r.Body)
	}
	approve := func(tok, id string) *servertest.Response {
		return env.Do("POST", "/securitydomain/download/requests/"+id+"/approve?api-version=7.4", tok, nil)
	}
	// The requester cannot approve their own request.
	if r := approve(tok, id); r.Status != http.StatusForbidden {
		t.Fatalf("self-approval: %d %s", r.Status, r.Body)
	}
	// A Crypto Officer (no download right) cannot approve.
	officer := env.ServicePrincipal("officer")
	env.Assign(officer.ObjectID, roleColumns[1].id, "/")
	if r := approve(env.Token(officer.Cred, hsmResource), id); r.Status != http.StatusForbidden {
		t.Fatalf("approval by a Crypto Officer: %d %s", r.Status, r.Body)
	}
	// Nor can an administrator the requester made: a sockpuppet, granted
	// directly or through a group, before or after the request.
	puppet := env.ServicePrincipal("puppet")
	grant := map[string]any{"properties": map[string]string{"roleDefinitionId": roleColumns[0].id, "principalId": puppet.ObjectID}}
	if r := env.Do("PUT", "/providers/Microsoft.Authorization/roleAssignments/"+servertest.NewGUID()+"?api-version=7.6", tok, grant); r.Status != http.StatusCreated {
		t.Fatalf("the requester grants Administrator: %d %s", r.Status, r.Body)
	}
	if r := approve(env.Token(puppet.Cred, hsmResource), id); r.Status != http.StatusForbidden {
		t.Fatalf("approval by the requester's sockpuppet: %d %s", r.Status, r.Body)
	}
	// An administrator granted after the request by someone else cannot
	// either: approvers are those who held the right when it was asked.
	late := env.ServicePrincipal("late-admin")
	for start := time.Now().Unix(); time.Now().Unix() == start; { // assignments are dated to the second
		time.Sleep(10 * time.Millisecond)
	}
	env.Assign(late.ObjectID, roleColumns[0].id, "/")
	if r := approve(env.Token(late.Cred, hsmResource), id); r.Status != http.StatusForbidden {
		t.Fatalf("approval by an administrator granted after the request: %d %s", r.Status, r.Body)
	}
	if r := approve(approverTok, "no-such-request"); r.Status != http.StatusNotFound {
		t.Fatalf("approving an unknown request: %d %s", r.Status, r.Body)
	}
	if r := approve(approverTok, id); r.Status != http.StatusOK || jsonField(r.Body, "status") != "Approved" {
		t.Fatalf("approval: %d %s", r.Status, r.Body)
	}
	if r := approve(approverTok, id); r.Status != http.StatusConflict {
		t.Fatalf("approving twice: %d %s", r.Status, r.Body)
	}
	// The approval does not carry over to other certificates or quorum.
	if r := download(tok, custodians(), 2); r.Status != http.StatusForbidden {
		t.Fatalf("download to other certificates after approval: %d %s", r.Status, r.Body)
	}
	if r := download(tok, mine, 3); r.Status != http.StatusForbidden {
		t.Fatalf("download with another quorum after approval: %d %s", r.Status, r.Body)
	}
	// The approver cannot use the requester's approval.
	if r := download(approverTok, mine, 2); r.Status != http.StatusForbidden {
		t.Fatalf("download by the approver: %d %s", r.Status, r.Body)
	}
	// The requester downloads, once.
	if r := download(tok, mine, 2); r.Status != http.StatusAccepted || jsonField(r.Body, "value") == "" {
		t.Fatalf("approved download: %d %s", r.Status, r.Body)
	}
	if r := download(tok, mine, 2); r.Status != http.StatusForbidden {
		t.Fatalf("a second download on one approval: %d %s", r.Status, r.Body)
	}
	// Audited by name.
	waitForRecord(t, env, "dev", func(m map[string]any) bool {
		return m["operationName"] == "SecurityDomainDownloadApprove" && m["httpStatusCode"] == float64(200)
	})

	// The setting that turns the rule off for Azure's behaviour: not a
	// Crypto Officer's, and one administrator alone cannot switch it off
	// (download, and switch it on again).
	setting := func(tok, value string) *servertest.Response {
		return env.Do("PATCH", "/settings/KeywardSecurityDomainDownloadApproval?api-version=7.5", tok, map[string]string{"value": value})
	}
	if r := setting(env.Token(officer.Cred, hsmResource), "false"); r.Status != http.StatusForbidden {
		t.Fatalf("setting changed by a Crypto Officer: %d %s", r.Status, r.Body)
	}
	if r := setting(tok, "no"); r.Status != http.StatusBadRequest {
		t.Fatalf("setting to a non-boolean: %d %s", r.Status, r.Body)
	}
	r = setting(tok, "false")
	if r.Status != http.StatusForbidden || r.ErrorCode() != "SecurityDomainDownloadApprovalRequired" {
		t.Fatalf("one administrator turns the rule off: %d %s", r.Status, r.Body)
	}
	var off string
	for _, q := range list(approverTok) {
		if q["operation"] == "disableApproval" && q["status"] == "Pending" {
			off = q["id"].(string)
		}
	}
	if r := approve(approverTok, off); r.Status != http.StatusOK {
		t.Fatalf("approving the switch: %d %s", r.Status, r.Body)
	}
	if r := setting(tok, "false"); r.Status != http.StatusOK || jsonField(r.Body, "value") != "false" {
		t.Fatalf("setting after approval: %d %s", r.Status, r.Body)
	}
	if r := env.Do("GET", "/settings?api-version=7.5", tok, nil); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"value":"false"`) {
		t.Fatalf("settings: %d %s", r.Status, r.Body)
	}
	if r := download(tok, custodians(), 2); r.Status != http.StatusAccepted {
		t.Fatalf("download with the rule off: %d %s", r.Status, r.Body)
	}
	// Turning it on again needs nobody's approval.
	if r := setting(tok, "true"); r.Status != http.StatusOK {
		t.Fatalf("turning the rule on: %d %s", r.Status, r.Body)
	}
	// Alerts: requested, approved, downloaded, and the switch.
	waitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		joined := strings.Join(alerts, " ")
		return strings.Contains(joined, server.EventSecurityDomainDownloadRequested) &&
			strings.Contains(joined, server.EventSecurityDomainDownloadApproved) &&
			strings.Contains(joined, server.EventSecurityDomainDownloaded) &&
			strings.Contains(joined, server.EventSecurityDomainSettingChanged)
	})
}

// Two first downloads racing on a new HSM: one activates it, the other
// is refused (it would otherwise give a second set of custodians the
// domain without anyone's approval).
func TestConcurrentActivatingDownloads(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	hsm := createHSM(t, env, "racing")
	tok := env.AdminToken(hsmResource)
	var wg sync.WaitGroup
	statuses := make([]int, 4)
	for i := range statuses {
		var certs []map[string]any
		for range 3 {
			_, c := selfSigned(t, 2048)
			certs = append(certs, map[string]any{"kty": "RSA", "x5c": []string{base64.StdEncoding.EncodeToString(c.Raw)}})
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = env.Do("POST", hsm+"securitydomain/download?api-version=7.4", tok, map[string]any{"certificates": certs, "required": 2}).Status
		}()
	}
	wg.Wait()
	ok := 0
	for _, st := range statuses {
		if st == http.StatusAccepted {
			ok++
		}
	}
	if ok != 1 {
		t.Fatalf("concurrent activating downloads: %v, want exactly one 202", statuses)
	}
}

// The first download, which activates a new HSM, needs no approval.
func TestFirstSecurityDomainDownloadNeedsNoApproval(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	hsm := createHSM(t, env, "fresh")
	var certs []map[string]any
	for range 3 {
		_, c := selfSigned(t, 2048)
		certs = append(certs, map[string]any{"kty": "RSA", "x5c": []string{base64.StdEncoding.EncodeToString(c.Raw)}})
	}
	r := env.Do("POST", hsm+"securitydomain/download?api-version=7.4", env.AdminToken(hsmResource), map[string]any{"certificates": certs, "required": 2})
	if r.Status != http.StatusAccepted || jsonField(r.Body, "value") == "" {
		t.Fatalf("activating download: %d %s", r.Status, r.Body)
	}
}

// waitFor waits up to five seconds for cond: events are delivered behind
// the request.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
