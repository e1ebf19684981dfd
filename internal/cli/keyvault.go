package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newKeyvaultCmd(e *env) *cobra.Command {
	kv := &cobra.Command{Use: "keyvault", Short: "Manage Managed HSMs and their keys"}
	key := &cobra.Command{Use: "key", Short: "Manage keys in a Managed HSM"}
	key.AddCommand(keyCreate(e), keyShow(e), keySetAttributes(e), keyRandom(e), keyCrypt(e, "encrypt"), keyCrypt(e, "decrypt"), keyDownload(e), keyImport(e),
		// az has no table format for these: knack's rule (sorted scalar fields) applies.
		keyList(e, "list"), keyList(e, "list-versions"), keyList(e, "list-deleted"), keyShowDeleted(e),
		keyByName(e, "delete", "Delete a key (it can be recovered until it is purged)"),
		keyByName(e, "recover", "Recover a deleted key"),
		keyByName(e, "purge", "Purge a deleted key for good"),
		keyByName(e, "rotate", "Rotate a key: create a new version"),
		keyBackup(e), keyRestore(e), keySign(e), keyVerify(e), keyRelease(e), newRotationPolicyCmd(e), tableColumns(keyListExpiring(e), "name", "kid"))
	kv.AddCommand(key, newRoleCmd(e), newSecurityDomainCmd(e), newSettingCmd(e), newBackupCmd(e), newRestoreCmd(e), hsmCreate(e), hsmShow(e, "show"), hsmShow(e, "delete"), hsmPurge(e), hsmShowDeleted(e), hsmListDeleted(e), hsmRecover(e),
		hsmList(e))
	return kv
}

// keyTarget is how a command names a key: --hsm-name and --name, or --id.
type keyTarget struct {
	hsm, name, version, id string
}

func (t *keyTarget) register(cmd *cobra.Command, withVersion bool) {
	f := cmd.Flags()
	f.StringVar(&t.hsm, "hsm-name", "", "name of the Managed HSM")
	f.StringVarP(&t.name, "name", "n", "", "name of the key")
	f.StringVar(&t.id, "id", "", "key id, https://{hsm}/keys/{name}[/{version}] (or a deleted key's, .../deletedkeys/{name})")
	if withVersion {
		f.StringVarP(&t.version, "version", "v", "", "key version (default: the latest)")
	}
}

// resolve returns the vault URL, key name and version the flags name.
func (t *keyTarget) resolve(c *client, needName bool) (string, string, string, error) {
	if t.id != "" {
		u, err := url.Parse(t.id)
		parts := strings.Split(strings.Trim(u.EscapedPath(), "/"), "/")
		if err != nil || u.Scheme != "https" || u.Host == "" || len(parts) < 2 || len(parts) > 3 ||
			(parts[0] != "keys" && parts[0] != "deletedkeys") || parts[1] == "" {
			return "", "", "", usagef("--id %q is not a key id (https://{hsm}/keys/{name}[/{version}])", t.id)
		}
		version := ""
		if len(parts) == 3 {
			version = parts[2]
		}
		return "https://" + u.Host, parts[1], version, nil
	}
	if t.hsm == "" {
		return "", "", "", usagef("--hsm-name is required (or --id)")
	}
	if needName && t.name == "" {
		return "", "", "", usagef("--name is required")
	}
	return c.hsmURL(t.hsm), t.name, t.version, nil
}

// open returns an azkeys client for the HSM the flags name, and the key.
func (t *keyTarget) open(c *client, needName bool) (*azkeys.Client, string, string, error) {
	vault, name, version, err := t.resolve(c, needName)
	if err != nil {
		return nil, "", "", err
	}
	kc, err := c.keys(vault)
	return kc, name, version, err
}

func (c *client) keys(vault string) (*azkeys.Client, error) {
	return azkeys.NewClient(vault, c.cred, &azkeys.ClientOptions{
		ClientOptions: azcore.ClientOptions{Transport: c.http},
		// The challenge names https://managedhsm.azure.net, as Azure's does,
		// which a local host name cannot end with.
		DisableChallengeResourceVerification: true,
	})
}

