package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/spf13/cobra"
)

// releasePolicyContentType is what az sends with a release policy.
const releasePolicyContentType = "application/json; charset=utf-8"

// releaseFlags are az's secure key release flags of key create, import
// and set-attributes: --exportable (not on set-attributes), --policy and
// --immutable.
type releaseFlags struct {
	exportable, policy, immutable string
	withExportable                bool
}

func (r *releaseFlags) register(cmd *cobra.Command, withExportable bool) {
	f := cmd.Flags()
	r.withExportable = withExportable
	if withExportable {
		f.StringVar(&r.exportable, "exportable", "", "true: the key may be released, under --policy, to an attested workload")
		f.Lookup("exportable").NoOptDefVal = "true" // az's three-state flag
	}
	f.StringVar(&r.policy, "policy", "", "the release policy, as JSON, @file or a file's path (Azure's grammar: anyOf authorities with claim conditions)")
	f.StringVar(&r.immutable, "immutable", "", "true: the release policy can never change (sent with --policy)")
	f.Lookup("immutable").NoOptDefVal = "true"
}

// apply sets a's exportable attribute from the flags and returns the
// release policy they give, nil if none.
func (r *releaseFlags) apply(a *azkeys.KeyAttributes) (*azkeys.KeyReleasePolicy, error) {
	if r.withExportable {
		exportable, err := parseThreeState("exportable", r.exportable)
		if err != nil {
			return nil, err
		}
		a.Exportable = exportable
	}
	immutable, err := parseThreeState("immutable", r.immutable)
	if err != nil {
		return nil, err
	}
	if r.policy == "" {
		if immutable != nil {
			return nil, usagef("--immutable is sent with the policy it fixes: give --policy too")
		}
		return nil, nil
	}
	var policy json.RawMessage
	if err := readJSONArg(r.policy, &policy); err != nil {
		return nil, usagef("--policy: %v", err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, policy); err != nil {
		return nil, usagef("--policy: %v", err)
	}
	return &azkeys.KeyReleasePolicy{EncodedPolicy: compact.Bytes(), ContentType: to.Ptr(releasePolicyContentType), Immutable: immutable}, nil
}

// parseThreeState reads an az three-state flag: unset, true or false.
func parseThreeState(name, v string) (*bool, error) {
	switch strings.ToLower(v) {
	case "":
		return nil, nil
	case "true":
		return to.Ptr(true), nil
	case "false":
		return to.Ptr(false), nil
	}
	return nil, usagef("--%s %q: use true or false", name, v)
}

// releasePolicyOut renders a key's release policy as az prints it: the
// policy's JSON, base64-encoded, as encodedPolicy.
func releasePolicyOut(p *azkeys.KeyReleasePolicy) any {
	if p == nil {
		return nil
	}
	return map[string]any{"contentType": str(p.ContentType), "encodedPolicy": base64.StdEncoding.EncodeToString(p.EncodedPolicy),
		"immutable": p.Immutable}
}

// keyRelease is `keyward keyvault key release`, as az's: the target
// workload's attestation token goes to the HSM, which answers with the
// key wrapped for the workload, in a JWS it signs ({"value": "<JWS>"}).
func keyRelease(e *env) *cobra.Command {
	var t keyTarget
	var target, algorithm, nonce string
	return command(e, "release", "Release an exportable key to an attested workload, under the key's release policy",
		func(cmd *cobra.Command) {
			t.register(cmd, true)
			f := cmd.Flags()
			f.StringVar(&target, "target", "", "the workload's attestation token (a JWT), or @file")
			f.StringVarP(&algorithm, "algorithm", "a", "", "how the key is wrapped: CKM_RSA_AES_KEY_WRAP (default), RSA_AES_KEY_WRAP_256, RSA_AES_KEY_WRAP_384")
			f.StringVar(&nonce, "nonce", "", "a nonce the HSM echoes in the signed answer (signed with the HSM's TLS key, not the released key), for the workload to check")
			required(cmd, "target")
		},
		func(ctx context.Context, c *client) (any, error) {
			if f, ok := strings.CutPrefix(target, "@"); ok {
				data, err := os.ReadFile(f)
				if err != nil {
					return nil, err
				}
				target = string(data)
			}
			p := azkeys.ReleaseParameters{TargetAttestationToken: to.Ptr(strings.TrimSpace(target))}
			switch algorithm {
			case "":
			case "CKM_RSA_AES_KEY_WRAP", "RSA_AES_KEY_WRAP_256", "RSA_AES_KEY_WRAP_384":
				p.Algorithm = to.Ptr(azkeys.KeyEncryptionAlgorithm(algorithm))
			default:
				return nil, usagef("--algorithm %q: CKM_RSA_AES_KEY_WRAP, RSA_AES_KEY_WRAP_256 or RSA_AES_KEY_WRAP_384", algorithm)
			}
			if nonce != "" {
				p.Nonce = to.Ptr(nonce)
			}
			kc, name, version, err := t.open(c, true)
			if err != nil {
				return nil, err
			}
			resp, err := kc.Release(ctx, name, version, p, nil)
			if err != nil {
				return nil, explain(err)
			}
			return map[string]any{"value": str(resp.Value)}, nil
		})
}
