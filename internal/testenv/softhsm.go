package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/keyward/keyward/internal/domain"
)

// softHSMModules are where distributions install SoftHSM2's library.
var softHSMModules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// SoftHSM initialises a fresh SoftHSM2 token in a temporary directory and
// returns the configuration that reaches it. SoftHSM2 must be installed
// (scripts/test installs it); its absence fails the test, never skips it.
func SoftHSM(t testing.TB) domain.PKCS11Config {
	t.Helper()
	module := os.Getenv("KEYWARD_PKCS11_MODULE")
	for _, m := range softHSMModules {
		if module != "" {
			break
		}
		if _, err := os.Stat(m); err == nil {
			module = m
		}
	}
	util, err := exec.LookPath("softhsm2-util")
	if module == "" || err != nil {
		t.Fatal("SoftHSM2 is not installed: run scripts/test, which installs it (apt-get install softhsm2)")
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	out, err := exec.Command(util, "--init-token", "--free", "--label", "keyward-test", "--so-pin", "87654321", "--pin", "12345678").CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v: %s", err, out)
	}
	return domain.PKCS11Config{Module: module, TokenLabel: "keyward-test", PIN: "12345678"}
}
