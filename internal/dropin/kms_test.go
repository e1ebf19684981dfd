package dropin_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"
)

// asAdmin sends a JSON request as the bootstrap administrator (from the
// AZURE_* variables), with a token for scope, and decodes the answer.
func asAdmin(t *testing.T, method, url, scope string, body, into any) {
	t.Helper()
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cred.GetToken(ctx(t), policy.TokenRequestOptions{Scopes: []string{scope}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx(t), method, url, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, out)
	}
	if into != nil {
		if err := json.Unmarshal(out, into); err != nil {
			t.Fatal(err)
		}
	}
}

// servicePrincipal creates an application's service principal with a
// secret, through Graph at graph.microsoft.com.
func servicePrincipal(t *testing.T, name string) (objectID, appID, secret string) {
	t.Helper()
	var sp struct{ ID, AppID string }
	asAdmin(t, "POST", "https://graph.microsoft.com/v1.0/servicePrincipals", "https://graph.microsoft.com/.default",
		map[string]string{"displayName": name}, &sp)
	var pw struct{ SecretText string }
	asAdmin(t, "POST", "https://graph.microsoft.com/v1.0/servicePrincipals/"+sp.ID+"/addPassword", "https://graph.microsoft.com/.default",
		map[string]any{}, &pw)
	return sp.ID, sp.AppID, pw.SecretText
}

// kmsPlugin runs `keyward kms-plugin` as its own process, signed in as
// the given application, and returns a KMS v2 client of its socket.
func kmsPlugin(t *testing.T, appID, secret string) kmsapi.KeyManagementServiceClient {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "kms.sock")
	cmd := exec.Command(os.Args[0], "kms-plugin", "--socket", socket, "--hsm", "dev", "--key", "k8s")
	cmd.Env = append(os.Environ(), cliEnv+"=1", "AZURE_CLIENT_ID="+appID, "AZURE_CLIENT_SECRET="+secret)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("kms-plugin: %v\n%s", err, stderr.String())
		}
	})
	// Served once the socket is there, and the owner's alone: whoever can
	// call Decrypt unwraps the cluster's DEKs.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if fi, err := os.Stat(socket); err == nil && fi.Mode().Perm() == 0o600 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kms-plugin did not listen:\n%s", stderr.String())
		}
	}
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return kmsapi.NewKeyManagementServiceClient(conn)
}

// TestKubernetesKMSPlugin: `keyward kms-plugin`, signed in as the
// cluster's Crypto Service Encryption User, serves the API server's KMS v2
// calls with an HSM key: DEK seeds wrap and unwrap, a rotation of the key
// shows in Status' key id while older seeds still decrypt, a key id of
// another key is refused, and a caller without the role gets nothing.
func TestKubernetesKMSPlugin(t *testing.T) {
	createRSA(t, "k8s")
	apiserver, appID, secret := servicePrincipal(t, "k8s-apiserver")
	asAdmin(t, "PUT", "https://dev.managedhsm.azure.net/keys/k8s/providers/Microsoft.Authorization/roleAssignments/"+
		"5b9a6c1e-7d2f-4e3a-9b8c-1d2e3f4a5b6c?api-version=7.6", "https://managedhsm.azure.net/.default",
		map[string]any{"properties": map[string]string{"principalId": apiserver,
			"roleDefinitionId": "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/33413926-3206-4cdd-b39a-83574fe37a17"}}, nil)

	kms := kmsPlugin(t, appID, secret)
	st, err := kms.Status(ctx(t), &kmsapi.StatusRequest{})
	if err != nil || st.Version != "v2" || st.Healthz != "ok" || !strings.HasPrefix(st.KeyId, "https://dev.managedhsm.azure.net/keys/k8s/") {
		t.Fatalf("status: %+v %v", st, err)
	}
	seed := []byte("a DEK seed of thirty-two bytes..")
	enc, err := kms.Encrypt(ctx(t), &kmsapi.EncryptRequest{Plaintext: seed, Uid: "1"})
	if err != nil || enc.KeyId != st.KeyId || len(enc.Ciphertext) != 256 {
		t.Fatalf("encrypt: %+v %v", enc, err)
	}
	dec, err := kms.Decrypt(ctx(t), &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: "2"})
	if err != nil || !bytes.Equal(dec.Plaintext, seed) {
		t.Fatalf("decrypt: %v", err)
	}

	// The key is rotated: Status names the new version, new seeds use it,
	// and the old seed still decrypts with the version its key id names.
	cred, _ := azidentity.NewDefaultAzureCredential(nil)
	admin, _ := azkeys.NewClient("https://dev.managedhsm.azure.net", cred, nil)
	if _, err := admin.RotateKey(ctx(t), "k8s", nil); err != nil {
		t.Fatal(err)
	}
	st2, err := kms.Status(ctx(t), &kmsapi.StatusRequest{})
	if err != nil || st2.KeyId == st.KeyId || !strings.HasPrefix(st2.KeyId, "https://dev.managedhsm.azure.net/keys/k8s/") {
		t.Fatalf("status after rotation: %+v %v", st2, err)
	}
	enc2, err := kms.Encrypt(ctx(t), &kmsapi.EncryptRequest{Plaintext: seed, Uid: "3"})
	if err != nil || enc2.KeyId != st2.KeyId {
		t.Fatalf("encrypt after rotation: %+v %v", enc2, err)
	}
	for _, e := range []*kmsapi.EncryptResponse{enc, enc2} {
		dec, err := kms.Decrypt(ctx(t), &kmsapi.DecryptRequest{Ciphertext: e.Ciphertext, KeyId: e.KeyId, Uid: "4"})
		if err != nil || !bytes.Equal(dec.Plaintext, seed) {
			t.Fatalf("decrypt of %s: %v", e.KeyId, err)
		}
	}
	for _, kid := range []string{"https://dev.managedhsm.azure.net/keys/sops/" + strings.TrimPrefix(enc.KeyId, "https://dev.managedhsm.azure.net/keys/k8s/"),
		"https://evil.example/keys/k8s/x", "https://dev.managedhsm.azure.net/keys/k8s/", "https://dev.managedhsm.azure.net/keys/k8s/a/../b"} {
		if _, err := kms.Decrypt(ctx(t), &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: kid, Uid: "5"}); err == nil {
			t.Errorf("decrypt with key id %s was not refused", kid)
		}
	}

	// A caller without the role: no status, no wrapping.
	_, otherApp, otherSecret := servicePrincipal(t, "intruder")
	intruder := kmsPlugin(t, otherApp, otherSecret)
	if st, err := intruder.Status(ctx(t), &kmsapi.StatusRequest{}); err == nil {
		t.Errorf("status without the role: %+v", st)
	}
	if _, err := intruder.Encrypt(ctx(t), &kmsapi.EncryptRequest{Plaintext: seed, Uid: "6"}); err == nil {
		t.Error("encrypt without the role was not refused")
	}
	if _, err := intruder.Decrypt(ctx(t), &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: "7"}); err == nil {
		t.Error("decrypt without the role was not refused")
	}
}

