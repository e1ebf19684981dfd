package cli

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/spf13/cobra"
)

// keySign is `keyward keyvault key sign`, as `az keyvault key sign`: the
// HSM signs a digest the caller computed; the key never leaves.
func keySign(e *env) *cobra.Command {
	var t keyTarget
	var alg, digest string
	return command(e, "sign", "Sign a digest with a key",
		func(cmd *cobra.Command) {
			t.register(cmd, true)
			cmd.Flags().StringVarP(&alg, "algorithm", "a", "", "signature algorithm: RS256/384/512, PS256/384/512, ES256/384/512, ES256K; ML-DSA-44/65/87 for ML-DSA keys")
			cmd.Flags().StringVar(&digest, "digest", "", "the digest to sign, base64 (for ML-DSA, the message itself, at most 64 KiB: ML-DSA signs the bytes, not a digest)")
			required(cmd, "algorithm", "digest")
		},
		func(ctx context.Context, c *client) (any, error) {
			d, err := base64.StdEncoding.DecodeString(digest)
			if err != nil {
				return nil, usagef("--digest must be base64")
			}
			kc, name, version, err := t.open(c, true)
			if err != nil {
				return nil, err
			}
			a := azkeys.SignatureAlgorithm(alg)
			resp, err := kc.Sign(ctx, name, version, azkeys.SignParameters{Algorithm: &a, Value: d}, nil)
			if err != nil {
				return nil, explain(err)
			}
			// As az prints the SDK's SignResult: algorithm, keyId, signature.
			return map[string]any{"algorithm": alg, "keyId": resp.KID, "signature": base64.StdEncoding.EncodeToString(resp.Result)}, nil
		})
}

// keyVerify is `keyward keyvault key verify`.
func keyVerify(e *env) *cobra.Command {
	var t keyTarget
	var alg, digest, signature string
	return command(e, "verify", "Verify a signature with a key",
		func(cmd *cobra.Command) {
			t.register(cmd, true)
			cmd.Flags().StringVarP(&alg, "algorithm", "a", "", "signature algorithm, as it was signed with (see key sign)")
			cmd.Flags().StringVar(&digest, "digest", "", "the signed digest, base64 (for ML-DSA, the signed message)")
			cmd.Flags().StringVar(&signature, "signature", "", "the signature, base64")
			required(cmd, "algorithm", "digest", "signature")
		},
		func(ctx context.Context, c *client) (any, error) {
			d, err1 := base64.StdEncoding.DecodeString(digest)
			s, err2 := base64.StdEncoding.DecodeString(signature)
			if err1 != nil || err2 != nil {
				return nil, usagef("--digest and --signature must be base64")
			}
			kc, name, version, err := t.open(c, true)
			if err != nil {
				return nil, err
			}
			a := azkeys.SignatureAlgorithm(alg)
			resp, err := kc.Verify(ctx, name, version, azkeys.VerifyParameters{Algorithm: &a, Digest: d, Signature: s}, nil)
			if err != nil {
				return nil, explain(err)
			}
			// As az prints the SDK's VerifyResult: algorithm, isValid, keyId.
			kid := t.id
			if kid == "" {
				kid = c.hsmURL(t.hsm) + "/keys/" + name
				if version != "" {
					kid += "/" + version
				}
			}
			return map[string]any{"algorithm": alg, "isValid": resp.Value != nil && *resp.Value, "keyId": kid}, nil
		})
}

