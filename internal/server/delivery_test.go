package server_test

import (
	"context"
	"encoding/json"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
	"github.com/keyward/keyward/internal/testenv"
)

// enableBlobLogging registers Azurite's account and sends the dev HSM's
// logs to it, through the ARM API as the administrator.
func enableBlobLogging(t testing.TB, env *servertest.Env, az *testenv.Azurite) {
	t.Helper()
	arm := env.AdminToken("https://management.azure.com")
	var subs struct {
		Value []struct{ SubscriptionID string }
	}
	if err := jsonUnmarshal(env.Do("GET", env.Boot.AuthorityHost+"subscriptions?api-version=2022-12-01", arm, nil).Body, &subs); err != nil {
		t.Fatal(err)
	}
	sub := "subscriptions/" + subs.Value[0].SubscriptionID
	if r := env.Do("PUT", env.Boot.AuthorityHost+sub+"/resourcegroups/logs?api-version=2021-04-01", arm, map[string]string{"location": "local"}); r.Status != 200 && r.Status != 201 {
		t.Fatalf("create resource group: %d %s", r.Status, r.Body)
	}
	acct := map[string]any{"properties": map[string]any{"primaryEndpoints": map[string]string{"blob": az.Endpoint()},
		"keywardCredential": map[string]string{"accountKey": testenv.AzuriteKey}}}
	if r := env.Do("PUT", env.Boot.AuthorityHost+sub+"/resourceGroups/logs/providers/Microsoft.Storage/storageAccounts/"+testenv.AzuriteAccount+"?api-version=2023-01-01", arm, acct); r.Status != 200 {
		t.Fatalf("register storage: %d %s", r.Status, r.Body)
	}
	if strings.Contains(string(env.Do("GET", env.Boot.AuthorityHost+sub+"/resourceGroups/logs/providers/Microsoft.Storage/storageAccounts/"+testenv.AzuriteAccount+"?api-version=2023-01-01", arm, nil).Body), testenv.AzuriteKey) {
		t.Fatal("the account key is readable back")
	}
	setting := map[string]any{"properties": map[string]any{
		"storageAccountId": "/" + sub + "/resourceGroups/logs/providers/Microsoft.Storage/storageAccounts/" + testenv.AzuriteAccount,
		"logs":             []map[string]any{{"category": "AuditEvent", "enabled": true}}}}
	path := env.Boot.AuthorityHost + sub + "/resourceGroups/keyward/providers/Microsoft.KeyVault/managedHSMs/dev/providers/Microsoft.Insights/diagnosticSettings/MHSM-Diagnostics?api-version=2021-05-01-preview"
	if r := env.Do("PUT", path, arm, setting); r.Status != 200 {
		t.Fatalf("diagnostic setting: %d %s", r.Status, r.Body)
	}
}

// blobRecords reads every record Azurite holds, by sequence.
func blobRecords(t *testing.T, az *testenv.Azurite) []audit.Event {
	t.Helper()
	cred, _ := azblob.NewSharedKeyCredential(testenv.AzuriteAccount, testenv.AzuriteKey)
	c, err := azblob.NewClientWithSharedKeyCredential(az.Endpoint(), cred, nil)
	must(t, err)
	var out []audit.Event
	for pg := c.NewListBlobsFlatPager(audit.Container, nil); pg.More(); {
		page, err := pg.NextPage(context.Background())
		if err != nil {
			return nil // the container does not exist yet
		}
		for _, b := range page.Segment.BlobItems {
			if !strings.HasPrefix(*b.Name, "resourceId=/SUBSCRIPTIONS/") || !strings.HasSuffix(*b.Name, "/m=00/PT1H.json") ||
				!strings.Contains(*b.Name, "/PROVIDERS/MICROSOFT.KEYVAULT/MANAGEDHSMS/DEV/y=") {
				t.Fatalf("blob path %s is not Azure's layout", *b.Name)
			}
			resp, err := c.DownloadStream(context.Background(), audit.Container, *b.Name, nil)
			must(t, err)
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				if line == "" {
					continue // a blob created, its first block not yet appended
				}
				var e audit.Event
				must(t, json.Unmarshal([]byte(line), &e))
				out = append(out, e)
			}
		}
	}
	return out
}

