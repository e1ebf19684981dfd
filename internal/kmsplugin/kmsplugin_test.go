package kmsplugin

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestKeyIDs: Decrypt unwraps only with a version of its own key; a key id
// of another key, HSM or path is refused before the HSM is asked.
func TestKeyIDs(t *testing.T) {
	p := New(nil, "https://dev.managedhsm.azure.net/", "k8s", time.Second)
	if v := p.version("https://dev.managedhsm.azure.net/keys/k8s/0123456789abcdef0123456789abcdef"); v != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("version %q", v)
	}
	for _, kid := range []string{
		"", "https://dev.managedhsm.azure.net/keys/k8s/", "https://dev.managedhsm.azure.net/keys/k8s/..",
		"https://dev.managedhsm.azure.net/keys/k8s/.", "https://dev.managedhsm.azure.net/keys/k8s/a/b",
		"https://dev.managedhsm.azure.net/keys/k8s2/abc", "https://dev.managedhsm.azure.net/keys/other/abc",
		"https://evil.managedhsm.azure.net/keys/k8s/abc", "https://dev.managedhsm.azure.net/keys/k8s/abc?x=1",
		"https://dev.managedhsm.azure.net/keys/k8s/abc%2F..", "https://dev.managedhsm.azure.net/keys/k8s/" + string(make([]byte, 65)),
	} {
		if v := p.version(kid); v != "" {
			t.Errorf("key id %q gave version %q", kid, v)
		}
	}
}

// TestSocket: the socket is the owner's alone from the start, a stale
// socket is replaced, and a file that is not a socket is left alone.
func TestSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kms.sock")
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, path, New(nil, "https://dev.managedhsm.azure.net", "k8s", time.Second)) }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not serving")
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	regular := filepath.Join(dir, "precious")
	os.WriteFile(regular, []byte("data"), 0o600)
	if err := Serve(context.Background(), regular, New(nil, "https://x", "k", time.Second)); err == nil {
		t.Fatal("served over a regular file")
	}
	if b, _ := os.ReadFile(regular); string(b) != "data" {
		t.Fatal("the regular file was removed")
	}
}