func keyCreate(e *env) *cobra.Command {
	var t keyTarget
	var kty, curve, expires, notBefore string
	var size int
	var ops, tags []string
	var disabled bool
	var release releaseFlags
	var ktyFlag *pflag.Flag
	cmd := command(e, "create", "Create a key, or a new version of it",
		func(cmd *cobra.Command) {
			t.register(cmd, false)
			f := cmd.Flags()
			f.StringVar(&kty, "kty", "RSA-HSM", "key type: RSA-HSM, EC-HSM, oct-HSM (RSA, EC, oct accepted); EC-HSM with --curve; Keyward's ML-DSA and ML-KEM with --curve as the parameter set")
			ktyFlag = f.Lookup("kty")
			f.IntVar(&size, "size", 0, "key size in bits: RSA 2048/3072/4096, oct 128/192/256")
			f.StringVar(&curve, "curve", "", "the curve of an EC key (P-256, P-384, P-521, P-256K), or the parameter set of an ML-DSA key (ML-DSA-44, ML-DSA-65, ML-DSA-87) or ML-KEM key (ML-KEM-768, ML-KEM-1024)")
			f.StringArrayVar(&ops, "ops", nil, "permitted operations: encrypt decrypt sign verify wrapKey unwrapKey; import alone makes an RSA key a key-exchange key (BYOK)")
			f.StringArrayVar(&tags, "tags", nil, "space-separated tags: key[=value]")
			f.BoolVar(&disabled, "disabled", false, "create the key disabled")
			f.StringVar(&expires, "expires", "", "expiry, UTC, e.g. 2030-01-01T00:00:00Z")
			f.StringVar(&notBefore, "not-before", "", "activation time, UTC")
			release.register(cmd, true)
		},
		func(ctx context.Context, c *client) (any, error) {
			kc, name, _, err := t.open(c, true)
			if err != nil {
				return nil, err
			}
			if curve != "" && !ktyFlag.Changed {
				kty = "EC-HSM" // as az (keyvault/_validators.py, validate_key_type): a curve means EC
			}
			p := azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyType(kty)), Tags: parseTags(tags)}
			if size != 0 {
				p.KeySize = to.Ptr(int32(size))
			}
			if curve != "" {
				p.Curve = to.Ptr(azkeys.CurveName(curve))
			}
			for _, op := range ops {
				p.KeyOps = append(p.KeyOps, to.Ptr(azkeys.KeyOperation(op)))
			}
			if p.KeyAttributes, err = attributes(disabled, expires, notBefore); err != nil {
				return nil, err
			}
			if p.ReleasePolicy, err = release.apply(p.KeyAttributes); err != nil {
				return nil, err
			}
			var raw keyResponse
			resp, err := kc.CreateKey(raw.capture(ctx), name, p, nil)
			if err != nil {
				return nil, explain(err)
			}
			return keyOut(resp.KeyBundle, raw.pub()), nil
		})
	return spaceSeparated(cmd, "ops", "tags")
}

func parseTags(tags []string) map[string]*string {
	if len(tags) == 0 {
		return nil
	}
	out := map[string]*string{}
	for _, t := range tags {
		k, v, _ := strings.Cut(t, "=")
		out[k] = to.Ptr(v)
	}
	return out
}

func attributes(disabled bool, expires, notBefore string) (*azkeys.KeyAttributes, error) {
	a := &azkeys.KeyAttributes{Enabled: to.Ptr(!disabled)}
	for _, f := range []struct {
		flag, v string
		dst     **time.Time
	}{{"--expires", expires, &a.Expires}, {"--not-before", notBefore, &a.NotBefore}} {
		if f.v == "" {
			continue
		}
		t, err := parseUTC(f.v)
		if err != nil {
			return nil, usagef("%s: %v", f.flag, err)
		}
		*f.dst = &t
	}
	return a, nil
}

// utcForms are the date-times az's keyvault datetime_type accepts, all
// UTC; RFC 3339 with an offset is taken too.
var utcForms = []string{"2006-01-02T15:04:05Z", "2006-01-02T15:04Z", "2006-01-02T15Z", "2006-01-02"}