// keyCrypt is `keyward keyvault key encrypt|decrypt`, as az's: the value
// is base64 (or, with --data-type plaintext, text), iv, aad and tag hex;
// the output is az's transform_key_encryption_output and
// transform_key_decryption_output.
func keyCrypt(e *env, verb string) *cobra.Command {
	var t keyTarget
	var alg, value, dataType, iv, aad, tag string
	short := map[string]string{"encrypt": "Encrypt a value with a key", "decrypt": "Decrypt a value with a key"}[verb]
	return command(e, verb, short,
		func(cmd *cobra.Command) {
			t.register(cmd, true)
			f := cmd.Flags()
			f.StringVarP(&alg, "algorithm", "a", "", "encryption algorithm, e.g. RSA-OAEP-256, A256GCM")
			f.StringVar(&value, "value", "", map[string]string{"encrypt": "the value to encrypt", "decrypt": "the ciphertext, base64"}[verb])
			f.StringVar(&dataType, "data-type", "base64", "base64 or plaintext: how the original data is given (encrypt) or printed (decrypt)")
			f.StringVar(&iv, "iv", "", "initialization vector, hex (AES)")
			f.StringVar(&aad, "aad", "", "additional authenticated data, hex (AES-GCM)")
			if verb == "decrypt" {
				f.StringVar(&tag, "tag", "", "authentication tag, hex (AES-GCM)")
			}
			required(cmd, "algorithm", "value")
		},
		func(ctx context.Context, c *client) (any, error) {
			if dataType != "base64" && dataType != "plaintext" {
				return nil, usagef("--data-type %q: use base64 or plaintext", dataType)
			}
			var data []byte
			var err error
			switch {
			case verb == "encrypt" && dataType == "plaintext":
				data = []byte(value)
			default:
				if data, err = base64.StdEncoding.DecodeString(value); err != nil {
					return nil, usagef("--value must be base64")
				}
			}
			hexes := map[string][]byte{}
			for flag, v := range map[string]string{"--iv": iv, "--aad": aad, "--tag": tag} {
				if v == "" {
					continue
				}
				if hexes[flag], err = hex.DecodeString(v); err != nil {
					return nil, usagef("%s must be hex", flag)
				}
			}
			kc, name, version, err := t.open(c, true)
			if err != nil {
				return nil, err
			}
			a := azkeys.EncryptionAlgorithm(alg)
			p := azkeys.KeyOperationParameters{Algorithm: &a, Value: data, IV: hexes["--iv"], AdditionalAuthenticatedData: hexes["--aad"], AuthenticationTag: hexes["--tag"]}
			var r azkeys.KeyOperationResult
			if verb == "encrypt" {
				resp, err := kc.Encrypt(ctx, name, version, p, nil)
				if err != nil {
					return nil, explain(err)
				}
				r = resp.KeyOperationResult
				hexOrNil := func(b []byte) any {
					if len(b) == 0 {
						return nil
					}
					return hex.EncodeToString(b)
				}
				return map[string]any{"kid": r.KID, "result": base64.StdEncoding.EncodeToString(r.Result), "algorithm": alg,
					"iv": hexOrNil(r.IV), "tag": hexOrNil(r.AuthenticationTag), "aad": hexOrNil(r.AdditionalAuthenticatedData)}, nil
			}
			resp, err := kc.Decrypt(ctx, name, version, p, nil)
			if err != nil {
				return nil, explain(err)
			}
			r = resp.KeyOperationResult
			var out any = string(r.Result)
			if dataType == "base64" {
				out = base64.StdEncoding.EncodeToString(r.Result)
			}
			return map[string]any{"kid": r.KID, "result": out, "algorithm": alg}, nil
		})
}

// keyDownload is `keyward keyvault key download`, as az's: the public key,
// PEM (default) or DER, into a new file.
func keyDownload(e *env) *cobra.Command {
	var t keyTarget
	var file, encoding string
	return command(e, "download", "Download a key's public key to a file (PEM or DER)",
		func(cmd *cobra.Command) {
			t.register(cmd, true)
			cmd.Flags().StringVarP(&file, "file", "f", "", "the file to write (it must not exist)")
			cmd.Flags().StringVarP(&encoding, "encoding", "e", "PEM", "PEM or DER")
			required(cmd, "file")
		},
		func(ctx context.Context, c *client) (any, error) {
			encoding = strings.ToUpper(encoding)
			if encoding != "PEM" && encoding != "DER" {
				return nil, usagef("--encoding %q: use PEM or DER", encoding)
			}
			kc, name, version, err := t.open(c, true)
			if err != nil {
				return nil, err
			}
			var raw keyResponse
			resp, err := kc.GetKey(raw.capture(ctx), name, version, nil)
			if err != nil {
				return nil, explain(err)
			}
			der, err := publicKeyDER(resp.Key, raw.pub())
			if err != nil {
				return nil, err
			}
			if encoding == "PEM" {
				der = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			}
			return nil, writeNewFile(file, der)
		})
}