// keyward runs the CLI as its own process with its own profile directory.
func keyward(t *testing.T, config string, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), cliEnv+"=1", "KEYWARD_CONFIG_DIR="+config)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("keyward %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestCLIAtAzureNames: the CLI logs in at login.microsoftonline.com, as
// bootstrap.json says, and finds the resource manager, the directory and
// the HSM at their Azure names from the server's metadata.
func TestCLIAtAzureNames(t *testing.T) {
	b := srv.Bootstrap()
	if b.AuthorityHost != "https://login.microsoftonline.com/" || b.ManagementURI != "https://management.azure.com/" ||
		b.HSMURI != "https://dev.managedhsm.azure.net" {
		t.Fatalf("bootstrap.json: %+v", b)
	}
	config := t.TempDir()
	keyward(t, config, "login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret,
		"--tenant", b.TenantID, "--ca-file", b.CAFile, "-o", "none")
	if got := keyward(t, config, "keyvault", "show", "--hsm-name", "dev", "--query", "properties.hsmUri", "-o", "tsv"); got != "https://dev.managedhsm.azure.net/" {
		t.Errorf("keyvault show: %s", got)
	}
	keyward(t, config, "keyvault", "key", "create", "--hsm-name", "dev", "--name", "from-cli", "--kty", "EC-HSM", "-o", "none")
	if got := keyward(t, config, "keyvault", "key", "show", "--hsm-name", "dev", "--name", "from-cli", "--query", "key.kid", "-o", "tsv"); !strings.HasPrefix(got, "https://dev.managedhsm.azure.net/keys/from-cli/") {
		t.Errorf("key id: %s", got)
	}
	if got := keyward(t, config, "ad", "sp", "show", "--id", b.ClientID, "--query", "appId", "-o", "tsv"); got != b.ClientID {
		t.Errorf("ad sp show: %s", got)
	}
}

// TestManagedIdentityAtAzureNames: an application on a host that runs
// `keyward identity agent` signs with DefaultAzureCredential and nothing
// else: no secret in its environment, the identity's grant on the HSM.
func TestManagedIdentityAtAzureNames(t *testing.T) {
	b := srv.Bootstrap()
	config := t.TempDir()
	keyward(t, config, "login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret,
		"--tenant", b.TenantID, "--ca-file", b.CAFile, "-o", "none")
	keyward(t, config, "group", "create", "--name", "app-rg", "-o", "none")
	keyward(t, config, "identity", "create", "--name", "app-vm", "--resource-group", "app-rg", "-o", "none")
	principal := keyward(t, config, "identity", "show", "--name", "app-vm", "--resource-group", "app-rg", "--query", "principalId", "-o", "tsv")
	keyward(t, config, "keyvault", "key", "create", "--hsm-name", "dev", "--name", "vm-signing", "--kty", "EC-HSM", "-o", "none")
	keyward(t, config, "keyvault", "role", "assignment", "create", "--hsm-name", "dev", "--assignee", principal,
		"--scope", "/keys/vm-signing", "--role", "Managed HSM Crypto User", "-o", "none")

	agent := exec.Command(os.Args[0], "identity", "agent", "--name", "app-vm", "--resource-group", "app-rg")
	agent.Env = append(os.Environ(), cliEnv+"=1", "KEYWARD_CONFIG_DIR="+config)
	out, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Signal(syscall.SIGTERM); agent.Wait() })
	lines := bufio.NewScanner(out)
	for range 2 {
		if !lines.Scan() {
			t.Fatal("the agent printed nothing")
		}
		k, v, _ := strings.Cut(lines.Text(), "=")
		t.Setenv(k, v)
	}
	// The application's environment names no secret and no client (unset
	// here, restored after the test).
	for _, k := range []string{"AZURE_CLIENT_SECRET", "AZURE_CLIENT_ID"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := azkeys.NewClient("https://dev.managedhsm.azure.net", cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	digest := make([]byte, 32)
	if _, err := c.Sign(ctx(t), "vm-signing", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest}, nil); err != nil {
		t.Fatal(err)
	}
}
