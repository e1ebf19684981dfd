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
			var raw any
			if err := readJSONArg(value, &raw); err != nil {
				return nil, err
			}
			p, err := parsePolicy(raw)
			if err != nil {
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

// policyOut renders a policy as az does (the SDK's KeyRotationPolicy:
// lifetime actions flattened, expiresIn, createdOn and updatedOn at the
// top).
func policyOut(p azkeys.KeyRotationPolicy) (any, error) {
	out := map[string]any{"id": p.ID, "lifetimeActions": []map[string]any{}, "expiresIn": nil, "createdOn": nil, "updatedOn": nil}
	if a := p.Attributes; a != nil {
		out["expiresIn"], out["createdOn"], out["updatedOn"] = a.ExpiryTime, timeOut(a.Created), timeOut(a.Updated)
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

// parsePolicy reads a rotation policy in any shape az takes
// (keyvault/custom.py, update_key_rotation_policy): the REST API's
// ({"lifetimeActions": [{"trigger": {...}, "action": {"type": ...}}],
// "attributes": {"expiryTime": ...}}), the one show prints (actions
// flattened, expiresIn at the top), and either in snake_case. A key it
// does not know is an error, never a policy silently emptied.
func parsePolicy(raw any) (azkeys.KeyRotationPolicy, error) {
	var p azkeys.KeyRotationPolicy
	top, ok := raw.(map[string]any)
	if !ok {
		return p, usagef("--value: a rotation policy is a JSON object")
	}
	str := func(v any, what string) (*string, error) {
		if v == nil {
			return nil, nil
		}
		s, ok := v.(string)
		if !ok {
			return nil, usagef("--value: %s must be a string", what)
		}
		return &s, nil
	}
	// Two spellings of one field would leave the result to map order:
	// refused.
	seen := map[string]string{}
	claim := func(field, key string) error {
		if prev, ok := seen[field]; ok {
			return usagef("--value: %q and %q are the same field: give it once", prev, key)
		}
		seen[field] = key
		return nil
	}
	var expiry *string
	setExpiry := func(v any, what string) error {
		if err := claim("expiry", what); err != nil {
			return err
		}
		s, err := str(v, what)
		if s != nil {
			expiry = s
		}
		return err
	}
	actions := []any{}
	said := false // a lifetimeActions list was given, if empty
	for k, v := range top {
		var err error
		switch k {
		case "lifetimeActions", "lifetime_actions":
			if err := claim("lifetimeActions", k); err != nil {
				return p, err
			}
			list, ok := v.([]any)
			if !ok && v != nil {
				return p, usagef("--value: %s must be a list", k)
			}
			actions, said = list, true
		case "attributes":
			attrs, ok := v.(map[string]any)
			if !ok && v != nil {
				return p, usagef("--value: attributes must be an object")
			}
			for ak, av := range attrs {
				switch ak {
				case "expiryTime", "expiry_time", "expiresIn", "expires_in":
					err = setExpiry(av, ak)
				case "created", "updated", "createdOn", "updatedOn", "created_on", "updated_on":
				default:
					return p, usagef("--value: unknown attribute %q", ak)
				}
			}
		case "expiresIn", "expires_in", "expiryTime", "expiry_time":
			err = setExpiry(v, k)
		case "id", "createdOn", "updatedOn", "created_on", "updated_on":
			// what show prints and the service sets
		default:
			return p, usagef("--value: unknown field %q (a rotation policy has lifetimeActions and attributes.expiryTime)", k)
		}
		if err != nil {
			return p, err
		}
	}
	if expiry != nil {
		p.Attributes = &azkeys.KeyRotationPolicyAttributes{ExpiryTime: expiry}
	}
	for i, v := range actions {
		a, ok := v.(map[string]any)
		if !ok {
			return p, usagef("--value: lifetime action %d is not an object", i+1)
		}
		var typ, after, before *string
		seen = map[string]string{} // the top level is read: each action on its own
		for k, v := range a {
			var err error
			switch k {
			case "action":
				if m, ok := v.(map[string]any); ok {
					typ, err = str(m["type"], "action.type")
				} else {
					typ, err = str(v, "action")
				}
			case "trigger":
				m, ok := v.(map[string]any)
				if !ok {
					return p, usagef("--value: lifetime action %d: trigger must be an object", i+1)
				}
				for tk, tv := range m {
					switch tk {
					case "timeAfterCreate", "time_after_create":
						if err = claim("after", tk); err == nil {
							after, err = str(tv, tk)
						}
					case "timeBeforeExpiry", "time_before_expiry":
						if err = claim("before", tk); err == nil {
							before, err = str(tv, tk)
						}
					default:
						return p, usagef("--value: lifetime action %d: unknown trigger %q", i+1, tk)
					}
					if err != nil {
						return p, err
					}
				}
			case "timeAfterCreate", "time_after_create":
				// show prints both, one of them null: a null claims nothing.
				if s, e := str(v, k); s != nil || e != nil {
					if err = claim("after", k); err == nil {
						after, err = s, e
					}
				}
			case "timeBeforeExpiry", "time_before_expiry":
				if s, e := str(v, k); s != nil || e != nil {
					if err = claim("before", k); err == nil {
						before, err = s, e
					}
				}
			default:
				return p, usagef("--value: lifetime action %d: unknown field %q", i+1, k)
			}
			if err != nil {
				return p, err
			}
		}
		if typ == nil {
			return p, usagef("--value: lifetime action %d has no action type (Rotate or Notify)", i+1)
		}
		t := azkeys.KeyRotationPolicyAction(*typ)
		switch strings.ToLower(*typ) {
		case "rotate":
			t = azkeys.KeyRotationPolicyActionRotate
		case "notify":
			t = azkeys.KeyRotationPolicyActionNotify
		}
		p.LifetimeActions = append(p.LifetimeActions, &azkeys.LifetimeAction{Action: &azkeys.LifetimeActionType{Type: &t},
			Trigger: &azkeys.LifetimeActionTrigger{TimeAfterCreate: after, TimeBeforeExpiry: before}})
	}
	if p.Attributes == nil && !said {
		return p, usagef("--value: no lifetimeActions and no expiry time: nothing to set")
	}
	return p, nil
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