// publicKeyDER is a key's public key as a DER SubjectPublicKeyInfo: RSA
// and EC keys from their JWK, post-quantum keys from their pub.
func publicKeyDER(k *azkeys.JSONWebKey, pqPub []byte) ([]byte, error) {
	if k != nil && k.Kty != nil && k.Crv != nil && pqPub != nil {
		if oid, ok := pqKeyOIDs[string(*k.Crv)]; ok {
			return pqPublicKeyInfo(oid, pqPub)
		}
	}
	pub, err := publicKeyOf(k)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding the public key: %w", err)
	}
	return der, nil
}

// pqKeyOIDs are NIST's algorithm identifiers for ML-DSA (RFC 9881) and
// ML-KEM (RFC 9935) public keys, whose parameters are absent.
var pqKeyOIDs = map[string]asn1.ObjectIdentifier{
	"ML-DSA-44":   {2, 16, 840, 1, 101, 3, 4, 3, 17},
	"ML-DSA-65":   {2, 16, 840, 1, 101, 3, 4, 3, 18},
	"ML-DSA-87":   {2, 16, 840, 1, 101, 3, 4, 3, 19},
	"ML-KEM-768":  {2, 16, 840, 1, 101, 3, 4, 4, 2},
	"ML-KEM-1024": {2, 16, 840, 1, 101, 3, 4, 4, 3},
}

// pqPublicKeyInfo is a post-quantum public key as a SubjectPublicKeyInfo:
// the algorithm's identifier and the key's FIPS 203/204 encoding.
func pqPublicKeyInfo(oid asn1.ObjectIdentifier, pub []byte) ([]byte, error) {
	der, err := asn1.Marshal(struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}{pkix.AlgorithmIdentifier{Algorithm: oid}, asn1.BitString{Bytes: pub, BitLength: 8 * len(pub)}})
	if err != nil {
		return nil, fmt.Errorf("encoding the public key: %w", err)
	}
	return der, nil
}

// publicKeyOf is a JSON web key's public key (RSA or EC).
func publicKeyOf(k *azkeys.JSONWebKey) (any, error) {
	if k == nil || k.Kty == nil {
		return nil, errors.New("the key has no public part")
	}
	switch *k.Kty {
	case azkeys.KeyTypeRSA, azkeys.KeyTypeRSAHSM:
		return &rsa.PublicKey{N: new(big.Int).SetBytes(k.N), E: int(new(big.Int).SetBytes(k.E).Int64())}, nil
	case azkeys.KeyTypeEC, azkeys.KeyTypeECHSM:
		var curve ecdh.Curve
		if k.Crv == nil {
			return nil, errors.New("the EC key names no curve")
		}
		switch *k.Crv {
		case azkeys.CurveNameP256:
			curve = ecdh.P256()
		case azkeys.CurveNameP384:
			curve = ecdh.P384()
		case azkeys.CurveNameP521:
			curve = ecdh.P521()
		default:
			return nil, fmt.Errorf("a %s public key cannot be written as PKIX here", *k.Crv)
		}
		size := (map[azkeys.CurveName]int{azkeys.CurveNameP256: 32, azkeys.CurveNameP384: 48, azkeys.CurveNameP521: 66})[*k.Crv]
		point := make([]byte, 1+2*size)
		point[0] = 4
		copy(point[1:1+size], leftPad(k.X, size))
		copy(point[1+size:], leftPad(k.Y, size))
		pub, err := curve.NewPublicKey(point)
		if err != nil {
			return nil, fmt.Errorf("the EC public key: %w", err)
		}
		return pub, nil
	}
	return nil, fmt.Errorf("a %s key has no public key to download", *k.Kty)
}

