package server_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/servertest"
	"github.com/keyward/keyward/internal/testenv"
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
	t.Parallel()
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
	t.Parallel()
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
		t.Log(env.Logs())
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

// Checkpoints travel to blob storage beside the records, so that the
// journal and the checkpoint file cut together on the server still show.
func TestAuditCheckpointsAreDelivered(t *testing.T) {
	t.Parallel()
	az := testenv.StartAzurite(t)
	dir := t.TempDir()
	env := servertest.StartIn(t, dir)
	arm := env.AdminToken("https://management.azure.com")
	var subs struct {
		Value []struct{ SubscriptionID string }
	}
	must(t, jsonUnmarshal(env.Do("GET", env.Boot.AuthorityHost+"subscriptions?api-version=2022-12-01", arm, nil).Body, &subs))
	env.Do("PUT", env.Boot.AuthorityHost+"subscriptions/"+subs.Value[0].SubscriptionID+"/resourceGroups/logs?api-version=2021-04-01", arm,
		map[string]string{"location": "local"})
	enableBlobLogging(t, env, az)
	for range 3 {
		env.Do("GET", "/keys?api-version=7.4", env.AdminToken("https://managedhsm.azure.net"), nil)
	}
	env.Stop() // signs the last checkpoint
	env2 := servertest.StartIn(t, dir)
	pemData, err := os.ReadFile(filepath.Join(dir, "audit", "checkpoint-public-key.pem"))
	must(t, err)
	pub, err := audit.ParsePublicKey(pemData)
	must(t, err)
	cred, _ := azblob.NewSharedKeyCredential(testenv.AzuriteAccount, testenv.AzuriteKey)
	c, err := azblob.NewClientWithSharedKeyCredential(az.Endpoint(), cred, nil)
	must(t, err)
	download := func(container string) []byte {
		var all []byte
		for pg := c.NewListBlobsFlatPager(container, nil); pg.More(); {
			page, err := pg.NextPage(context.Background())
			if err != nil {
				return nil
			}
			for _, b := range page.Segment.BlobItems {
				resp, err := c.DownloadStream(context.Background(), container, *b.Name, nil)
				must(t, err)
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				all = append(all, data...)
			}
		}
		return all
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		cps, err := audit.ReadCheckpoints(bytes.NewReader(download(audit.CheckpointContainer)))
		must(t, err)
		if len(cps) > 0 {
			// Records delivered before the setting's start are not in storage.
			rep, err := audit.VerifyCheckpointed(bytes.NewReader(download(audit.Container)), cps, pub)
			if err != nil {
				t.Fatal(err)
			}
			if rep.CoveredThrough == 0 || rep.Records == 0 {
				t.Fatalf("%+v", rep)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint delivered")
		}
		time.Sleep(200 * time.Millisecond)
	}
	env2.Stop()
}