// parseUTC reads a date-time as az's keyvault commands do.
func parseUTC(v string) (time.Time, error) {
	for _, f := range utcForms {
		if t, err := time.Parse(f, v); err == nil {
			return t, nil
		}
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("Input '%s' not valid. Valid example: 2000-12-31T12:59:59Z", v)
}

func keyShow(e *env) *cobra.Command {
	var t keyTarget
	return command(e, "show", "Show a key's public part and attributes",
		func(cmd *cobra.Command) { t.register(cmd, true) },
		func(ctx context.Context, c *client) (any, error) {
			kc, name, version, err := t.open(c, true)
			if err != nil {
				return nil, err
			}
			var raw keyResponse
			resp, err := kc.GetKey(raw.capture(ctx), name, version, nil)
			if err != nil {
				return nil, explain(err)
			}
			return keyOut(resp.KeyBundle, raw.pub()), nil
		})
}

// keyShowDeleted is az's keyvault key show-deleted: a deleted key, with
// its recovery id and dates, until it is purged.
func keyShowDeleted(e *env) *cobra.Command {
	var t keyTarget
	return command(e, "show-deleted", "Show a deleted key",
		func(cmd *cobra.Command) { t.register(cmd, false) },
		func(ctx context.Context, c *client) (any, error) {
			kc, name, _, err := t.open(c, true)
			if err != nil {
				return nil, err
			}
			var raw keyResponse
			resp, err := kc.GetDeletedKey(raw.capture(ctx), name, nil)
			if err != nil {
				return nil, explain(err)
			}
			d := resp.DeletedKey
			out := keyOut(azkeys.KeyBundle{Attributes: d.Attributes, Key: d.Key, ReleasePolicy: d.ReleasePolicy, Tags: d.Tags, Managed: d.Managed}, raw.pub())
			out["recoveryId"], out["deletedDate"], out["scheduledPurgeDate"] = d.RecoveryID, timeOut(d.DeletedDate), timeOut(d.ScheduledPurgeDate)
			return out, nil
		})
}

// keyRandom is az's keyvault key random: random bytes from the HSM,
// printed as az's transform_key_random_output does ({"value": base64}).
func keyRandom(e *env) *cobra.Command {
	var h hsmFlags
	var count int
	return command(e, "random", "Get random bytes from the HSM",
		func(cmd *cobra.Command) {
			h.register(cmd)
			cmd.Flags().IntVar(&count, "count", 0, "how many bytes (1 to 128)")
			required(cmd, "count")
		},
		func(ctx context.Context, c *client) (any, error) {
			hsm, err := h.url(c)
			if err != nil {
				return nil, err
			}
			kc, err := c.keys(hsm)
			if err != nil {
				return nil, err
			}
			resp, err := kc.GetRandomBytes(ctx, azkeys.GetRandomBytesParameters{Count: to.Ptr(int32(count))}, nil)
			if err != nil {
				return nil, explain(err)
			}
			return map[string]string{"value": base64.StdEncoding.EncodeToString(resp.Value)}, nil
		})
}

// keySetAttributes is az's keyvault key set-attributes: change a key
// version's enabled state, validity, tags or permitted operations. Only
// what is given changes.
func keySetAttributes(e *env) *cobra.Command {
	var t keyTarget
	var enabled, expires, notBefore string
	var ops, tags []string
	var release releaseFlags
	cmd := command(e, "set-attributes", "Change a key's attributes: enabled, expires, not-before, tags, ops, release policy",
		func(cmd *cobra.Command) {
			t.register(cmd, true)
			f := cmd.Flags()
			f.StringVar(&enabled, "enabled", "", "true or false")
			f.StringVar(&expires, "expires", "", "expiry, UTC, e.g. 2030-01-01T00:00:00Z")
			f.StringVar(&notBefore, "not-before", "", "activation time, UTC")
			f.StringArrayVar(&tags, "tags", nil, "space-separated tags: key[=value] (replace the key's tags)")
			f.StringArrayVar(&ops, "ops", nil, "permitted operations (replace the key's)")
			release.register(cmd, false)
		},
		func(ctx context.Context, c *client) (any, error) {
			kc, name, version, err := t.open(c, true)
			if err != nil {
				return nil, err
			}
			var p azkeys.UpdateKeyParameters
			a, err := attributes(false, expires, notBefore)
			if err != nil {
				return nil, err
			}
			if a.Enabled, err = parseThreeState("enabled", enabled); err != nil {
				return nil, err
			}
			p.KeyAttributes = a
			if p.ReleasePolicy, err = release.apply(a); err != nil {
				return nil, err
			}
			if len(tags) > 0 {
				p.Tags = parseTags(tags)
			}
			for _, op := range ops {
				p.KeyOps = append(p.KeyOps, to.Ptr(azkeys.KeyOperation(op)))
			}
			var raw keyResponse
			resp, err := kc.UpdateKey(raw.capture(ctx), name, version, p, nil)
			if err != nil {
				return nil, explain(err)
			}
			return keyOut(resp.KeyBundle, raw.pub()), nil
		})
	cmd.Flags().Lookup("enabled").NoOptDefVal = "true" // az's three-state flag: --enabled alone is true
	return spaceSeparated(cmd, "ops", "tags")
}

func keyList(e *env, verb string) *cobra.Command {
	var t keyTarget
	var max int
	return command(e, verb, map[string]string{"list": "List keys", "list-versions": "List the versions of a key",
		"list-deleted": "List deleted keys"}[verb],
		func(cmd *cobra.Command) {
			t.register(cmd, false)
			cmd.Flags().IntVar(&max, "maxresults", 0, "return at most this many items")
			cmd.Flags().Bool("include-managed", false, "accepted as az's: a Managed HSM's keys are all listed")
		},
		func(ctx context.Context, c *client) (any, error) {
			kc, name, _, err := t.open(c, verb == "list-versions")
			if err != nil {
				return nil, err
			}
			switch verb {
			case "list-deleted":
				return drain(ctx, kc.NewListDeletedKeyPropertiesPager(nil), max, func(p azkeys.ListDeletedKeyPropertiesResponse) (out []map[string]any) {
					for _, it := range p.Value {
						m := itemOut(it.KID, it.Attributes, it.Tags)
						m["recoveryId"], m["deletedDate"], m["scheduledPurgeDate"] = it.RecoveryID, timeOut(it.DeletedDate), timeOut(it.ScheduledPurgeDate)
						out = append(out, m)
					}
					return out
				})
			case "list-versions":
				return drain(ctx, kc.NewListKeyPropertiesVersionsPager(name, nil), max, func(p azkeys.ListKeyPropertiesVersionsResponse) (out []map[string]any) {
					for _, it := range p.Value {
						out = append(out, itemOut(it.KID, it.Attributes, it.Tags))
					}
					return out
				})
			}
			return drain(ctx, kc.NewListKeyPropertiesPager(nil), max, func(p azkeys.ListKeyPropertiesResponse) (out []map[string]any) {
				for _, it := range p.Value {
					out = append(out, itemOut(it.KID, it.Attributes, it.Tags))
				}
				return out
			})
		})
}

// drain reads pages until the last one, or until max items (0: no limit).
func drain[R any](ctx context.Context, pg *runtime.Pager[R], max int, items func(R) []map[string]any) ([]map[string]any, error) {
	out := []map[string]any{}
	for pg.More() && (max == 0 || len(out) < max) {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, explain(err)
		}
		out = append(out, items(page)...)
	}
	if max > 0 && len(out) > max {
		out = out[:max]
	}
	return out, nil
}

