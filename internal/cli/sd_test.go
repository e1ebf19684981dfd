package cli

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/keyward/keyward/internal/securitydomain"
	"github.com/keyward/keyward/internal/servertest"
)

// custodian writes a key pair as `openssl req -newkey rsa:2048 -nodes
// -keyout cert_N.key -x509 -out cert_N.cer` would, and returns the paths.
func custodian(t *testing.T, dir string, n int) (keyFile, certFile string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(n + 1)), Subject: pkix.Name{CommonName: "custodian"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(k)
	keyFile, certFile = filepath.Join(dir, "cert_"+string(rune('0'+n))+".key"), filepath.Join(dir, "cert_"+string(rune('0'+n))+".cer")
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})))
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	return keyFile, certFile
}

func TestSecurityDomainRecovery(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	b := env.Boot
	dir := t.TempDir()
	admin := kw{t, t.TempDir()}
	admin.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", b.ClientID, "-p", b.ClientSecret, "--tenant", b.TenantID, "--ca-file", b.CAFile)
	me := admin.ok("ad", "sp", "show", "--id", b.ClientID, "--query", "id", "-o", "tsv")
	var keys, certs []string
	for i := range 3 {
		k, c := custodian(t, dir, i)
		keys, certs = append(keys, k), append(certs, c)
	}
	fail := func(k kw, want string, args ...string) {
		t.Helper()
		_, errs, code := k.run("", args...)
		if code == 0 || !strings.Contains(errs, want) {
			t.Fatalf("keyward %s: exit %d %q, want an error with %q", strings.Join(args, " "), code, errs, want)
		}
	}

	// HSM A: created, not activated, keys refused.
	admin.ok("group", "create", "--name", "app-rg", "--location", "local")
	admin.ok("keyvault", "create", "--hsm-name", "contoso-a", "--resource-group", "app-rg", "--administrators", me, "--retention-days", "28")
	if got := admin.ok("keyvault", "show", "--hsm-name", "contoso-a", "--query", "properties.securityDomainProperties.activationStatus", "-o", "tsv"); got != "NotActivated" {
		t.Fatalf("new HSM activation = %q", got)
	}
	// The Administrator may grant itself key roles before activation.
	admin.ok("keyvault", "role", "assignment", "create", "--hsm-name", "contoso-a", "--assignee", me, "--scope", "/", "--role", "Managed HSM Crypto User")
	fail(admin, "HSMNotActivated", "keyvault", "key", "create", "--hsm-name", "contoso-a", "--name", "k", "--kty", "RSA-HSM")

	sdFile := filepath.Join(dir, "contoso-SD.json")
	fail(admin, "quorum", "keyvault", "security-domain", "download", "--hsm-name", "contoso-a", "--sd-wrapping-keys", certs[0], certs[1], certs[2],
		"--sd-quorum", "4", "--security-domain-file", sdFile)
	// As az: the download waits on the operation and prints its status.
	if got := admin.ok("keyvault", "security-domain", "download", "--hsm-name", "contoso-a", "--sd-wrapping-keys", certs[0], certs[1], certs[2],
		"--sd-quorum", "2", "--security-domain-file", sdFile, "--query", "[status, statusDetails != null]", "-o", "tsv"); got != "Success\ntrue" {
		t.Fatalf("download printed %q", got)
	}
	admin.ok("keyvault", "security-domain", "wait", "--hsm-name", "contoso-a", "--target-operation", "download")
	if got := admin.ok("keyvault", "show", "--hsm-name", "contoso-a", "--query", "properties.securityDomainProperties.activationStatus", "-o", "tsv"); got != "Active" {
		t.Fatalf("after download = %q", got)
	}

	// Keys in A, used and backed up.
	ctx := context.Background()
	hsmA := "https://contoso-a.mhsm.localhost:" + port(b.AuthorityHost)
	ka := env.KeysClientFor(hsmA, env.Cred)
	rsaKey, err := ka.CreateKey(ctx, "signer", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM)}, nil)
	must(t, err)
	_, err = ka.CreateKey(ctx, "cmk", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOctHSM), KeySize: to.Ptr(int32(256))}, nil)
	must(t, err)
	digest := make([]byte, 32)
	rand.Read(digest)
	sig, err := ka.Sign(ctx, "signer", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmPS256), Value: digest}, nil)
	must(t, err)
	ct, err := ka.Encrypt(ctx, "cmk", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256GCM), Value: []byte("secret data")}, nil)
	must(t, err)
	for _, k := range []string{"signer", "cmk"} {
		admin.ok("keyvault", "key", "backup", "--hsm-name", "contoso-a", "--name", k, "--file", filepath.Join(dir, k+".bak"))
	}

	// HSM B: recovery.
	admin.ok("keyvault", "create", "--hsm-name", "contoso-b", "-g", "keyward", "--administrators", me)
	exchange := filepath.Join(dir, "exchange.cer")
	admin.ok("keyvault", "security-domain", "init-recovery", "--hsm-name", "contoso-b", "--sd-exchange-key", exchange)
	fail(admin, "quorum", "keyvault", "security-domain", "upload", "--hsm-name", "contoso-b", "--sd-file", sdFile,
		"--sd-exchange-key", exchange, "--sd-wrapping-keys", keys[0])
	stranger, _ := custodian(t, t.TempDir(), 9)
	fail(admin, "quorum", "keyvault", "security-domain", "upload", "--hsm-name", "contoso-b", "--sd-file", sdFile,
		"--sd-exchange-key", exchange, "--sd-wrapping-keys", keys[0], stranger)
	raw, _ := os.ReadFile(sdFile)
	var file securitydomain.File
	must(t, json.Unmarshal(raw, &file))
	jwe := []byte(file.EncData.Data[0].CompactJWE)
	jwe[len(jwe)-5] ^= 1 // a flipped byte in the tag
	file.EncData.Data[0].CompactJWE = string(jwe)
	flipped, _ := json.Marshal(file)
	flippedFile := filepath.Join(dir, "flipped.json")
	writeFile(t, flippedFile, string(flipped))
	fail(admin, "does not authenticate", "keyvault", "security-domain", "upload", "--hsm-name", "contoso-b", "--sd-file", flippedFile,
		"--sd-exchange-key", exchange, "--sd-wrapping-keys", keys[0], keys[1])
	if got := admin.ok("keyvault", "show", "--hsm-name", "contoso-b", "--query", "properties.securityDomainProperties.activationStatusMessage", "-o", "tsv"); !strings.Contains(got, "waiting") {
		t.Fatalf("after refused uploads B is %q", got)
	}
	admin.ok("keyvault", "security-domain", "upload", "--hsm-name", "contoso-b", "--sd-file", sdFile,
		"--sd-exchange-key", exchange, "--sd-wrapping-keys", keys[2], keys[0])
	admin.ok("keyvault", "security-domain", "wait", "--hsm-name", "contoso-b")

	// B holds A's keys: restore the backups and use them.
	admin.ok("keyvault", "role", "assignment", "create", "--hsm-name", "contoso-b", "--assignee", me, "--scope", "/", "--role", "Managed HSM Crypto User")
	for _, k := range []string{"signer", "cmk"} {
		admin.ok("keyvault", "key", "restore", "--hsm-name", "contoso-b", "--file", filepath.Join(dir, k+".bak"))
	}
	kb := env.KeysClientFor("https://contoso-b.mhsm.localhost:"+port(b.AuthorityHost), env.Cred)
	got, err := kb.GetKey(ctx, "signer", "", nil)
	must(t, err)
	if got.Key.KID.Version() != rsaKey.Key.KID.Version() || string(got.Key.N) != string(rsaKey.Key.N) {
		t.Fatal("B's restored key is not A's")
	}
	v, err := kb.Verify(ctx, "signer", "", azkeys.VerifyParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmPS256), Digest: digest, Signature: sig.Result}, nil)
	if err != nil || !*v.Value {
		t.Fatalf("B does not verify A's signature: %v", err)
	}
	pt, err := kb.Decrypt(ctx, "cmk", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmA256GCM), Value: ct.Result,
		IV: ct.IV, AuthenticationTag: ct.AuthenticationTag}, nil)
	if err != nil || string(pt.Result) != "secret data" {
		t.Fatalf("B decrypts A's ciphertext: %q, %v", pt.Result, err)
	}

	// HSM C has its own domain: A's backups do not restore there.
	admin.ok("keyvault", "create", "--hsm-name", "contoso-c", "-g", "keyward", "--administrators", me)
	admin.ok("keyvault", "role", "assignment", "create", "--hsm-name", "contoso-c", "--assignee", me, "--scope", "/", "--role", "Managed HSM Crypto User")
	admin.ok("keyvault", "security-domain", "download", "--hsm-name", "contoso-c", "--sd-wrapping-keys", certs[0], certs[1], certs[2],
		"--sd-quorum", "3", "--security-domain-file", filepath.Join(dir, "c.json"))
	fail(admin, "BadParameter", "keyvault", "key", "restore", "--hsm-name", "contoso-c", "--file", filepath.Join(dir, "signer.bak"))

	// A Crypto User may not download or upload a security domain.
	user := env.ServicePrincipal("crypto-user")
	env.Assign(user.ObjectID, "21dbd100-6940-42c2-9190-5d6cb909625b", "/") // on the dev HSM
	tok := env.Token(user.Cred, "https://managedhsm.azure.net")
	for _, req := range []struct{ method, path string }{{"POST", "/securitydomain/download"}, {"GET", "/securitydomain/upload"}, {"POST", "/securitydomain/upload"}} {
		r := env.Do(req.method, req.path+"?api-version=7.2", tok, map[string]any{})
		if r.Status != 403 || r.ErrorCode() != "AccessDenied" {
			t.Errorf("crypto user %s %s: %d %s", req.method, req.path, r.Status, r.Body)
		}
	}

	// A second download to new custodians re-wraps the same domain.
	var newKeys, newCerts []string
	for i := 3; i < 6; i++ {
		k, c := custodian(t, dir, i)
		newKeys, newCerts = append(newKeys, k), append(newCerts, c)
	}
	again := filepath.Join(dir, "contoso-SD-2.json")
	redownload := []string{"keyvault", "security-domain", "download", "--hsm-name", "contoso-a", "--sd-wrapping-keys", newCerts[0], newCerts[1], newCerts[2],
		"--sd-quorum", "3", "--security-domain-file", again}
	// On an active HSM it waits for a second administrator's approval: a
	// second administrator asks, the HSM's first approves.
	second := env.ServicePrincipal("second-admin")
	admin.ok("keyvault", "role", "assignment", "create", "--hsm-name", "contoso-a", "--assignee-object-id", second.ObjectID, "--scope", "/", "--role", "Managed HSM Administrator")
	asker := kw{t, t.TempDir()}
	asker.ok("login", "--server", b.AuthorityHost, "--service-principal", "-u", second.AppID, "-p", second.Secret, "--tenant", b.TenantID, "--ca-file", b.CAFile)
	fail(asker, "SecurityDomainDownloadApprovalRequired", redownload...)
	if _, err := os.Stat(again); err == nil {
		t.Fatal("a refused download wrote its file")
	}
	id := admin.ok("keyvault", "security-domain", "list-requests", "--hsm-name", "contoso-a", "--query", "[?status=='Pending'].id | [0]", "-o", "tsv")
	fail(asker, "another principal", "keyvault", "security-domain", "approve", "--hsm-name", "contoso-a", "--request-id", id)
	if got := admin.ok("keyvault", "security-domain", "approve", "--hsm-name", "contoso-a", "--request-id", id, "--query", "status", "-o", "tsv"); got != "Approved" {
		t.Fatalf("approve: %q", got)
	}
	asker.ok(redownload...)
	fail(asker, "already exists", "keyvault", "security-domain", "download", "--hsm-name", "contoso-a", "--sd-wrapping-keys", newCerts[0], newCerts[1], newCerts[2],
		"--sd-quorum", "3", "--security-domain-file", again)

	// The domain key never shows outside the encrypted file.
	domainKey := recoverDomainKey(t, sdFile, keys[:2])
	if string(recoverDomainKey(t, again, newKeys)) != string(domainKey) {
		t.Fatal("the second download carries another domain")
	}
	for _, form := range []string{base64.StdEncoding.EncodeToString(domainKey), base64.RawURLEncoding.EncodeToString(domainKey), hex.EncodeToString(domainKey)} {
		if strings.Contains(env.Logs(), form[:24]) {
			t.Fatal("the domain key appears in the server log")
		}
	}
}

// recoverDomainKey opens the file as a quorum of custodians would and
// returns the domain key it carries.
func recoverDomainKey(t *testing.T, sdFile string, keyFiles []string) []byte {
	raw, _ := os.ReadFile(sdFile)
	var f securitydomain.File
	must(t, json.Unmarshal(raw, &f))
	var privs []*rsa.PrivateKey
	for _, p := range keyFiles {
		k, err := readPrivateKey(p)
		must(t, err)
		privs = append(privs, k)
	}
	exKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &exKey.PublicKey, exKey)
	exCert, _ := x509.ParseCertificate(der)
	blob, err := securitydomain.RestoreBlobFor(rand.Reader, &f, privs, exCert)
	must(t, err)
	items, err := securitydomain.OpenRestoreBlob(blob, exKey, exCert)
	must(t, err)
	var payload struct{ DomainKey []byte }
	must(t, json.Unmarshal(items["hsm_backup"], &payload))
	if len(payload.DomainKey) != 32 {
		t.Fatalf("domain key of %d bytes", len(payload.DomainKey))
	}
	return payload.DomainKey
}

func port(u string) string {
	u = strings.TrimSuffix(u, "/")
	return u[strings.LastIndex(u, ":")+1:]
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
