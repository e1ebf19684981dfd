package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/store"
)

// Files in the data directory: the cluster CA's certificate (for
// clients), the CA key an earlier version kept beside it, and the node's
// server certificate.
const (
	caCertFile     = "ca.pem"
	caKeyFile      = "ca-key.pem"
	serverCertFile = "server.pem"
	serverKeyFile  = "server-key.pem"
)

// ensureTLS returns the node's server certificate, issued by the cluster
// CA (see loadOrCreateCA) and kept in dir. The certificate names every
// host clients use: the listen host, localhost, the public URL's host and
// any host under the HSM DNS suffix. It is reissued when a name is
// missing, it nears expiry or another CA issued it.
func ensureTLS(dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, serverCertFile), filepath.Join(dir, serverKeyFile)
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && covers(c.Leaf, hosts) && c.Leaf.CheckSignatureFrom(ca) == nil {
		c.Certificate = append(c.Certificate[:1], ca.Raw)
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server: generating TLS key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: "keyward server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server: issuing TLS certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server: encoding TLS key: %w", err)
	}
	// The key first: a certificate without its key would be reissued
	// anyway, a key without its certificate is harmless.
	if err := writePEM(keyPath, "PRIVATE KEY", kder, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	c.Certificate = append(c.Certificate[:1], ca.Raw)
	return c, nil
}

func covers(leaf *x509.Certificate, hosts []string) bool {
	if leaf == nil || time.Until(leaf.NotAfter) < 30*24*time.Hour {
		return false
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(leaf.DNSNames, h) {
			return false
		}
	}
	return true
}

// kindClusterCA is the store object holding the cluster CA.
const kindClusterCA = "cluster-ca"

// clusterCAAAD binds the sealed CA key to its use.
var clusterCAAAD = []byte("keyward cluster CA key")

// storedCA is the cluster CA as the store keeps it: its certificate, and
// its key sealed by the node seal.
type storedCA struct {
	Certificate []byte `json:"certificate"`
	SealedKey   []byte `json:"sealedKey"`
}

// loadOrCreateCA returns the cluster's CA and writes its certificate to
// dir/ca.pem for clients. The CA lives in the store, its key sealed, so
// every node of a cluster issues its server certificate under the one CA
// clients trust. The first node to start makes it, adopting the CA an
// earlier single-node version kept in dir (ca.pem, ca-key.pem) so clients
// keep trusting it; the key file is then removed (removeLocalCAKey),
// since the key is kept sealed.
func loadOrCreateCA(ctx context.Context, st store.Store, seal domain.Seal, dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	var found *store.Object
	err := st.View(ctx, func(tx store.Tx) (err error) {
		found, err = tx.GetObject(ctx, kindClusterCA, "ca")
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, nil, fmt.Errorf("server: reading the cluster CA: %w", err)
	}
	if found == nil {
		cert, key, err := localOrNewCA(dir)
		if err != nil {
			return nil, nil, err
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, fmt.Errorf("server: encoding CA key: %w", err)
		}
		sealed, err := seal.Seal(ctx, kder, clusterCAAAD)
		if err != nil {
			return nil, nil, fmt.Errorf("server: sealing CA key: %w", err)
		}
		data, err := json.Marshal(storedCA{Certificate: cert.Raw, SealedKey: sealed})
		if err != nil {
			return nil, nil, err
		}
		// Writers are serialised: a node that started at the same time
		// and stored its CA first wins, and this one uses that.
		err = st.Update(ctx, func(tx store.Tx) error {
			o, err := tx.GetObject(ctx, kindClusterCA, "ca")
			if err == nil {
				found = o
				return nil
			}
			if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			found = &store.Object{Kind: kindClusterCA, ID: "ca", Data: data}
			return tx.PutObject(ctx, found)
		})
		if err != nil {
			return nil, nil, fmt.Errorf("server: storing the cluster CA: %w", err)
		}
	}
	var sc storedCA
	if err := json.Unmarshal(found.Data, &sc); err != nil {
		return nil, nil, fmt.Errorf("server: reading the cluster CA: %w", err)
	}
	cert, err := x509.ParseCertificate(sc.Certificate)
	if err != nil {
		return nil, nil, fmt.Errorf("server: reading the cluster CA: %w", err)
	}
	kder, err := seal.Open(ctx, sc.SealedKey, clusterCAAAD)
	if err != nil {
		return nil, nil, fmt.Errorf("server: opening the cluster CA key: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kder)
	key, ok := k.(*ecdsa.PrivateKey)
	if err != nil || !ok {
		return nil, nil, errors.New("server: the cluster CA key is not ECDSA")
	}
	if err := writePEM(filepath.Join(dir, caCertFile), "CERTIFICATE", cert.Raw, 0o644); err != nil {
		return nil, nil, err
	}
	if err := removeLocalCAKey(dir, key); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// removeLocalCAKey removes the plaintext CA key an earlier version kept in
// dir once the cluster CA (kept sealed) has it: on every start, so that a
// start cut short after the adoption, or a node that joined with an old
// data directory, does not keep it. A key file of another CA is an error:
// clients may still trust that CA, and its key lies in the clear.
func removeLocalCAKey(dir string, clusterKey *ecdsa.PrivateKey) error {
	path := filepath.Join(dir, caKeyFile)
	keyPEM, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("server: reading %s: %w", path, err)
	}
	if block, _ := pem.Decode(keyPEM); block != nil {
		if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
			if ek, ok := k.(*ecdsa.PrivateKey); ok && ek.Equal(clusterKey) {
				if err := os.Remove(path); err != nil {
					return fmt.Errorf("server: removing the plaintext CA key %s: %w", path, err)
				}
				return nil
			}
		}
	}
	return fmt.Errorf("server: %s holds the key of a CA that is not the cluster's (this data directory was another "+
		"server's): clients that trust its ca.pem should stop; remove the key file to start", path)
}

// localOrNewCA returns the CA an earlier version kept in dir, or a new one.
func localOrNewCA(dir string) (cert *x509.Certificate, key *ecdsa.PrivateKey, err error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, caCertFile))
	keyPEM, kerr := os.ReadFile(filepath.Join(dir, caKeyFile))
	if err == nil && kerr == nil {
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("server: loading the CA in %s: %w", dir, err)
		}
		key, ok := c.PrivateKey.(*ecdsa.PrivateKey)
		if !ok {
			return nil, nil, errors.New("server: the CA key is not ECDSA")
		}
		return c.Leaf, key, nil
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("server: generating CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "Keyward local CA", Organization: []string{"Keyward"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("server: creating CA: %w", err)
	}
	cert, err = x509.ParseCertificate(der)
	return cert, key, err
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic("server: reading randomness: " + err.Error())
	}
	return n
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

// writeFileAtomic writes data to path through a synced temporary file and
// a rename, so a crash leaves the old file or the new one, never half.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("server: writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("server: writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("server: writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("server: writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("server: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("server: writing %s: %w", path, err)
	}
	return nil
}
