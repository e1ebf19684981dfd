package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
)

// Azurite's well-known development account.
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Azurite is a running Azure Blob storage emulator.
type Azurite struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
}

// azuriteBin finds azurite-blob: $KEYWARD_AZURITE (scripts/test sets it),
// or .cache/azurite in the repository.
func azuriteBin() string {
	if b := os.Getenv("KEYWARD_AZURITE"); b != "" {
		return b
	}
	dir, _ := os.Getwd()
	for range 6 {
		p := filepath.Join(dir, ".cache", "azurite", "node_modules", ".bin", "azurite-blob")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		dir = filepath.Dir(dir)
	}
	return ""
}

// StartAzurite runs azurite-blob on a loopback port with its own data
// directory. Its absence fails the test: scripts/test installs it.
func StartAzurite(t testing.TB) *Azurite {
	t.Helper()
	bin := azuriteBin()
	if bin == "" {
		t.Fatal("Azurite is not installed: run scripts/test, which installs azurite@3.35.0 with npm")
	}
	a := &Azurite{t: t, bin: bin, dir: t.TempDir()}
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a.port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if err := a.start(); err == nil {
			break
		} else if attempt == 2 {
			t.Fatal(err)
		}
	}
	t.Cleanup(a.Stop)
	return a
}

func (a *Azurite) start() error {
	cmd := exec.Command(a.bin, "--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(a.port), "--location", a.dir,
		"--disableTelemetry", "--silent", "--skipApiVersionCheck", "--loose")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting azurite: %w", err)
	}
	a.cmd = cmd
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(a.port)), 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	a.Stop()
	return fmt.Errorf("azurite did not listen on port %d", a.port)
}

// Endpoint is the blob service URL of the development account.
func (a *Azurite) Endpoint() string {
	return fmt.Sprintf("http://127.0.0.1:%d/%s", a.port, AzuriteAccount)
}

// Stop terminates Azurite, letting it save its data for Restart (Azurite
// keeps its metadata in memory between saves, so SIGKILL would lose
// acknowledged writes, which real storage never does).
func (a *Azurite) Stop() {
	if a.cmd == nil {
		return
	}
	done := make(chan struct{})
	go func() { a.cmd.Wait(); close(done) }()
	syscall.Kill(-a.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	a.cmd = nil
}

// Restart starts Azurite again on the same port and data.
func (a *Azurite) Restart() {
	a.t.Helper()
	if err := a.start(); err != nil {
		a.t.Fatal(err)
	}
}

// Container creates a blob container and returns its URL and a SAS token
// that lets its holder read, write, list and create in it for an hour.
func (a *Azurite) Container(name string) (uri, sasToken string) {
	a.t.Helper()
	cred, err := azblob.NewSharedKeyCredential(AzuriteAccount, AzuriteKey)
	if err != nil {
		a.t.Fatal(err)
	}
	c, err := azblob.NewClientWithSharedKeyCredential(a.Endpoint(), cred, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	if _, err := c.CreateContainer(context.Background(), name, nil); err != nil {
		a.t.Fatal(err)
	}
	qp, err := sas.BlobSignatureValues{Protocol: sas.ProtocolHTTPSandHTTP, ExpiryTime: time.Now().Add(time.Hour), ContainerName: name,
		Permissions: (&sas.ContainerPermissions{Read: true, Add: true, Create: true, Write: true, List: true}).String()}.SignWithSharedKey(cred)
	if err != nil {
		a.t.Fatal(err)
	}
	return a.Endpoint() + "/" + name, qp.Encode()
}