func keyByName(e *env, verb, short string) *cobra.Command {
	var t keyTarget
	return command(e, verb, short,
		func(cmd *cobra.Command) { t.register(cmd, false) },
		func(ctx context.Context, c *client) (any, error) {
			kc, name, _, err := t.open(c, true)
			if err != nil {
				return nil, err
			}
			var raw keyResponse
			ctx = raw.capture(ctx)
			switch verb {
			case "delete":
				resp, err := kc.DeleteKey(ctx, name, nil)
				if err != nil {
					return nil, explain(err)
				}
				m := keyOut(azkeys.KeyBundle{Key: resp.Key, Attributes: resp.Attributes, Tags: resp.Tags}, raw.pub())
				m["recoveryId"], m["deletedDate"], m["scheduledPurgeDate"] = resp.RecoveryID, timeOut(resp.DeletedDate), timeOut(resp.ScheduledPurgeDate)
				return m, nil
			case "recover":
				resp, err := kc.RecoverDeletedKey(ctx, name, nil)
				if err != nil {
					return nil, explain(err)
				}
				return keyOut(resp.KeyBundle, raw.pub()), nil
			case "purge":
				_, err := kc.PurgeDeletedKey(ctx, name, nil)
				return nil, explain(err)
			}
			resp, err := kc.RotateKey(ctx, name, nil)
			if err != nil {
				return nil, explain(err)
			}
			return keyOut(resp.KeyBundle, raw.pub()), nil
		})
}

func keyBackup(e *env) *cobra.Command {
	var t keyTarget
	var file string
	return command(e, "backup", "Back up a key to a file (usable only by an HSM with the same security domain)",
		func(cmd *cobra.Command) {
			t.register(cmd, false)
			cmd.Flags().StringVarP(&file, "file", "f", "", "file to write the backup to")
			required(cmd, "file")
		},
		func(ctx context.Context, c *client) (any, error) {
			kc, name, _, err := t.open(c, true)
			if err != nil {
				return nil, err
			}
			resp, err := kc.BackupKey(ctx, name, nil)
			if err != nil {
				return nil, explain(err)
			}
			if err := os.WriteFile(file, resp.Value, 0o600); err != nil {
				return nil, fmt.Errorf("writing backup: %w", err)
			}
			return nil, nil
		})
}

