// Package kmsplugin is a Kubernetes KMS v2 plugin (k8s.io/kms) whose key
// encryption key is a key of a Managed HSM, Keyward's or Azure's. The API
// server's DEK seeds are wrapped by the HSM (RSA-OAEP-256 with an RSA key,
// A256KW with an AES key) through the Key Vault API, under the credential
// the plugin runs with: the seed story's Crypto Service Encryption User,
// for a cluster's secrets. The plugin holds no key material.
package kmsplugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	kmsapi "k8s.io/kms/apis/v2"
	"k8s.io/kms/pkg/service"
)

// Plugin implements service.Service with one key of one HSM.
type Plugin struct {
	keys    *azkeys.Client
	prefix  string // the key's id without its version: {hsm}/keys/{name}/
	name    string
	timeout time.Duration // of one call to the HSM

	mu  sync.Mutex
	alg azkeys.EncryptionAlgorithm // from the key's type, learned by Status
}

var _ service.Service = (*Plugin)(nil)

// New returns a plugin that wraps with the key named name of the HSM at
// hsmURL (https://{name}.managedhsm.azure.net), through c, each call to
// the HSM bounded by timeout.
func New(c *azkeys.Client, hsmURL, name string, timeout time.Duration) *Plugin {
	return &Plugin{keys: c, prefix: strings.TrimSuffix(hsmURL, "/") + "/keys/" + name + "/", name: name, timeout: timeout}
}

// Serve serves p on a unix socket at path until ctx is done, then stops
// gracefully. The socket is the owner's alone (0600): whoever can call
// Decrypt unwraps the cluster's DEKs.
func Serve(ctx context.Context, path string, p *Plugin) error {
	// A socket left by an earlier run is replaced; any other file is not.
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("kmsplugin: %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("kmsplugin: removing the old socket: %w", err)
		}
	}
	// Made 0600 from the start: the umask applies while it is created (the
	// plugin is a process of its own, so the process-wide umask is its).
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return fmt.Errorf("kmsplugin: %w", err)
	}
	defer ln.Close()
	gs := grpc.NewServer()
	// The module's adapter turns gRPC messages into service calls; its own
	// ListenAndServe and Shutdown race with each other, so the server is
	// ours.
	kmsapi.RegisterKeyManagementServiceServer(gs, service.NewGRPCService(path, p.timeout, p))
	served := make(chan error, 1)
	go func() { served <- gs.Serve(ln) }()
	select {
	case <-ctx.Done():
		gs.GracefulStop()
		<-served
		return nil
	case err := <-served:
		return err
	}
}

func (p *Plugin) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if p.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, p.timeout)
}

// Status reports the key's current version as the key id: when it
// changes (the key was rotated), the API server makes new DEKs, and
// decrypts the old ones with the versions their key ids name.
func (p *Plugin) Status(ctx context.Context) (*service.StatusResponse, error) {
	ctx, cancel := p.bounded(ctx)
	defer cancel()
	k, err := p.keys.GetKey(ctx, p.name, "", nil)
	if err != nil {
		return nil, fmt.Errorf("kmsplugin: reading key %s: %w", p.name, err)
	}
	alg, err := algorithmFor(k.Key)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.alg = alg
	p.mu.Unlock()
	return &service.StatusResponse{Version: "v2", Healthz: "ok", KeyID: string(*k.Key.KID)}, nil
}

// Encrypt wraps a DEK seed with the key's current version.
func (p *Plugin) Encrypt(ctx context.Context, _ string, plaintext []byte) (*service.EncryptResponse, error) {
	ctx, cancel := p.bounded(ctx)
	defer cancel()
	alg, err := p.algorithm(ctx)
	if err != nil {
		return nil, err
	}
	r, err := p.keys.WrapKey(ctx, p.name, "", azkeys.KeyOperationParameters{Algorithm: &alg, Value: plaintext}, nil)
	if err != nil {
		return nil, fmt.Errorf("kmsplugin: wrapping with %s: %w", p.name, err)
	}
	if r.KID == nil || p.version(string(*r.KID)) == "" {
		return nil, fmt.Errorf("kmsplugin: the HSM answered with key id %v, not a version of %s", r.KID, p.prefix)
	}
	return &service.EncryptResponse{Ciphertext: r.Result, KeyID: string(*r.KID)}, nil
}

// Decrypt unwraps a DEK seed with the key version its key id names. A key
// id of any other key is refused: it was not wrapped here.
func (p *Plugin) Decrypt(ctx context.Context, _ string, req *service.DecryptRequest) ([]byte, error) {
	version := p.version(req.KeyID)
	if version == "" {
		return nil, fmt.Errorf("kmsplugin: key id %q is not a version of %s", req.KeyID, strings.TrimSuffix(p.prefix, "/"))
	}
	ctx, cancel := p.bounded(ctx)
	defer cancel()
	alg, err := p.algorithm(ctx)
	if err != nil {
		return nil, err
	}
	r, err := p.keys.UnwrapKey(ctx, p.name, version, azkeys.KeyOperationParameters{Algorithm: &alg, Value: req.Ciphertext}, nil)
	if err != nil {
		return nil, fmt.Errorf("kmsplugin: unwrapping with %s/%s: %w", p.name, version, err)
	}
	return r.Result, nil
}

// version returns the version that kid names of this key, or "": a
// version is letters and digits (Azure's are 32 hex digits).
func (p *Plugin) version(kid string) string {
	v, ok := strings.CutPrefix(kid, p.prefix)
	if !ok || v == "" || len(v) > 64 {
		return ""
	}
	for _, c := range v {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return ""
		}
	}
	return v
}

// algorithm returns the wrapping algorithm, asking the HSM the first time.
func (p *Plugin) algorithm(ctx context.Context) (azkeys.EncryptionAlgorithm, error) {
	p.mu.Lock()
	alg := p.alg
	p.mu.Unlock()
	if alg != "" {
		return alg, nil
	}
	if _, err := p.Status(ctx); err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.alg, nil
}

var errKeyType = errors.New("kmsplugin: the key must be RSA or AES (oct)")

func algorithmFor(k *azkeys.JSONWebKey) (azkeys.EncryptionAlgorithm, error) {
	if k == nil || k.Kty == nil || k.KID == nil {
		return "", errKeyType
	}
	switch *k.Kty {
	case azkeys.KeyTypeRSA, azkeys.KeyTypeRSAHSM:
		return azkeys.EncryptionAlgorithmRSAOAEP256, nil
	case azkeys.KeyTypeOct, azkeys.KeyTypeOctHSM:
		return azkeys.EncryptionAlgorithmA256KW, nil
	}
	return "", fmt.Errorf("%w, not %s", errKeyType, *k.Kty)
}
