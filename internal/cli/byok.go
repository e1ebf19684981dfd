package cli

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/kcrypto"
)

// newBYOKCmd is `keyward byok`: what an HSM vendor's BYOK tool does, so
// that the key-exchange-key flow can be tried without a vendor HSM. It
// wraps a private key (PEM) or an AES key (hex) for a KEK's public key
// under CKM_RSA_AES_KEY_WRAP and writes the .byok file that
// `keyvault key import --byok-file` sends. It runs on the machine that
// holds the key, and talks to no server.
func newBYOKCmd(e *env) *cobra.Command {
	var keyFile, octHex, kekFile, kekKid, outFile string
	cmd := offline(e, "byok", "Make a BYOK key transfer file (.byok) for a key-exchange key, as a vendor's BYOK tool does",
		func(cmd *cobra.Command) {
			f := cmd.Flags()
			f.StringVar(&keyFile, "key", "", "PEM file of the private key to transfer (RSA or EC)")
			f.StringVar(&octHex, "oct-hex", "", "or an AES key to transfer, in hex (16, 24 or 32 bytes)")
			f.StringVar(&kekFile, "kek-file", "", "the KEK's public key, PEM (keyvault key download --encoding PEM)")
			f.StringVar(&kekKid, "kek-kid", "", "the KEK's key id (keyvault key show --query key.kid)")
			f.StringVar(&outFile, "file", "", "the .byok file to write (it must not exist)")
			cmd.MarkFlagsOneRequired("key", "oct-hex")
			cmd.MarkFlagsMutuallyExclusive("key", "oct-hex")
			required(cmd, "kek-file", "kek-kid", "file")
		},
		func(ctx context.Context) (any, error) {
			kek, err := readKEK(kekFile)
			if err != nil {
				return nil, err
			}
			target, kty, err := transferTarget(keyFile, octHex)
			if err != nil {
				return nil, err
			}
			defer clear(target)
			aesKey := make([]byte, 32)
			if _, err := rand.Read(aesKey); err != nil {
				return nil, err
			}
			defer clear(aesKey)
			ct, err := kcrypto.SealTransferBlob(rand.Reader, kek, aesKey, target)
			if err != nil {
				return nil, err
			}
			blob := map[string]any{"schema_version": "1.0.0",
				"header":     map[string]string{"kid": kekKid, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"},
				"ciphertext": base64.RawURLEncoding.EncodeToString(ct), "generator": "keyward byok"}
			b, err := json.Marshal(blob)
			if err != nil {
				return nil, err
			}
			if err := writeNewFile(outFile, b); err != nil {
				return nil, err
			}
			return map[string]string{"file": outFile, "kty": kty, "kek": kekKid}, nil
		})
	return cmd
}

// readKEK reads an RSA public key from a PEM file.
func readKEK(file string) (*rsa.PublicKey, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, usagef("--kek-file: no PEM block")
	}
	var pub any
	switch block.Type {
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	}
	if err != nil {
		return nil, usagef("--kek-file: %v", err)
	}
	rk, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, usagef("--kek-file: a key-exchange key is an RSA key")
	}
	return rk, nil
}

// transferTarget is the key to transfer as the specification encodes it:
// PKCS#8 DER for RSA and EC keys, the raw bytes of an AES key.
func transferTarget(keyFile, octHex string) ([]byte, string, error) {
	if octHex != "" {
		k, err := hex.DecodeString(strings.TrimSpace(octHex))
		if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
			return nil, "", usagef("--oct-hex: an AES key of 16, 24 or 32 bytes, in hex")
		}
		return k, "oct", nil
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, "", err
	}
	jwk, err := privateJWK(data)
	if err != nil {
		return nil, "", err
	}
	key, err := parsePrivatePEM(data)
	if err != nil {
		return nil, "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", usagef("--key: %v", err)
	}
	return der, strings.TrimSuffix(string(*jwk.Kty), "-HSM"), nil
}
