package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/keyward/keyward/internal/cli"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
)

// TestMain lets the test binary act as "keyward serve" in a child process,
// so tests can kill a real server with SIGKILL.
func TestMain(m *testing.M) {
	if dir := os.Getenv("KEYWARD_TEST_SERVE_DIR"); dir != "" {
		args := []string{"serve", "--dev", "--data-dir", dir, "--listen", "127.0.0.1:0"}
		if extra := os.Getenv("KEYWARD_TEST_SERVE_ARGS"); extra != "" {
			var more []string
			if err := json.Unmarshal([]byte(extra), &more); err != nil {
				panic(err)
			}
			args = append(args, more...) // a flag given again wins
		}
		os.Exit(cli.Main(args, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// child is a server running in a child process.
type child struct {
	cmd    *exec.Cmd
	url    string
	boot   server.Bootstrap
	output *strings.Builder
	mu     *sync.Mutex
}

func startChild(t *testing.T, dir string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	extra, _ := json.Marshal(args)
	cmd.Env = append(os.Environ(), "KEYWARD_TEST_SERVE_DIR="+dir, "KEYWARD_TEST_SERVE_ARGS="+string(extra))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, output: &strings.Builder{}, mu: &sync.Mutex{}}
	cmd.Stderr = writerFunc(func(p []byte) (int, error) { c.mu.Lock(); defer c.mu.Unlock(); return c.output.Write(p) })
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		c.mu.Lock()
		c.output.WriteString(line + "\n")
		c.mu.Unlock()
		if u, ok := strings.CutPrefix(line, "keyward is serving on "); ok {
			c.url = u
			break
		}
	}
	if c.url == "" {
		t.Fatalf("the server did not start: %s", c.Output())
	}
	go func() {
		for sc.Scan() {
			c.mu.Lock()
			c.output.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
		}
	}()
	b, err := os.ReadFile(filepath.Join(dir, server.BootstrapFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &c.boot); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *child) Output() string { c.mu.Lock(); defer c.mu.Unlock(); return c.output.String() }

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (c *child) keys(t *testing.T) *azkeys.Client {
	t.Helper()
	hc := servertest.HTTPClient(t, c.boot.CAFile)
	opts := azcore.ClientOptions{Transport: hc, Retry: policy.RetryOptions{MaxRetries: -1}}
	copts := opts
	copts.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: c.boot.AuthorityHost}
	cred, err := azidentity.NewClientSecretCredential(c.boot.TenantID, c.boot.ClientID, c.boot.ClientSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: copts, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	kc, err := azkeys.NewClient(c.boot.HSMURI, cred, &azkeys.ClientOptions{ClientOptions: opts, DisableChallengeResourceVerification: true})
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

// TestKillNineLosesNoAcknowledgedKey creates keys in a stream, kills the
// server with SIGKILL in the middle of it, restarts it on the same data
// directory and checks that every key whose creation was answered exists.
func TestKillNineLosesNoAcknowledgedKey(t *testing.T) {
	dir := t.TempDir()
	a := startChild(t, dir)
	kc := a.keys(t)

	var mu sync.Mutex
	var acked []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			name := fmt.Sprintf("k%04d", i)
			_, err := kc.CreateKey(ctx, name, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
			if err != nil {
				return // the server is gone
			}
			mu.Lock()
			acked = append(acked, name)
			mu.Unlock()
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 50 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	a.cmd.Wait()
	if len(acked) < 10 {
		t.Fatalf("only %d keys were created before the kill", len(acked))
	}

	b := startChild(t, dir)
	if b.boot.ClientID != a.boot.ClientID || b.boot.TenantID != a.boot.TenantID {
		t.Fatal("the restart made a new tenant or administrator")
	}
	kb := b.keys(t)
	for _, name := range acked {
		if _, err := kb.GetKey(ctx, name, "", nil); err != nil {
			t.Fatalf("acknowledged key %s is lost after kill -9: %v", name, err)
		}
	}
	// The last acknowledged key still signs: its sealed material survived.
	last := acked[len(acked)-1]
	digest := make([]byte, 32)
	if _, err := kb.Sign(ctx, last, "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest}, nil); err != nil {
		t.Fatalf("sign with %s after restart: %v", last, err)
	}
	t.Logf("%d acknowledged keys survived kill -9", len(acked))
	for _, c := range []*child{a, b} {
		if strings.Contains(c.Output(), c.boot.ClientSecret) {
			t.Fatal("the server printed the bootstrap client secret")
		}
	}
}

// TestRestartKeepsEverything restarts a server on its data directory and
// finds its keys, principals, tokens' issuer and CA unchanged.
func TestRestartKeepsEverything(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := servertest.StartIn(t, dir)
	created, err := a.Keys.CreateKey(ctx, "persist", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	admin := a.Token(a.Cred, "https://graph.microsoft.com")
	if r := a.Do("POST", a.Boot.AuthorityHost+"v1.0/groups", admin, map[string]string{"displayName": "Auditors", "mailNickname": "aud"}); r.Status != 201 {
		t.Fatalf("create group: %d %s", r.Status, r.Body)
	}
	ca, _ := os.ReadFile(a.Boot.CAFile)
	a.Stop()

	b := servertest.StartIn(t, dir)
	ca2, _ := os.ReadFile(b.Boot.CAFile)
	if string(ca) != string(ca2) || b.Boot.ClientSecret != a.Boot.ClientSecret || b.Boot.TenantID != a.Boot.TenantID {
		t.Fatal("the restart changed the CA, the tenant or the bootstrap credentials")
	}
	got, err := b.Keys.GetKey(ctx, "persist", "", nil)
	if err != nil || created.Key.KID.Version() != got.Key.KID.Version() {
		t.Fatalf("key after restart: %v, %v", got.Key, err)
	}
	digest := make([]byte, 32)
	if _, err := b.Keys.Sign(ctx, "persist", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Value: digest}, nil); err != nil {
		t.Fatal(err)
	}
	r := b.Do("GET", b.Boot.AuthorityHost+"v1.0/groups?$filter=displayName%20eq%20'Auditors'", b.Token(b.Cred, "https://graph.microsoft.com"), nil)
	if r.Status != 200 || !strings.Contains(string(r.Body), `"mailNickname":"aud"`) {
		t.Fatalf("group after restart: %d %s", r.Status, r.Body)
	}
}

// TestSIGTERMShutsDownGracefully stops a server with SIGTERM and expects a
// clean exit; a restart then finds its state.
func TestSIGTERMShutsDownGracefully(t *testing.T) {
	dir := t.TempDir()
	a := startChild(t, dir)
	if _, err := a.keys(t).CreateKey(ctx, "kept", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOctHSM)}, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, a.Output())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	b := startChild(t, dir)
	if _, err := b.keys(t).GetKey(ctx, "kept", "", nil); err != nil {
		t.Fatal(err)
	}
}
