package cli

import (
	"context"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"
)

// newSettingCmd is az keyvault setting: a Managed HSM's account settings.
func newSettingCmd(e *env) *cobra.Command {
	st := &cobra.Command{Use: "setting", Short: "Show and change a Managed HSM's settings"}
	var h hsmFlags
	list := command(e, "list", "List the HSM's settings",
		func(cmd *cobra.Command) { h.register(cmd) },
		func(ctx context.Context, c *client) (any, error) {
			hsm, err := h.url(c)
			if err != nil {
				return nil, err
			}
			var out struct{ Settings []map[string]any }
			err = c.hsm(ctx, hsm, http.MethodGet, "/settings", nil, &out)
			for _, st := range out.Settings {
				settingOut(st)
			}
			return out.Settings, err
		})
	var hs hsmFlags
	var name string
	show := command(e, "show", "Show one setting",
		func(cmd *cobra.Command) {
			hs.register(cmd)
			cmd.Flags().StringVarP(&name, "name", "n", "", "the setting's name")
			required(cmd, "name")
		},
		func(ctx context.Context, c *client) (any, error) {
			hsm, err := hs.url(c)
			if err != nil {
				return nil, err
			}
			var out map[string]any
			err = c.hsm(ctx, hsm, http.MethodGet, "/settings/"+url.PathEscape(name), nil, &out)
			return settingOut(out), err
		})
	var hu hsmFlags
	var uname, value string
	update := command(e, "update", "Change one setting",
		func(cmd *cobra.Command) {
			hu.register(cmd)
			cmd.Flags().StringVarP(&uname, "name", "n", "", "the setting's name")
			cmd.Flags().StringVar(&value, "value", "", "the new value (booleans: true or false)")
			cmd.Flags().String("setting-type", "boolean", "accepted for az compatibility")
			cmd.Flags().String("type", "boolean", "the same as --setting-type")
			required(cmd, "name", "value")
		},
		func(ctx context.Context, c *client) (any, error) {
			hsm, err := hu.url(c)
			if err != nil {
				return nil, err
			}
			var out map[string]any
			err = c.hsm(ctx, hsm, http.MethodPatch, "/settings/"+url.PathEscape(uname), map[string]string{"value": value}, &out)
			return settingOut(out), err
		})
	st.AddCommand(list, show, update)
	return st
}

// settingOut is a setting as az prints the SDK's KeyVaultSetting (name,
// value, settingType), not the wire's type.
func settingOut(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	if t, ok := m["type"]; ok {
		m["settingType"] = t
		delete(m, "type")
	}
	return m
}
