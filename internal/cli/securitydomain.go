package cli

import (
	"context"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"time"

	"crypto/rand"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/securitydomain"
)

func newSecurityDomainCmd(e *env) *cobra.Command {
	sd := &cobra.Command{Use: "security-domain", Short: "Download, recover and upload a Managed HSM's security domain"}
	sd.AddCommand(sdDownload(e), sdInitRecovery(e), sdUpload(e), sdWait(e), sdListRequests(e), sdApprove(e))
	return sd
}

// sdListRequests lists the download requests that wait for, or had, a
// second administrator's approval (Keyward's two-person rule).
func sdListRequests(e *env) *cobra.Command {
	var h hsmFlags
	// Its table keeps the id, which an approver needs (knack's automatic
	// table would drop it).
	return tableColumns(command(e, "list-requests", "List security-domain download requests of an active HSM and their approvals",
		func(cmd *cobra.Command) { h.register(cmd) },
		func(ctx context.Context, c *client) (any, error) {
			hsm, err := h.url(c)
			if err != nil {
				return nil, err
			}
			var out struct{ Value []map[string]any }
			err = c.hsm(ctx, hsm, http.MethodGet, "/securitydomain/download/requests", nil, &out)
			return out.Value, err
		}), "id:Id", "status:Status", "operation:Operation", "requester:Requester", "quorum:Quorum", "created:Created", "approver:Approver")
}

// sdApprove approves another principal's download request; the requester
// then repeats the same download.
func sdApprove(e *env) *cobra.Command {
	var h hsmFlags
	var id string
	return command(e, "approve", "Approve another administrator's security-domain download request",
		func(cmd *cobra.Command) {
			h.register(cmd)
			cmd.Flags().StringVar(&id, "request-id", "", "the request id (see list-requests)")
			required(cmd, "request-id")
		},
		func(ctx context.Context, c *client) (any, error) {
			hsm, err := h.url(c)
			if err != nil {
				return nil, err
			}
			var out map[string]any
			err = c.hsm(ctx, hsm, http.MethodPost, "/securitydomain/download/requests/"+url.PathEscape(id)+"/approve", nil, &out)
			return out, err
		})
}

// readCert reads a certificate file, PEM or DER, as openssl writes them.
func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if b, _ := pem.Decode(data); b != nil {
		data = b.Bytes
	}
	c, err := x509.ParseCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("%s is not a certificate: %w", path, err)
	}
	return c, nil
}

// readPrivateKey reads an unencrypted RSA private key in PEM (PKCS#1 or
// PKCS#8), as `openssl req -newkey rsa:2048 -nodes -keyout` writes it.
func readPrivateKey(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s is not a PEM private key", path)
	}
	switch b.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(b.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if rk, ok := k.(*rsa.PrivateKey); ok {
			return rk, nil
		}
		return nil, fmt.Errorf("%s is not an RSA key", path)
	case "ENCRYPTED PRIVATE KEY":
		return nil, usagef("%s is encrypted; decrypt it first: openssl pkey -in %s -out plain.key (password-protected keys are not read yet)", path, path)
	}
	return nil, fmt.Errorf("%s holds a %q, not a private key", path, b.Type)
}

// writeNewFile refuses to overwrite, as az does for security-domain files.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return usagef("%s already exists: choose another file", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// certJWK is a certificate as the security-domain API takes it.
func certJWK(c *x509.Certificate) (map[string]any, error) {
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok || pub.N.BitLen() < securitydomain.MinRSABits {
		return nil, usagef("certificate %q is not an RSA key of at least %d bits", c.Subject.CommonName, securitydomain.MinRSABits)
	}
	sha := sha1.Sum(c.Raw)
	enc := base64.RawURLEncoding.EncodeToString
	return map[string]any{"kty": "RSA", "key_ops": []string{"verify", "encrypt", "wrapKey"}, "n": enc(pub.N.Bytes()),
		"e": enc(big.NewInt(int64(pub.E)).Bytes()), "x5c": []string{base64.StdEncoding.EncodeToString(c.Raw)},
		"x5t": enc(sha[:]), "x5t#S256": securitydomain.Thumbprint(c), "alg": "RSA-OAEP-256"}, nil
}

