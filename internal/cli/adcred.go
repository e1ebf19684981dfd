package cli

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// newSPCredentialCmd is `keyward ad sp credential`, as `az ad sp
// credential`: certificate credentials, so an application signs in with
// azidentity.ClientCertificateCredential and no shared secret.
func newSPCredentialCmd(e *env) *cobra.Command {
	cred := &cobra.Command{Use: "credential", Short: "Manage a service principal's certificate credentials"}
	var id, cert, keyFile string
	var create, appendTo bool
	cred.AddCommand(command(e, "reset", "Reset a client secret (as az, by default), or set a certificate (--cert, --create-cert)",
		func(cmd *cobra.Command) {
			f := cmd.Flags()
			f.StringVar(&id, "id", "", "the service principal's appId or object id")
			f.StringVar(&cert, "cert", "", "a PEM certificate, or @file naming one")
			f.BoolVar(&create, "create-cert", false, "create a self-signed certificate and write it with its private key to a PEM file")
			f.StringVar(&keyFile, "keyfile", "", "with --create-cert, where to write the PEM (default: <appId>.pem in the keyward config directory)")
			f.BoolVar(&appendTo, "append", false, "keep the existing certificates")
			required(cmd, "id")
			cmd.MarkFlagsMutuallyExclusive("cert", "create-cert")
		},
		func(ctx context.Context, c *client) (any, error) {
			var sp struct{ ID, AppID, DisplayName string }
			if err := c.graph(ctx, http.MethodGet, "/servicePrincipals/"+url.PathEscape(id), nil, &sp); err != nil {
				return nil, err
			}
			if !create && cert == "" {
				// As az (role/custom.py, reset_service_principal_credential):
				// a new client secret, the old ones removed unless --append.
				secret, err := c.resetPassword(ctx, sp.ID, appendTo)
				if err != nil {
					return nil, err
				}
				return map[string]any{"appId": sp.AppID, "displayName": sp.DisplayName, "password": secret, "tenant": c.prof.TenantID}, nil
			}
			var der []byte
			var written string
			var err error
			if create {
				if keyFile == "" {
					keyFile = filepath.Join(e.configDir, sp.AppID+".pem")
				}
				if der, err = createCertificate(sp.DisplayName, keyFile); err != nil {
					return nil, err
				}
				written = keyFile
			} else if der, err = readCertificate(cert); err != nil {
				return nil, err
			}
			if err := c.setCertificate(ctx, sp.ID, der, appendTo); err != nil {
				return nil, err
			}
			out := map[string]any{"appId": sp.AppID, "displayName": sp.DisplayName, "password": nil, "tenant": c.prof.TenantID}
			if written != "" {
				out["fileWithCertAndPrivateKey"] = written
			}
			return out, nil
		}))
	cred.AddCommand(command(e, "list", "List a service principal's certificate credentials",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&id, "id", "", "the service principal's appId or object id")
			required(cmd, "id")
		},
		func(ctx context.Context, c *client) (any, error) {
			return c.graphList(ctx, "/servicePrincipals/"+url.PathEscape(id)+"/keyCredentials")
		}))
	return cred
}

// setCertificate gives the service principal spID the certificate der,
// with its earlier certificates if keep.
func (c *client) setCertificate(ctx context.Context, spID string, der []byte, keep bool) error {
	creds := []map[string]string{}
	if keep {
		var existing struct {
			Value []struct {
				KeyID string `json:"keyId"`
			} `json:"value"`
		}
		if err := c.graph(ctx, http.MethodGet, "/servicePrincipals/"+spID+"/keyCredentials", nil, &existing); err != nil {
			return err
		}
		for _, k := range existing.Value {
			creds = append(creds, map[string]string{"keyId": k.KeyID})
		}
	}
	creds = append(creds, map[string]string{"type": "AsymmetricX509Cert", "usage": "Verify", "key": base64.StdEncoding.EncodeToString(der)})
	return c.graph(ctx, http.MethodPatch, "/servicePrincipals/"+spID, map[string]any{"keyCredentials": creds}, nil)
}

// readCertificate reads a PEM certificate given inline or as @file.
func readCertificate(v string) ([]byte, error) {
	data := []byte(v)
	if f, ok := strings.CutPrefix(v, "@"); ok {
		var err error
		if data, err = os.ReadFile(f); err != nil {
			return nil, fmt.Errorf("reading %s: %w", f, err)
		}
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, usagef("--cert holds no PEM CERTIFICATE block")
		}
		if b.Type == "CERTIFICATE" {
			return b.Bytes, nil
		}
	}
}

// createCertificate makes a one-year self-signed RSA-2048 certificate and
// writes it with its private key to path (mode 0600), as az does.
func createCertificate(name, path string) ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-5 * time.Minute), NotAfter: now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return der, nil
}

// newAppCmd is `keyward ad app`: the application side of a service
// principal, for its federated identity credentials (`az ad app
// federated-credential`).
func newAppCmd(e *env) *cobra.Command {
	app := &cobra.Command{Use: "app", Short: "Manage applications' federated identity credentials"}
	fc := &cobra.Command{Use: "federated-credential", Short: "Let tokens of an external OIDC issuer sign in as an application"}
	var id, params, name string
	fc.AddCommand(command(e, "create", "Trust an issuer and subject for an application",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&id, "id", "", "the application's appId or object id")
			cmd.Flags().StringVar(&params, "parameters", "", `JSON (or @file): {"name","issuer","subject","audiences":[...]}`)
			required(cmd, "id", "parameters")
		},
		func(ctx context.Context, c *client) (any, error) {
			var body map[string]any
			if err := readJSONArg(params, &body); err != nil {
				return nil, err
			}
			var out map[string]any
			err := c.graph(ctx, http.MethodPost, "/applications/"+url.PathEscape(id)+"/federatedIdentityCredentials", body, &out)
			return out, err
		}))
	fc.AddCommand(command(e, "list", "List an application's federated identity credentials",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&id, "id", "", "the application's appId or object id")
			required(cmd, "id")
		},
		func(ctx context.Context, c *client) (any, error) {
			return c.graphList(ctx, "/applications/"+url.PathEscape(id)+"/federatedIdentityCredentials")
		}))
	fc.AddCommand(command(e, "delete", "Delete a federated identity credential",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&id, "id", "", "the application's appId or object id")
			cmd.Flags().StringVar(&name, "federated-credential-id", "", "the credential's name")
			required(cmd, "id", "federated-credential-id")
		},
		func(ctx context.Context, c *client) (any, error) {
			err := c.graph(ctx, http.MethodDelete, "/applications/"+url.PathEscape(id)+"/federatedIdentityCredentials/"+url.PathEscape(name), nil, nil)
			return nil, err
		}))
	app.AddCommand(fc)
	return app
}
