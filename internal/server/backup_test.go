package server_test

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/keyward/keyward/internal/servertest"
	"github.com/keyward/keyward/internal/testenv"
)

// runJob starts a backup or restore over REST and waits for its end.
func runJob(t *testing.T, env *servertest.Env, tok, method, path string, body any) map[string]any {
	t.Helper()
	r := env.Do(method, path+"?api-version=7.6", tok, body)
	if r.Status != 202 {
		t.Fatalf("%s %s: %d %s", method, path, r.Status, r.Body)
	}
	var job map[string]any
	must(t, json.Unmarshal(r.Body, &job))
	poll := r.Header.Get("Azure-AsyncOperation")
	if !strings.HasSuffix(poll, "/"+job["jobId"].(string)+"/pending") || r.Header.Get("Retry-After") == "" {
		t.Fatalf("polling headers: %v", r.Header)
	}
	deadline := time.Now().Add(20 * time.Second)
	for job["status"] == "InProgress" {
		if time.Now().After(deadline) {
			t.Fatal("job did not end")
		}
		time.Sleep(50 * time.Millisecond)
		must(t, json.Unmarshal(env.Do("GET", poll+"?api-version=7.6", tok, nil).Body, &job))
	}
	return job
}

func TestRestoreRefusesDamagedBackups(t *testing.T) {
	t.Parallel()
	az := testenv.StartAzurite(t)
	env := servertest.Start(t)
	for _, k := range []string{"a", "b"} {
		_, err := env.Keys.CreateKey(ctx, k, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
		must(t, err)
	}
	tok := env.AdminToken(hsmResource)
	uri, sas := az.Container("backups")
	sasParams := map[string]any{"storageResourceUri": uri, "token": sas}
	job := runJob(t, env, tok, "POST", "/backup", sasParams)
	if job["status"] != "Succeeded" || job["endTime"].(float64) == 0 {
		t.Fatalf("backup: %v", job)
	}
	folder := job["azureStorageBlobContainerUri"].(string)
	folder = folder[strings.LastIndex(folder, "/")+1:]

	cred, _ := azblob.NewSharedKeyCredential(testenv.AzuriteAccount, testenv.AzuriteKey)
	blobs, _ := azblob.NewClientWithSharedKeyCredential(az.Endpoint(), cred, nil)
	read := func(name string) []byte {
		resp, err := blobs.DownloadStream(context.Background(), "backups", folder+"/"+name, nil)
		must(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	sealed, manifest := read("backup.kwb"), read("manifest.json")
	// Damaged copies, each in its own folder.
	put := func(dst string, files map[string][]byte) {
		for name, data := range files {
			_, err := blobs.UploadBuffer(context.Background(), "backups", dst+"/"+name, data, nil)
			must(t, err)
		}
	}
	flipped := append([]byte(nil), sealed...)
	flipped[len(flipped)/2] ^= 1
	put("tampered", map[string][]byte{"backup.kwb": flipped, "manifest.json": manifest})
	put("truncated", map[string][]byte{"backup.kwb": sealed[:len(sealed)/2], "manifest.json": manifest})
	// Re-forged manifest: the size and hash agree, the seal does not.
	var m map[string]any
	must(t, json.Unmarshal(manifest, &m))
	put("resealed", map[string][]byte{"backup.kwb": flipped, "manifest.json": forgeManifest(m, flipped)})
	// Cut short, with a manifest that agrees: the stream's own end is missing.
	put("cut", map[string][]byte{"backup.kwb": sealed[:len(sealed)-40], "manifest.json": forgeManifest(m, sealed[:len(sealed)-40])})
	put("foreign", map[string][]byte{"backup.kwb": sealed, "manifest.json": []byte(strings.Replace(string(manifest), m["domainId"].(string), "00000000-0000-0000-0000-000000000000", 1))})

	before := env.Do("GET", "/keys?api-version=7.6", tok, nil).Body
	for _, f := range []string{"tampered", "truncated", "resealed", "cut", "foreign", "missing"} {
		job := runJob(t, env, tok, "PUT", "/restore", map[string]any{"sasTokenParameters": sasParams, "folderToRestore": f})
		e, _ := job["error"].(map[string]any)
		if job["status"] != "Failed" || e == nil || e["message"] == "" {
			t.Errorf("restore of %s: %v", f, job)
		}
	}
	if after := env.Do("GET", "/keys?api-version=7.6", tok, nil).Body; string(after) != string(before) {
		t.Fatal("a refused restore changed the HSM")
	}
	bad := map[string]any{"sasTokenParameters": map[string]any{"storageResourceUri": uri, "token": "sv=2020-01-01&sig=AAAA"}, "folderToRestore": folder}
	if job := runJob(t, env, tok, "PUT", "/restore", bad); job["status"] != "Failed" || !strings.Contains(job["error"].(map[string]any)["message"].(string), "SAS") {
		t.Fatalf("wrong SAS: %v", job)
	}
	// Bad requests are refused before a job starts.
	for name, body := range map[string]any{
		"no uri":           map[string]any{"token": sas},
		"no token":         map[string]any{"storageResourceUri": uri},
		"managed identity": map[string]any{"storageResourceUri": uri, "useManagedIdentity": true},
		"not a container":  map[string]any{"storageResourceUri": "ftp://x", "token": sas},
	} {
		if r := env.Do("POST", "/backup?api-version=7.6", tok, body); r.Status != 400 {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
}

func forgeManifest(m map[string]any, blob []byte) []byte {
	m["size"] = len(blob)
	m["sha256"] = sha256Hex(blob)
	b, _ := json.Marshal(m)
	return b
}