func sdDownload(e *env) *cobra.Command {
	var h hsmFlags
	var certs []string
	var quorum int
	var file string
	var noWait bool
	cmd := command(e, "download", "Download the security domain, encrypted to the custodians' certificates; this activates a new HSM",
		func(cmd *cobra.Command) {
			h.register(cmd)
			f := cmd.Flags()
			f.StringArrayVar(&certs, "sd-wrapping-keys", nil, "3 to 10 custodian certificates (.cer, PEM or DER), space-separated")
			f.IntVar(&quorum, "sd-quorum", 0, "how many custodians are needed to recover")
			f.StringVar(&file, "security-domain-file", "", "file to write the security domain to")
			f.BoolVar(&noWait, "no-wait", false, "print nothing once the file is written (the download completes before the command returns)")
			required(cmd, "sd-wrapping-keys", "sd-quorum", "security-domain-file")
		},
		func(ctx context.Context, c *client) (any, error) {
			hsm, err := h.url(c)
			if err != nil {
				return nil, err
			}
			if _, err := os.Stat(file); err == nil {
				return nil, usagef("%s already exists: choose another file", file)
			}
			var jwks []map[string]any
			for _, p := range certs {
				cert, err := readCert(p)
				if err != nil {
					return nil, err
				}
				j, err := certJWK(cert)
				if err != nil {
					return nil, err
				}
				jwks = append(jwks, j)
			}
			var out struct{ Value string }
			if err := c.hsm(ctx, hsm, http.MethodPost, "/securitydomain/download", map[string]any{"certificates": jwks, "required": quorum}, &out); err != nil {
				return nil, err
			}
			if err := writeNewFile(file, []byte(out.Value)); err != nil || noWait {
				return nil, err
			}
			// As az (security_domain_download waits on the operation and
			// returns its status): {status, statusDetails}.
			var st struct {
				Status        string `json:"status"`
				StatusDetails string `json:"status_details"`
			}
			if err := c.hsm(ctx, hsm, http.MethodGet, "/securitydomain/download/pending", nil, &st); err != nil {
				return nil, err
			}
			return map[string]string{"status": st.Status, "statusDetails": st.StatusDetails}, nil
		})
	return spaceSeparated(cmd, "sd-wrapping-keys")
}

// spaceSeparated marks cmd's flags that take az's space-separated lists
// ("--ops sign verify", "--sd-wrapping-keys a.cer b.cer"): run spreads the
// words after such a flag into repeats of it, so any number of them work
// together (see azArgs).
func spaceSeparated(cmd *cobra.Command, flags ...string) *cobra.Command {
	for _, f := range flags {
		if err := cmd.Flags().SetAnnotation(f, listAnnotation, []string{"true"}); err != nil {
			panic(fmt.Sprintf("spaceSeparated: %s has no flag --%s", cmd.Name(), f))
		}
	}
	return cmd
}

// transferKeyCert reads the transfer key answer, which Azure's swagger
// gives as an object and Azure's CLI expects as a JSON string.
func transferKeyCert(raw json.RawMessage) (*x509.Certificate, error) {
	var key struct {
		X5c []string `json:"x5c"`
	}
	var text string
	if json.Unmarshal(raw, &text) == nil {
		raw = json.RawMessage(text)
	}
	if err := json.Unmarshal(raw, &key); err != nil || len(key.X5c) == 0 {
		return nil, errors.New("the transfer key has no certificate")
	}
	der, err := base64.StdEncoding.DecodeString(key.X5c[0])
	if err != nil {
		return nil, errors.New("the transfer key's certificate is not base64")
	}
	return x509.ParseCertificate(der)
}

func sdInitRecovery(e *env) *cobra.Command {
	var h hsmFlags
	var file string
	return command(e, "init-recovery", "Get a new HSM's exchange key, to recover an existing security domain into it",
		func(cmd *cobra.Command) {
			h.register(cmd)
			cmd.Flags().StringVar(&file, "sd-exchange-key", "", "file to write the exchange key's certificate to (PEM)")
			required(cmd, "sd-exchange-key")
		},
		func(ctx context.Context, c *client) (any, error) {
			hsm, err := h.url(c)
			if err != nil {
				return nil, err
			}
			var out struct {
				TransferKey json.RawMessage `json:"transfer_key"`
			}
			if err := c.hsm(ctx, hsm, http.MethodGet, "/securitydomain/upload", nil, &out); err != nil {
				return nil, err
			}
			cert, err := transferKeyCert(out.TransferKey)
			if err != nil {
				return nil, err
			}
			return nil, writeNewFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
		})
}

