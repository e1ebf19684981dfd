package server_test

import (
	"crypto/fips140"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/keyward/keyward/internal/servertest"
)

// keyOperationSuite is the key-operation test suite, which runs in both
// modes: here as part of the package, and again with Go's FIPS 140-3 module
// enforced (GODEBUG=fips140=only) by TestKeyOperationSuiteInFIPSMode.
var keyOperationSuite = []string{
	"TestSignVerifyEveryKeyType",
	"TestEncryptDecryptWrapUnwrap",
	"TestImportVersionsRotation",
	"TestSoftDeleteRecoverPurge",
	"TestBackupPurgeRestore",
	"TestPaging",
	"TestRandomBytes",
	"TestPostQuantumKeysThroughAzkeys",
	"TestBYOK",
	"TestKeyRelease",
	"TestFIPSModeIsAnnounced",
}

// fipsRefuses is what FIPS mode must refuse, written here from Go's FIPS
// 140-3 module (what it implements and approves), not from Keyward's code.
var fipsRefuses = map[string]bool{
	"P-256K":               true, // secp256k1 is not a FIPS 186-5 curve
	"ES256K":               true,
	"RSA-OAEP":             true, // SHA-1
	"RSA1_5":               true, // PKCS#1 v1.5 encryption
	"A128KW":               true, // AES key wrap is not in the module
	"A192KW":               true,
	"A256KW":               true,
	"ML-DSA":               true, // cloudflare/circl, outside the module
	"ML-KEM-768 wrap":      true, // ends in AES key wrap
	"CKM_RSA_AES_KEY_WRAP": true, // RSA-OAEP SHA-1 and AES-KWP (BYOK, key release)
	"import":               true, // a key-exchange key opens only CKM_RSA_AES_KEY_WRAP
	"exportable":           true, // a released key is wrapped with CKM_RSA_AES_KEY_WRAP
}

// refusedInFIPS reports whether the process is in FIPS mode and what is
// one it refuses; then err must be FIPS mode's 400 BadParameter, whose
// message names FIPS mode. The caller stops using what there.
func refusedInFIPS(t *testing.T, what string, err error) bool {
	t.Helper()
	if !fips140.Enforced() || !fipsRefuses[what] {
		return false
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 400 || re.ErrorCode != "BadParameter" || !strings.Contains(err.Error(), "not available in FIPS 140-3 mode") {
		t.Fatalf("%s in FIPS mode: err = %v, want 400 BadParameter naming FIPS mode", what, err)
	}
	return true
}

// TestKeyOperationSuiteInFIPSMode runs the key-operation suite again in a
// child process with Go's FIPS 140-3 module enforced, as keyward serve
// --fips runs: what the module covers works, and what it does not is
// refused with a message that names FIPS mode.
func TestKeyOperationSuiteInFIPSMode(t *testing.T) {
	t.Parallel()
	run := "^(" + strings.Join(keyOperationSuite, "|") + ")$"
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", run, "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "GODEBUG=fips140=only")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the key-operation suite in FIPS mode: %v\n%s", err, out)
	}
	for _, name := range keyOperationSuite {
		if !strings.Contains(string(out), "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass in FIPS mode:\n%s", name, out)
		}
	}
	if !strings.Contains(string(out), "FIPS 140-3 mode: on") {
		t.Errorf("the child did not run in FIPS mode:\n%s", out)
	}
}

// TestFIPSModeIsAnnounced: /metadata/endpoints says whether the server
// runs in FIPS 140-3 mode, and with which Go module.
func TestFIPSModeIsAnnounced(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	r := env.Do("GET", "/metadata/endpoints?api-version=2022-09-01", "", nil)
	var m struct {
		FIPS *struct {
			Enabled bool   `json:"enabled"`
			Module  string `json:"goCryptographicModule"`
		} `json:"keywardFips140"`
	}
	if err := json.Unmarshal(r.Body, &m); err != nil || m.FIPS == nil {
		t.Fatalf("metadata: %v %s", err, r.Body)
	}
	if m.FIPS.Enabled != fips140.Enforced() || m.FIPS.Module != fips140.Version() {
		t.Fatalf("metadata says FIPS %+v; the process: enforced %v, module %s", *m.FIPS, fips140.Enforced(), fips140.Version())
	}
	if m.FIPS.Enabled {
		t.Logf("FIPS 140-3 mode: on (Go Cryptographic Module %s)", m.FIPS.Module)
	}
}