func keyRestore(e *env) *cobra.Command {
	var t keyTarget
	var file string
	return command(e, "restore", "Restore a key from a backup file",
		func(cmd *cobra.Command) {
			t.register(cmd, false)
			cmd.Flags().StringVarP(&file, "file", "f", "", "backup file to restore")
			required(cmd, "file")
		},
		func(ctx context.Context, c *client) (any, error) {
			kc, _, _, err := t.open(c, false)
			if err != nil {
				return nil, err
			}
			blob, err := os.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("reading backup: %w", err)
			}
			var raw keyResponse
			resp, err := kc.RestoreKey(raw.capture(ctx), azkeys.RestoreKeyParameters{KeyBackup: blob}, nil)
			if err != nil {
				return nil, explain(err)
			}
			return keyOut(resp.KeyBundle, raw.pub()), nil
		})
}

// explain turns an SDK response error into the server's code and message.
func explain(err error) error {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return err
	}
	// The server's JSON error body, not the SDK's text: a message may
	// quote a value, and scraping the text cut it at the first quote.
	if re.RawResponse != nil {
		if body, perr := runtime.Payload(re.RawResponse); perr == nil && len(body) > 0 {
			return decodeAPIError(re.StatusCode, body)
		}
	}
	return &apiError{Status: re.StatusCode, Code: re.ErrorCode, Message: fmt.Sprintf("the server answered %d", re.StatusCode)}
}

// keyResponse captures a key response's JSON for what azkeys drops: a
// post-quantum key's public key, the JWK's pub.
type keyResponse struct{ raw *http.Response }

func (r *keyResponse) capture(ctx context.Context) context.Context {
	return runtime.WithCaptureResponse(ctx, &r.raw)
}

// pub is the response's key.pub, or nil when it has none.
func (r *keyResponse) pub() []byte {
	if r.raw == nil {
		return nil
	}
	body, err := runtime.Payload(r.raw)
	if err != nil {
		return nil
	}
	var v struct {
		Key struct {
			Pub string `json:"pub"`
		} `json:"key"`
	}
	if json.Unmarshal(body, &v) != nil {
		return nil
	}
	pub, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v.Key.Pub, "="))
	if err != nil || len(pub) == 0 {
		return nil
	}
	return pub
}

// keyOut renders a key bundle as az prints it, with a post-quantum key's
// pub (a Keyward extension) beside the members az knows.
func keyOut(b azkeys.KeyBundle, pub []byte) map[string]any {
	k := map[string]any{}
	if b.Key != nil {
		enc := func(v []byte) any {
			if v == nil {
				return nil
			}
			return base64.StdEncoding.EncodeToString(v)
		}
		ops := []string{}
		for _, op := range b.Key.KeyOps {
			ops = append(ops, string(*op))
		}
		k = map[string]any{"kid": str(b.Key.KID), "kty": str(b.Key.Kty), "keyOps": ops, "n": enc(b.Key.N), "e": enc(b.Key.E),
			"crv": str(b.Key.Crv), "x": enc(b.Key.X), "y": enc(b.Key.Y), "d": nil, "dp": nil, "dq": nil, "k": nil, "p": nil,
			"q": nil, "qi": nil, "t": nil}
		if pub != nil {
			k["pub"] = enc(pub)
		}
	}
	return map[string]any{"key": k, "attributes": attrsOut(b.Attributes), "tags": tagsOut(b.Tags), "managed": b.Managed,
		"releasePolicy": releasePolicyOut(b.ReleasePolicy)}
}

func itemOut(kid *azkeys.ID, a *azkeys.KeyAttributes, tags map[string]*string) map[string]any {
	name := ""
	if kid != nil {
		name = kid.Name()
	}
	return map[string]any{"kid": str(kid), "name": name, "attributes": attrsOut(a), "tags": tagsOut(tags), "managed": nil, "releasePolicy": nil}
}

func attrsOut(a *azkeys.KeyAttributes) map[string]any {
	if a == nil {
		return nil
	}
	return map[string]any{"enabled": a.Enabled, "created": timeOut(a.Created), "updated": timeOut(a.Updated),
		"expires": timeOut(a.Expires), "notBefore": timeOut(a.NotBefore), "recoverableDays": a.RecoverableDays,
		"recoveryLevel": str(a.RecoveryLevel), "exportable": a.Exportable, "hsmPlatform": nil}
}

func tagsOut(t map[string]*string) map[string]string {
	if len(t) == 0 {
		return nil
	}
	out := map[string]string{}
	for k, v := range t {
		out[k] = *v
	}
	return out
}

func timeOut(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC().Format("2006-01-02T15:04:05+00:00")
}

func str[T ~string](p *T) any {
	if p == nil {
		return nil
	}
	return string(*p)
}