// waitDelivered waits until the blob holds every journal record from
// sequence first on, and returns them.
func waitDelivered(t *testing.T, env *servertest.Env, az *testenv.Azurite, first uint64) []audit.Event {
	t.Helper()
	journal := readAudit(t, env, "dev")
	want := journal[len(journal)-1].Sequence
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := blobRecords(t, az)
		bySeq := map[uint64]audit.Event{}
		for _, e := range got {
			bySeq[e.Sequence] = e // at least once: a record may come twice
		}
		complete := true
		for s := first; s <= want; s++ {
			if _, ok := bySeq[s]; !ok {
				complete = false
			}
		}
		if complete {
			var out []audit.Event
			for s := first; s <= want; s++ {
				out = append(out, bySeq[s])
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("records %d..%d not all delivered (%d in blob storage)", first, want, len(got))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestAuditBlobDeliveryOutageAndBackpressure(t *testing.T) {
	t.Parallel()
	az := testenv.StartAzurite(t)
	env := servertest.StartWith(t, t.TempDir(), func(c *server.Config) { c.AuditBufferBytes = 24 << 10 })
	_, err := env.Keys.CreateKey(ctx, "k", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
	must(t, err)
	enableBlobLogging(t, env, az)
	before := readAudit(t, env, "dev")
	first := before[len(before)-1].Sequence + 1
	tok := env.AdminToken(hsmResource)
	sign := func() int {
		return env.Do("POST", "/keys/k/sign?api-version=7.6", tok, map[string]string{"alg": "ES256", "value": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}).Status
	}
	denied := env.ServicePrincipal("nobody")
	for range 5 {
		if sign() != 200 {
			t.Fatal("sign failed")
		}
		env.Do("GET", "/keys/k?api-version=7.6", env.Token(denied.Cred, hsmResource), nil) // a denial
	}
	delivered := waitDelivered(t, env, az, first)
	for i, e := range delivered {
		if e.Sequence != first+uint64(i) || e.Category != "AuditEvent" || e.OperationName == "" {
			t.Fatalf("record %d = %+v", i, e)
		}
	}

	// Azurite goes away: requests go on until the backlog reaches the
	// limit, then are refused with 503; nothing is performed unlogged.
	az.Stop()
	ok, refused := 0, 0
	for range 300 {
		switch sign() {
		case 200:
			ok++
		case 503:
			refused++
		}
		if refused > 0 {
			break
		}
	}
	if ok == 0 || refused == 0 {
		t.Fatalf("during the outage: %d served, %d refused; want some of each", ok, refused)
	}
	// Back: the backlog drains, requests are served again, nothing lost.
	az.Restart()
	deadline := time.Now().Add(30 * time.Second)
	for sign() != 200 {
		if time.Now().After(deadline) {
			t.Fatal("requests are still refused after storage came back")
		}
		time.Sleep(200 * time.Millisecond)
	}
	all := waitDelivered(t, env, az, first)
	signs := 0
	for _, e := range all {
		if e.OperationName == "KeySign" && e.HTTPStatusCode == 200 {
			signs++
		}
	}
	if signs != 5+ok+1 {
		t.Fatalf("%d successful signs in blob storage, want %d", signs, 5+ok+1)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Sequence < all[j].Sequence })
	for i := 1; i < len(all); i++ {
		if all[i].PreviousHash != all[i-1].Hash {
			t.Fatalf("the delivered chain breaks at sequence %d", all[i].Sequence)
		}
	}
}

// TestAuditDeliveryResumesAfterRestart writes records while storage is
// down, restarts the server, and finds them delivered once it is back.
func TestAuditDeliveryResumesAfterRestart(t *testing.T) {
	t.Parallel()
	az := testenv.StartAzurite(t)
	dir := t.TempDir()
	env := servertest.StartIn(t, dir)
	_, err := env.Keys.CreateKey(ctx, "k", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
	must(t, err)
	enableBlobLogging(t, env, az)
	before := readAudit(t, env, "dev")
	first := before[len(before)-1].Sequence + 1
	az.Stop()
	for range 5 {
		_, err := env.Keys.GetKey(ctx, "k", "", nil)
		must(t, err)
	}
	env.Stop()
	az.Restart()
	// Restarted under another node name: its cursor is its journal's,
	// not its name's, so the backlog is not skipped.
	env2 := servertest.StartWith(t, dir, func(c *server.Config) { c.NodeName = "renamed" })
	got := waitDelivered(t, env2, az, first)
	gets := 0
	for _, e := range got {
		if e.OperationName == "KeyGet" {
			gets++
		}
	}
	if gets < 5 {
		t.Fatalf("%d of the 5 reads made during the outage were delivered", gets)
	}
}
