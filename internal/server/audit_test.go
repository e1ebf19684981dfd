package server_test

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/servertest"
	"github.com/keyward/keyward/internal/testenv"
)

func readAudit(t *testing.T, env *servertest.Env, stream string) []audit.Event {
	t.Helper()
	f, err := os.Open(filepath.Join(env.Dir, "audit", stream+".jsonl"))
	must(t, err)
	defer f.Close()
	n, err := audit.Verify(f)
	if err != nil {
		t.Fatalf("the %s journal does not verify: %v", stream, err)
	}
	f.Seek(0, 0)
	var out []audit.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e audit.Event
		must(t, json.Unmarshal(sc.Bytes(), &e))
		out = append(out, e)
	}
	if len(out) != n {
		t.Fatalf("%d records read, %d verified", len(out), n)
	}
	return out
}

// auditNames maps this test's operation names to Azure's operationName.
var auditNames = map[string]string{
	"DeletedKeyList": "KeyListDeleted", "DeletedKeyGet": "KeyGetDeleted", "DeletedKeyRecover": "KeyRecover",
	"DeletedKeyPurge": "KeyPurge", "KeyGetRotationPolicy": "KeyRotationPolicyGet", "KeyUpdateRotationPolicy": "KeyRotationPolicyUpdate",
}

// TestAuditEveryOperation runs every data-plane operation, allowed and
// denied, and finds one well-formed record of each in the HSM's journal,
// with nothing secret anywhere in the journals.
func TestAuditEveryOperation(t *testing.T) {
	t.Parallel()
	az := testenv.StartAzurite(t)
	uri, sas := az.Container("backups")
	env := servertest.Start(t)
	_, err := env.Keys.ImportKey(ctx, "shared-rsa", azkeys.ImportKeyParameters{Key: testRSAJWK()}, nil)
	must(t, err)
	user := env.ServicePrincipal("user")
	env.Assign(user.ObjectID, roleColumns[2].id, "/")
	nobody := env.ServicePrincipal("nobody")
	for _, who := range []servertest.Principal{user, nobody} {
		a := &actor{env: env, keys: env.KeysClient(who.Cred), token: env.Token(who.Cred, hsmResource),
			sas: map[string]any{"storageResourceUri": uri, "token": sas}}
		for op, run := range roleOps {
			a.tag = "a-" + strings.ToLower(op) + who.ObjectID[:4]
			run(t, a)
		}
	}
	// An unauthenticated probe and an unknown path.
	env.Do("GET", "/keys?api-version=7.6", "", nil)
	env.Do("GET", "/keys/shared-rsa/x/y?api-version=7.6", env.Token(user.Cred, hsmResource), nil)

	records := readAudit(t, env, "dev")
	seen := map[string]map[string]bool{} // operation → decision → seen
	for _, e := range records {
		if e.Category != "AuditEvent" || e.Time == "" || e.TenantID != env.Boot.TenantID || e.RequestURI == "" ||
			e.CallerIPAddress != "127.0.0.1" || e.HTTPStatusCode == 0 || e.ResultSignature == "" ||
			!strings.HasPrefix(e.ResourceID, "/SUBSCRIPTIONS/") || !strings.HasSuffix(e.ResourceID, "/MANAGEDHSMS/DEV") {
			t.Fatalf("malformed record: %+v", e)
		}
		if (e.HTTPStatusCode < 300) != (e.ResultType == "Success") {
			t.Fatalf("resultType %s for %d", e.ResultType, e.HTTPStatusCode)
		}
		d := "none"
		if e.Properties.Authorization != nil {
			d = e.Properties.Authorization.Decision
			if d == "Allowed" && e.Properties.Authorization.RoleAssignmentID == "" {
				t.Fatalf("an allowed request names no assignment: %+v", e)
			}
		}
		if seen[e.OperationName] == nil {
			seen[e.OperationName] = map[string]bool{}
		}
		seen[e.OperationName][d] = true
	}
	for op := range roleOps {
		name := op
		if n, ok := auditNames[op]; ok {
			name = n
		}
		if !seen[name]["Denied"] {
			t.Errorf("no record of a denied %s", name)
		}
	}
	for _, op := range []string{"KeySign", "KeyCreate", "KeyDecrypt", "RoleAssignmentList"} {
		if !seen[op]["Allowed"] {
			t.Errorf("no record of an allowed %s", op)
		}
	}
	if !seen["KeyList"]["none"] {
		t.Error("no record of the unauthenticated request")
	}
	if !seen["Unknown"]["none"] {
		t.Error("no record of the unknown path")
	}
	tenant := readAudit(t, env, "tenant")
	tokens := 0
	for _, e := range tenant {
		if e.OperationName == "Token" {
			tokens++
		}
	}
	if tokens == 0 {
		t.Fatal("token issuance is not audited")
	}

	// Nothing secret in any journal.
	var all strings.Builder
	for _, stream := range []string{"dev", "tenant"} {
		b, _ := os.ReadFile(filepath.Join(env.Dir, "audit", stream+".jsonl"))
		all.Write(b)
	}
	tok := env.Token(user.Cred, hsmResource)
	for what, secret := range map[string]string{
		"client secret": env.Boot.ClientSecret, "token signature": tok[strings.LastIndex(tok, ".")+1:],
		"RSA d": base64.RawURLEncoding.EncodeToString(testRSA.D.Bytes())[:40], "RSA d hex": hex.EncodeToString(testRSA.D.Bytes())[:40],
		"digest": base64.RawURLEncoding.EncodeToString(digest32),
	} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("the %s appears in the audit log", what)
		}
	}
}

