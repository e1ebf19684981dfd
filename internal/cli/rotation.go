package cli

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/spf13/cobra"
)

func newRotationPolicyCmd(e *env) *cobra.Command {
	rp := &cobra.Command{Use: "rotation-policy", Short: "Show or set a key's rotation policy"}
	var t keyTarget
	rp.AddCommand(command(e, "show", "Show a key's rotation policy",
		func(cmd *cobra.Command) { t.register(cmd, false) },
		func(ctx context.Context, c *client) (any, error) {
			kc, name, _, err := t.open(c, true)
			if err != nil {
				return nil, err
			}
			resp, err := kc.GetKeyRotationPolicy(ctx, name, nil)
			if err != nil {
				return nil, explain(err)
			}
			return policyOut(resp.KeyRotationPolicy)
		}))
	var u keyTarget
	var value string
	rp.AddCommand(command(e, "update", "Set a key's rotation policy",
		func(cmd *cobra.Command) {
			u.register(cmd, false)
			cmd.Flags().StringVar(&value, "value", "", `the policy as JSON or @file: {"lifetimeActions":[{"trigger":{"timeAfterCreate":"P90D"},"action":{"type":"Rotate"}}],"attributes":{"expiryTime":"P2Y"}}`)
			required(cmd, "value")
		},
		func(ctx context.Context, c *client) (any, error) {
			kc, name, _, err := u.open(c, true)
			if err != nil {
				return nil, err
			}
			var p azkeys.KeyRotationPolicy
			if err := readJSONArg(value, &p); err != nil {
				return nil, err
			}
			resp, err := kc.UpdateKeyRotationPolicy(ctx, name, p, nil)
			if err != nil {
				return nil, explain(err)
			}
			return policyOut(resp.KeyRotationPolicy)
		}))
	return rp
}

// policyOut renders a policy as az does: lifetime actions flattened.
func policyOut(p azkeys.KeyRotationPolicy) (any, error) {
	out := map[string]any{"id": p.ID, "lifetimeActions": []map[string]any{}}
	if a := p.Attributes; a != nil {
		out["attributes"] = map[string]any{"expiryTime": a.ExpiryTime, "created": timeOut(a.Created), "updated": timeOut(a.Updated)}
	}
	for _, la := range p.LifetimeActions {
		m := map[string]any{"action": nil, "timeAfterCreate": nil, "timeBeforeExpiry": nil}
		if la.Action != nil && la.Action.Type != nil {
			m["action"] = string(*la.Action.Type)
		}
		if tr := la.Trigger; tr != nil {
			m["timeAfterCreate"], m["timeBeforeExpiry"] = tr.TimeAfterCreate, tr.TimeBeforeExpiry
		}
		out["lifetimeActions"] = append(out["lifetimeActions"].([]map[string]any), m)
	}
	return out, nil
}

// parseWithin reads "30d", "12h" or "1h30m".
func parseWithin(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 {
			return 0, usagef("--within %q: use a number of days (30d) or a duration (12h)", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, usagef("--within %q: use a number of days (30d) or a duration (12h)", s)
	}
	return d, nil
}

func keyListExpiring(e *env) *cobra.Command {
	var t keyTarget
	var within string
	return command(e, "list-expiring", "List keys whose latest version expires within a period (or has expired)",
		func(cmd *cobra.Command) {
			t.register(cmd, false)
			cmd.Flags().StringVar(&within, "within", "30d", "the period: days (30d) or a duration (12h)")
		},
		func(ctx context.Context, c *client) (any, error) {
			d, err := parseWithin(within)
			if err != nil {
				return nil, err
			}
			kc, _, _, err := t.open(c, false)
			if err != nil {
				return nil, err
			}
			limit := time.Now().Add(d)
			var out []map[string]any
			var expiries []time.Time
			for pg := kc.NewListKeyPropertiesPager(nil); pg.More(); {
				page, err := pg.NextPage(ctx)
				if err != nil {
					return nil, explain(err)
				}
				for _, it := range page.Value {
					if it.Attributes == nil || it.Attributes.Expires == nil || it.Attributes.Expires.After(limit) {
						continue
					}
					out = append(out, itemOut(it.KID, it.Attributes, it.Tags))
					expiries = append(expiries, *it.Attributes.Expires)
				}
			}
			idx := make([]int, len(out))
			for i := range idx {
				idx[i] = i
			}
			sort.Slice(idx, func(a, b int) bool { return expiries[idx[a]].Before(expiries[idx[b]]) })
			sorted := make([]map[string]any, 0, len(out))
			for _, i := range idx {
				sorted = append(sorted, out[i])
			}
			return sorted, nil
		})
}