func sdUpload(e *env) *cobra.Command {
	var h hsmFlags
	var sdFile, exchange string
	var keys, passwords []string
	cmd := command(e, "upload", "Recover a security domain into a new HSM with a quorum of custodian keys",
		func(cmd *cobra.Command) {
			h.register(cmd)
			f := cmd.Flags()
			f.StringVar(&sdFile, "sd-file", "", "the security domain file from the download")
			f.StringVar(&exchange, "sd-exchange-key", "", "the exchange key certificate from init-recovery")
			f.StringArrayVar(&keys, "sd-wrapping-keys", nil, "custodians' private keys (PEM), at least the quorum, space-separated")
			f.StringSliceVar(&passwords, "passwords", nil, "passwords of encrypted private keys (not supported yet)")
			f.Bool("no-wait", false, "accepted for az compatibility")
			required(cmd, "sd-file", "sd-exchange-key", "sd-wrapping-keys")
		},
		func(ctx context.Context, c *client) (any, error) {
			hsm, err := h.url(c)
			if err != nil {
				return nil, err
			}
			if len(passwords) > 0 {
				return nil, usagef("--passwords is not supported yet: decrypt the keys with openssl pkey first")
			}
			data, err := os.ReadFile(sdFile)
			if err != nil {
				return nil, err
			}
			var f securitydomain.File
			if err := json.Unmarshal(data, &f); err != nil {
				return nil, usagef("%s is not a security domain file: %v", sdFile, err)
			}
			cert, err := readCert(exchange)
			if err != nil {
				return nil, err
			}
			var privs []*rsa.PrivateKey
			for _, p := range keys {
				k, err := readPrivateKey(p)
				if err != nil {
					return nil, err
				}
				privs = append(privs, k)
			}
			blob, err := securitydomain.RestoreBlobFor(rand.Reader, &f, privs, cert)
			if err != nil {
				return nil, err
			}
			text, err := json.Marshal(blob)
			if err != nil {
				return nil, err
			}
			// As az prints the SDK's SecurityDomainOperationStatus: {status, statusDetails}.
			var st struct {
				Status        string `json:"status"`
				StatusDetails string `json:"status_details"`
			}
			if err := c.hsm(ctx, hsm, http.MethodPost, "/securitydomain/upload", map[string]string{"value": string(text)}, &st); err != nil {
				return nil, err
			}
			return map[string]string{"status": st.Status, "statusDetails": st.StatusDetails}, nil
		})
	return spaceSeparated(cmd, "sd-wrapping-keys")
}

func sdWait(e *env) *cobra.Command {
	var h hsmFlags
	var target string
	var timeout time.Duration
	return command(e, "wait", "Wait until a security-domain download or upload has completed",
		func(cmd *cobra.Command) {
			h.register(cmd)
			cmd.Flags().StringVar(&target, "target-operation", "upload", "download or upload")
			cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait")
		},
		func(ctx context.Context, c *client) (any, error) {
			hsm, err := h.url(c)
			if err != nil {
				return nil, err
			}
			if target != "download" && target != "upload" {
				return nil, usagef("--target-operation must be download or upload")
			}
			deadline := time.Now().Add(timeout)
			for {
				var st struct {
					Status        string `json:"status"`
					StatusDetails string `json:"status_details"`
				}
				if err := c.hsm(ctx, hsm, http.MethodGet, "/securitydomain/"+target+"/pending", nil, &st); err != nil {
					return nil, err
				}
				switch st.Status {
				case "Success", "Succeeded":
					return map[string]string{"status": st.Status, "statusDetails": st.StatusDetails}, nil
				case "Failed":
					return nil, fmt.Errorf("the %s failed: %s", target, st.StatusDetails)
				}
				if time.Now().After(deadline) {
					return nil, fmt.Errorf("still %s after %v: %s", st.Status, timeout, st.StatusDetails)
				}
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(time.Second):
				}
			}
		})
}