func TestAuditCorrelationAndIdentity(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	tok := env.AdminToken(hsmResource)
	req := map[string]any{"kty": "EC-HSM"}
	r := env.DoWithHeaders("POST", "/keys/k/create?api-version=7.6", tok, req, map[string]string{
		"x-ms-client-request-id": "corr-123", "User-Agent": "audit-test/1.0"})
	if r.Status != 200 {
		t.Fatalf("create: %d", r.Status)
	}
	records := readAudit(t, env, "dev")
	e := records[len(records)-1]
	if e.OperationName != "KeyCreate" || e.CorrelationID != "corr-123" || e.ClientInfo != "audit-test/1.0" ||
		e.OperationVersion != "7.6" || e.Identity == nil || e.Identity.Claim.AppID != env.Boot.ClientID ||
		e.Properties.Key != "k" || e.Properties.Action != "Microsoft.KeyVault/managedHsm/keys/create" ||
		e.Properties.Authorization.Decision != "Allowed" {
		t.Fatalf("record = %+v", e)
	}
	_, err := env.Keys.Sign(ctx, "k", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest32}, nil)
	must(t, err)
	// azkeys first probes without a token (401), then signs: two records.
	last := readAudit(t, env, "dev")
	probe, signed := last[len(last)-2], last[len(last)-1]
	if probe.OperationName != "KeySign" || probe.HTTPStatusCode != 401 || probe.Identity != nil || probe.Sequence != e.Sequence+1 ||
		probe.PreviousHash != e.Hash {
		t.Fatalf("probe record = %+v", probe)
	}
	if signed.OperationName != "KeySign" || signed.HTTPStatusCode != 200 || signed.PreviousHash != probe.Hash {
		t.Fatalf("sign record = %+v", signed)
	}
}

// A client's bytes that are not UTF-8 (a User-Agent of "\xff") were
// recorded as they came: their JSON reads back as U+FFFD, so verification
// recomputed another hash and called the untouched chain edited — an
// outsider, without a token, could make any journal look tampered with.
// They are recorded as U+FFFD, and the chain verifies.
func TestInvalidUTF8DoesNotBreakTheChain(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	b := env.Boot
	env.DoWithHeaders("GET", b.HSMURI+"/keys?api-version=7.6", "", nil, map[string]string{"User-Agent": "evil\xff\xfe", "x-ms-client-request-id": "id\xc3"})
	env.DoWithHeaders("GET", b.HSMURI+"/keys?api-version=7.6", env.AdminToken("https://managedhsm.azure.net"), nil, map[string]string{"User-Agent": "evil\xff"})
	env.Stop()
	records := readAudit(t, env, audit.StreamOf(b.HSMName)) // fails unless the chain verifies
	found := false
	for _, e := range records {
		if strings.HasPrefix(e.ClientInfo, "evil\uFFFD") {
			found = true
		}
	}
	if !found {
		t.Fatal("no record of the requests with the invalid User-Agent")
	}
}
