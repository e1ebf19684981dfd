package cli

import (
	"context"
	"encoding/base64"

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
