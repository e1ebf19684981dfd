package cli

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/keyward/keyward/internal/attestation/attestationtest"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
)

// TestKeyReleaseCLI tells secure key release with az's commands: the
// security team creates an exportable key under a release policy, the
// workload's agent (a Release User) releases it with its attestation
// token, a token that fails is refused with Azure's message, and a policy
// made immutable stays.
func TestKeyReleaseCLI(t *testing.T) {
	t.Parallel()
	maa := attestationtest.New(t)
	env := servertest.StartWith(t, t.TempDir(), func(c *server.Config) { c.FederationClient = maa.Client() })
	b := env.Boot
	admin := kw{t, t.TempDir()}
	admin.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret,
		"--tenant", b.TenantID, "--ca-file", b.CAFile)
	policyFile := filepath.Join(t.TempDir(), "policy.json")
	writeFile(t, policyFile, string(attestationtest.CVMPolicy(maa.URL)))

	// Azure's rules, with its messages: exportable needs a policy.
	if errs := admin.fails(exitFailure, "keyvault", "key", "create", "--hsm-name", "dev", "--name", "cvm-disk", "--exportable"); !strings.Contains(errs, "release policy") || !strings.Contains(errs, "give --policy") {
		t.Fatalf("exportable without a policy: %q", errs)
	}
	if errs := admin.fails(exitUsage, "keyvault", "key", "create", "--hsm-name", "dev", "--name", "cvm-disk", "--immutable"); !strings.Contains(errs, "--policy") {
		t.Fatalf("--immutable without --policy: %q", errs)
	}
	if errs := admin.fails(exitUsage, "keyvault", "key", "create", "--hsm-name", "dev", "--name", "cvm-disk", "--exportable", "--policy", "{not json"); !strings.Contains(errs, "--policy") {
		t.Fatalf("a policy that is not JSON: %q", errs)
	}

	var created struct {
		Attributes    struct{ Exportable bool }
		ReleasePolicy struct {
			ContentType   string
			EncodedPolicy string
			Immutable     bool
		}
	}
	jsonDecode(t, admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "cvm-disk", "--kty", "RSA-HSM", "--size", "2048",
		"--exportable", "true", "--policy", "@"+policyFile), &created)
	policy, err := base64.StdEncoding.DecodeString(created.ReleasePolicy.EncodedPolicy)
	if err != nil || !created.Attributes.Exportable || created.ReleasePolicy.Immutable ||
		!strings.Contains(string(policy), `"authority":"`+maa.URL+`"`) {
		t.Fatalf("created: %+v (policy %s, %v)", created, policy, err)
	}

	// The workload's agent releases the key with its token: az's answer
	// is the HSM's JWS, whose payload carries the key wrapped for the
	// workload and echoes the nonce.
	agent := env.ServicePrincipal("cvm-agent")
	env.Assign(agent.ObjectID, "21dbd100-6940-42c2-9190-5d6cb909625c", "/keys") // Managed HSM Crypto Service Release User
	releaser := kw{t, t.TempDir()}
	releaser.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", agent.AppID, "-p", agent.Secret,
		"--tenant", b.TenantID, "--ca-file", b.CAFile)
	workload, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token.jwt")
	writeFile(t, tokenFile, maa.Token(t, attestationtest.SEVSNP(), &workload.PublicKey, time.Minute)+"\n")
	jws := releaser.ok("keyvault", "key", "release", "--hsm-name", "dev", "--name", "cvm-disk", "--target", "@"+tokenFile,
		"--algorithm", "RSA_AES_KEY_WRAP_256", "--nonce", "n-42", "--query", "value", "-o", "tsv")
	obj, err := jose.ParseSigned(jws, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		t.Fatalf("release value %q: %v", jws, err)
	}
	var payload struct {
		Request  struct{ Enc, Nonce string }
		Response struct {
			Key struct {
				Key struct {
					Kid    string
					KeyHSM string `json:"key_hsm"`
				}
			}
		}
	}
	if err := json.Unmarshal(obj.UnsafePayloadWithoutVerification(), &payload); err != nil {
		t.Fatal(err)
	}
	if payload.Request.Enc != "RSA_AES_KEY_WRAP_256" || payload.Request.Nonce != "n-42" || payload.Response.Key.Key.KeyHSM == "" ||
		!strings.Contains(payload.Response.Key.Key.Kid, "/keys/cvm-disk/") {
		t.Fatalf("release payload: %+v", payload)
	}

	// The workload opens the key with the README's commands (OpenSSL),
	// and finds the HSM's key.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "workload.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: mustPKCS8(t, workload)})))
	writeFile(t, tokenFile, maa.Token(t, attestationtest.SEVSNP(), &workload.PublicKey, time.Minute))
	writeFile(t, filepath.Join(dir, "released.jws"), releaser.ok("keyvault", "key", "release", "--hsm-name", "dev", "--name", "cvm-disk",
		"--target", "@"+tokenFile, "--query", "value", "-o", "tsv"))
	cmd := exec.CommandContext(t.Context(), "bash", "-euo", "pipefail", "-c", readmeBlock(t, "TestKeyReleaseCLI runs this block"))
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Private-Key: (2048 bit") {
		t.Fatalf("the README's commands did not open the released key: %v\n%s", err, out)
	}
	der, err := os.ReadFile(filepath.Join(dir, "released.der"))
	if err != nil {
		t.Fatal(err)
	}
	released, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	n := strings.TrimSpace(admin.ok("keyvault", "key", "show", "--hsm-name", "dev", "--name", "cvm-disk", "--query", "key.n", "-o", "tsv"))
	if rk, ok := released.(*rsa.PrivateKey); !ok || base64.StdEncoding.EncodeToString(rk.N.Bytes()) != n {
		t.Fatal("the key the README's commands opened is not the HSM's key")
	}

	// A token that has expired is refused, with Azure's message; so is
	// the release for the admin's key that is not exportable.
	writeFile(t, tokenFile, maa.Token(t, attestationtest.SEVSNP(), &workload.PublicKey, -10*time.Minute))
	if errs := releaser.fails(exitFailure, "keyvault", "key", "release", "--hsm-name", "dev", "--name", "cvm-disk", "--target", "@"+tokenFile); !strings.Contains(errs, "attestation statement cannot be verified") {
		t.Fatalf("an expired token: %q", errs)
	}
	if errs := releaser.fails(exitUsage, "keyvault", "key", "release", "--hsm-name", "dev", "--name", "cvm-disk", "--target", "x", "-a", "RSA1_5"); !strings.Contains(errs, "--algorithm") {
		t.Fatalf("an unknown --algorithm: %q", errs)
	}

	// Made immutable, the policy stays.
	if got := admin.ok("keyvault", "key", "set-attributes", "--hsm-name", "dev", "--name", "cvm-disk", "--policy", policyFile, "--immutable",
		"--query", "releasePolicy.immutable", "-o", "tsv"); got != "true" {
		t.Fatalf("set-attributes --immutable: %q", got)
	}
	if errs := admin.fails(exitFailure, "keyvault", "key", "set-attributes", "--hsm-name", "dev", "--name", "cvm-disk", "--policy", policyFile); !strings.Contains(errs, "AKV.SKR.1020") {
		t.Fatalf("changing an immutable policy: %q", errs)
	}
}

func mustPKCS8(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// readmeBlock is the shell block of the README that follows the
// readme-test marker containing marker, as written.
func readmeBlock(t *testing.T, marker string) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), marker)
	if !ok {
		t.Fatalf("the README has no block marked %q", marker)
	}
	_, block, ok := strings.Cut(after, "```sh\n")
	if ok {
		block, _, ok = strings.Cut(block, "```")
	}
	if !ok {
		t.Fatalf("the README's block marked %q is not a shell block", marker)
	}
	return block
}
