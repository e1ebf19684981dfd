// Package dropin_test shows Keyward as a drop-in for Azure Managed HSM:
// unmodified Azure SDK clients with their default options, and the tools
// built on them (SOPS, the Vault/OpenBao seal wrapper, sigstore's signer),
// reach a server in Azure-names mode (serve --azure-names) through DNS and
// a trusted CA alone, as they would in a network whose DNS sends Azure's
// names to Keyward.
//
// The test process gives itself those names without touching the
// machine: it runs again in a mount namespace of its own, where a private
// /etc/hosts sends login.microsoftonline.com, management.azure.com,
// graph.microsoft.com and the HSMs' names to a loopback address of its
// own, on which the server listens on port 443. SSL_CERT_FILE makes the
// server's CA the system's roots. Both need root, as CI has.
package dropin_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/cli"
	"github.com/keyward/keyward/internal/server"
)

// childEnv marks the run inside the mount namespace.
const childEnv = "KEYWARD_DROPIN_NAMESPACE"

// hsmNames are the HSMs the hosts file names (it has no wildcards).
var hsmNames = []string{"dev", "contoso"}

// the running server, for the tests (set once by TestMain, read only).
var srv *server.Server

// cliEnv makes this test binary the keyward command, so that a test runs
// the CLI as a process of its own (inside the namespace: it inherits it).
const cliEnv = "KEYWARD_DROPIN_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) != "" {
		os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	if os.Getenv(childEnv) == "" {
		os.Exit(inOwnNamespace())
	}
	os.Exit(serveAndRun(m))
}

// inOwnNamespace runs this test binary again, with the same arguments, in
// a new mount namespace (Go makes its mounts private), and returns its exit
// code.
func inOwnNamespace() int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "dropin: these tests need root: they give the test process its own /etc/hosts "+
			"(a mount namespace) and serve on port 443. Run them as root, as scripts/test does in CI.")
		return 1
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if err := cmd.Run(); err != nil {
		if exit, ok := err.(*exec.ExitError); ok {
			return exit.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "dropin: running in a mount namespace:", err)
		return 1
	}
	return 0
}

// serveAndRun points Azure's names at a loopback address of this run,
// starts a server there in Azure-names mode, trusts its CA, sets the
// standard credential variables to its bootstrap administrator, and runs
// the tests.
func serveAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "keyward-dropin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	n, _ := rand.Int(rand.Reader, big.NewInt(240*250))
	addr := fmt.Sprintf("127.%d.%d.%d", 10+n.Int64()/250, n.Int64()%250+1, 7)
	names := []string{server.AzureLoginHost, server.AzureManagementHost, server.AzureGraphHost}
	for _, h := range hsmNames {
		names = append(names, h+"."+server.AzureHSMSuffix)
	}
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"+addr+" "+strings.Join(names, " ")+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := syscall.Mount(hosts, "/etc/hosts", "", syscall.MS_BIND, ""); err != nil {
		fmt.Fprintln(os.Stderr, "dropin: mounting the test's /etc/hosts:", err)
		return 1
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "443"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dropin:", err)
		return 1
	}
	logs, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.New(ctx, server.Config{Listen: ln.Addr().String(), DataDir: filepath.Join(dir, "data"), Dev: true,
		AzureNames: true, AllowPrivateEndpoints: true, Log: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		cancel()
		fmt.Fprintln(os.Stderr, "dropin: starting the server:", err)
		return 1
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		<-served
		s.Close()
	}()
	srv = s
	b := s.Bootstrap()
	for k, v := range map[string]string{"SSL_CERT_FILE": s.CAFile(), "AZURE_TENANT_ID": b.TenantID,
		"AZURE_CLIENT_ID": b.ClientID, "AZURE_CLIENT_SECRET": b.ClientSecret} {
		os.Setenv(k, v)
	}
	code := m.Run()
	if code != 0 {
		logs.Seek(0, io.SeekStart)
		tail, _ := io.ReadAll(logs)
		if len(tail) > 8000 {
			tail = tail[len(tail)-8000:]
		}
		fmt.Fprintf(os.Stderr, "dropin: the server's log ends:\n%s\n", tail)
	}
	return code
}

// ctx gives each call of a test a deadline.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}
