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
			return out, err
		})
	var hu hsmFlags
	var uname, value string
	update := command(e, "update", "Change one setting",
		func(cmd *cobra.Command) {
			hu.register(cmd)
			cmd.Flags().StringVarP(&uname, "name", "n", "", "the setting's name")
			cmd.Flags().StringVar(&value, "value", "", "the new value (booleans: true or false)")
			cmd.Flags().String("setting-type", "boolean", "accepted for az compatibility")
			required(cmd, "name", "value")
		},
		func(ctx context.Context, c *client) (any, error) {
			hsm, err := hu.url(c)
			if err != nil {
				return nil, err
			}
			var out map[string]any
			err = c.hsm(ctx, hsm, http.MethodPatch, "/settings/"+url.PathEscape(uname), map[string]string{"value": value}, &out)
			return out, err
		})
	st.AddCommand(list, show, update)
	return st
}