func leftPad(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	return append(make([]byte, n-len(b)), b...)
}

// keyImport is `keyward keyvault key import`, as az's with --pem-file or
// --pem-string: a private key (RSA or EC, PKCS#8, PKCS#1 or SEC 1) sent
// as a JSON web key, HSM-protected. An encrypted PEM is refused: Go reads
// no encrypted PKCS#8, and the legacy PEM encryption is unsafe.
func keyImport(e *env) *cobra.Command {
	var t keyTarget
	var pemFile, pemString, pemPassword, protection, expires, notBefore string
	var byokFile, byokString, kty, curve string
	var ops, tags []string
	var disabled bool
	var release releaseFlags
	cmd := command(e, "import", "Import a private key (PEM), or a key sent under a key-exchange key (BYOK), into the HSM",
		func(cmd *cobra.Command) {
			t.register(cmd, false)
			f := cmd.Flags()
			f.StringVar(&pemFile, "pem-file", "", "PEM file of the private key")
			f.StringVar(&pemString, "pem-string", "", "the private key's PEM, as text")
			f.StringVar(&pemPassword, "pem-password", "", "not supported: decrypt the PEM first")
			f.StringVar(&protection, "protection", "hsm", "hsm (a Managed HSM keeps every key in its HSM)")
			f.StringArrayVar(&ops, "ops", nil, "permitted operations: encrypt decrypt sign verify wrapKey unwrapKey")
			f.StringArrayVar(&tags, "tags", nil, "space-separated tags: key[=value]")
			f.BoolVar(&disabled, "disabled", false, "import the key disabled")
			f.StringVar(&expires, "expires", "", "expiry, UTC")
			f.StringVar(&notBefore, "not-before", "", "activation time, UTC")
			f.StringVar(&byokFile, "byok-file", "", "a BYOK key transfer file (.byok), made for one of the HSM's key-exchange keys")
			f.StringVar(&byokString, "byok-string", "", "a BYOK key transfer blob, as text")
			f.StringVar(&kty, "kty", "RSA", "with --byok-file: the transferred key's type: RSA, EC or oct (RSA-HSM, EC-HSM, oct-HSM accepted); an EC key needs --kty EC")
			f.StringVar(&curve, "curve", "", "with --byok-file and --kty EC: the key's curve, P-256, P-384 or P-521 (optional: the file's key says it; given, it must match)")
			release.register(cmd, true)
			cmd.MarkFlagsOneRequired("pem-file", "pem-string", "byok-file", "byok-string")
			cmd.MarkFlagsMutuallyExclusive("pem-file", "pem-string", "byok-file", "byok-string")
		},
		func(ctx context.Context, c *client) (any, error) {
			if pemPassword != "" {
				return nil, usagef("--pem-password: encrypted PEM files are not read; decrypt it first (openssl pkey -in F -out G)")
			}
			if protection != "hsm" {
				return nil, usagef("--protection %q: a Managed HSM keeps every key in its HSM (use hsm)", protection)
			}
			var jwk *azkeys.JSONWebKey
			if byokFile != "" || byokString != "" {
				// As az: the file's bytes travel as the JWK's key_hsm,
				// with kty + "-HSM" (keyvault/custom.py, import_key).
				blob := []byte(byokString)
				if byokFile != "" {
					var err error
					if blob, err = os.ReadFile(byokFile); err != nil {
						return nil, err
					}
				}
				base := strings.TrimSuffix(kty, "-HSM")
				switch base {
				case "RSA", "EC", "oct":
				default:
					return nil, usagef("--kty %q: the transferred key's type must be RSA, EC or oct (RSA-HSM, EC-HSM, oct-HSM also accepted)", kty)
				}
				jwk = &azkeys.JSONWebKey{Kty: to.Ptr(azkeys.KeyType(base + "-HSM")), T: blob}
				if curve != "" {
					jwk.Crv = to.Ptr(azkeys.CurveName(curve))
				}
			} else {
				data := []byte(pemString)
				if pemFile != "" {
					var err error
					if data, err = os.ReadFile(pemFile); err != nil {
						return nil, err
					}
				}
				var err error
				if jwk, err = privateJWK(data); err != nil {
					return nil, err
				}
			}
			for _, op := range ops {
				jwk.KeyOps = append(jwk.KeyOps, to.Ptr(azkeys.KeyOperation(op)))
			}
			a, err := attributes(disabled, expires, notBefore)
			if err != nil {
				return nil, err
			}
			policy, err := release.apply(a)
			if err != nil {
				return nil, err
			}
			kc, name, _, err := t.open(c, true)
			if err != nil {
				return nil, err
			}
			var raw keyResponse
			resp, err := kc.ImportKey(raw.capture(ctx), name, azkeys.ImportKeyParameters{Key: jwk, HSM: to.Ptr(true), KeyAttributes: a, Tags: parseTags(tags),
				ReleasePolicy: policy}, nil)
			if err != nil {
				return nil, explain(err)
			}
			return keyOut(resp.KeyBundle, raw.pub()), nil
		})
	return spaceSeparated(cmd, "ops", "tags") // az takes space-separated lists
}

