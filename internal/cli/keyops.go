package cli

import (
	"context"
	"encoding/base64"
	"encoding/hex"

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
			cmd.Flags().StringVarP(&alg, "algorithm", "a", "", "signature algorithm, e.g. RS256, PS256, ES256")
			cmd.Flags().StringVar(&digest, "digest", "", "the digest to sign, base64")
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
			cmd.Flags().StringVarP(&alg, "algorithm", "a", "", "signature algorithm")
			cmd.Flags().StringVar(&digest, "digest", "", "the signed digest, base64")
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
