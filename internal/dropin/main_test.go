// Package dropin_test shows Keyward as a drop-in for Azure Managed HSM:
// unmodified Azure SDK clients with their default options, and the tools
// built on them (SOPS, the Vault/OpenBao seal wrapper, sigstore's signer),
// reach a server in Azure-names mode (serve --azure-names) through DNS and
// a trusted CA alone, as they would in a network whose DNS sends Azure's
// names to Keyward.
//
// The test process gives itself those names without touching the
// machine: it runs again in mount and network namespaces of its own (and,
// when not run as root, a user namespace in which it is), where a private
// /etc/hosts sends login.microsoftonline.com, management.azure.com,
// graph.microsoft.com and the HSMs' names to the namespace's own loopback,
// on whose port 443 the server listens. SSL_CERT_FILE makes the server's
// CA the system's roots.
package dropin_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
// new mount and network namespaces (Go makes the mounts private), and
// returns its exit code.
func inOwnNamespace() int {
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWNET}
	if uid, gid := os.Getuid(), os.Getgid(); uid != 0 {
		// Root in a user namespace of its own, as rootless containers are.
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}}
	}
	cmd.SysProcAttr = attr
	if err := cmd.Run(); err != nil {
		if exit, ok := err.(*exec.ExitError); ok {
			return exit.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "dropin: running in namespaces of its own (as root, or with unprivileged user namespaces):", err)
		return 1
	}
	return 0
}

// loopbackUp brings up the new network namespace's loopback interface.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
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
	if err := loopbackUp(); err != nil {
		fmt.Fprintln(os.Stderr, "dropin: bringing up the namespace's loopback:", err)
		return 1
	}
	const addr = "127.0.0.1" // the namespace's own
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