// parsePrivatePEM reads an unencrypted PEM private key (PKCS#8, PKCS#1
// or SEC 1).
func parsePrivatePEM(data []byte) (any, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, usagef("no PEM block: give a PEM private key")
	}
	if strings.Contains(block.Type, "ENCRYPTED") || block.Headers["Proc-Type"] != "" {
		return nil, usagef("the PEM is encrypted: decrypt it first (openssl pkey -in F -out G)")
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil && strings.Contains(err.Error(), "unknown elliptic curve") {
		return nil, usagef("the key is on a curve this command cannot read (a secp256k1 key cannot come from a PEM file or be transferred yet; the SDK imports one as a P-256K JWK): give an RSA key, or an EC key on P-256, P-384 or P-521")
	}
	if err != nil {
		return nil, usagef("reading the private key: %v", err)
	}
	return key, nil
}

// privateJWK reads a PEM private key into an HSM JSON web key.
func privateJWK(data []byte) (*azkeys.JSONWebKey, error) {
	key, err := parsePrivatePEM(data)
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		k.Precompute()
		return &azkeys.JSONWebKey{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), N: k.N.Bytes(), E: big.NewInt(int64(k.E)).Bytes(), D: k.D.Bytes(),
			P: k.Primes[0].Bytes(), Q: k.Primes[1].Bytes(), DP: k.Precomputed.Dp.Bytes(), DQ: k.Precomputed.Dq.Bytes(),
			QI: k.Precomputed.Qinv.Bytes()}, nil
	case *ecdsa.PrivateKey:
		crv := map[string]azkeys.CurveName{"P-256": azkeys.CurveNameP256, "P-384": azkeys.CurveNameP384, "P-521": azkeys.CurveNameP521}[k.Curve.Params().Name]
		if crv == "" {
			return nil, usagef("the EC curve %s is not one a Managed HSM imports", k.Curve.Params().Name)
		}
		raw, err := k.Bytes()
		if err != nil {
			return nil, err
		}
		pub, err := k.PublicKey.ECDH()
		if err != nil {
			return nil, err
		}
		point := pub.Bytes()[1:]
		return &azkeys.JSONWebKey{Kty: to.Ptr(azkeys.KeyTypeECHSM), Crv: to.Ptr(crv), X: point[:len(point)/2], Y: point[len(point)/2:], D: raw}, nil
	}
	return nil, usagef("%s is not a key a Managed HSM holds: give an RSA private key, or an EC one on P-256, P-384 or P-521", keyKindOf(key))
}

// keyKindOf names a parsed private key's kind for a message.
func keyKindOf(key any) string {
	switch key.(type) {
	case ed25519.PrivateKey:
		return "an Ed25519 key"
	case *ecdh.PrivateKey:
		return "an X25519 key"
	}
	return "this kind of key"
}
