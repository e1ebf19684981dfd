package cli

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
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
	if errs := admin.fails(exitFailure, "keyvault", "key", "create", "--hsm-name", "dev", "--name", "cvm-disk", "--exportable"); !strings.Contains(errs, "release policy") {
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
