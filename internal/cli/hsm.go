package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
)

const armScope = "https://management.azure.com/.default"

// arm sends an Azure Resource Manager request to the server.
func (c *client) arm(ctx context.Context, method, path string, body, out any) error {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return c.call(ctx, armScope, method, strings.TrimSuffix(c.prof.Server, "/")+path+sep+"api-version=2023-07-01", body, out)
}

func (c *client) subscriptionPath() (string, error) {
	if c.prof.Subscription == "" {
		return "", usagef("the profile has no subscription: run 'keyward login' again")
	}
	return "/subscriptions/" + c.prof.Subscription, nil
}

// findHSM returns the ARM resource of the HSM called name.
func (c *client) findHSM(ctx context.Context, name string) (map[string]any, error) {
	sub, err := c.subscriptionPath()
	if err != nil {
		return nil, err
	}
	hsms, err := c.armList(ctx, sub+"/providers/Microsoft.KeyVault/managedHSMs")
	if err != nil {
		return nil, err
	}
	for _, h := range hsms {
		if n, _ := h["name"].(string); strings.EqualFold(n, name) {
			return h, nil
		}
	}
	return nil, &apiError{404, "ResourceNotFound", "no managed HSM is named " + name}
}

func hsmCreate(e *env) *cobra.Command {
	var name, group, location string
	var admins []string
	var retention int
	var purgeProtection bool
	cmd := command(e, "create", "Create a Managed HSM (not activated until its security domain is downloaded)",
		func(cmd *cobra.Command) {
			f := cmd.Flags()
			f.StringVar(&name, "hsm-name", "", "name of the new HSM")
			f.StringVarP(&group, "resource-group", "g", "keyward", "resource group")
			f.StringVarP(&location, "location", "l", "local", "location")
			f.StringSliceVar(&admins, "administrators", nil, "object ids of the initial administrators (space-separated)")
			f.IntVar(&retention, "retention-days", 90, "days a deleted key can be recovered (7 to 90)")
			f.BoolVar(&purgeProtection, "enable-purge-protection", false, "refuse purges until the retention ends")
			required(cmd, "hsm-name", "administrators")
		},
		func(ctx context.Context, c *client) (any, error) {
			sub, err := c.subscriptionPath()
			if err != nil {
				return nil, err
			}
			body := map[string]any{"location": location, "sku": map[string]string{"family": "B", "name": "Standard_B1"},
				"properties": map[string]any{"tenantId": c.prof.TenantID, "initialAdminObjectIds": admins,
					"softDeleteRetentionInDays": retention, "enablePurgeProtection": purgeProtection}}
			var out map[string]any
			err = c.arm(ctx, http.MethodPut, sub+"/resourceGroups/"+url.PathEscape(group)+"/providers/Microsoft.KeyVault/managedHSMs/"+url.PathEscape(name), body, &out)
			return out, err
		})
	return spaceSeparated(cmd, "administrators", &admins)
}

func hsmShow(e *env, verb string) *cobra.Command {
	var name, group string
	return command(e, verb, map[string]string{"show": "Show a Managed HSM", "delete": "Delete a Managed HSM with all its keys"}[verb],
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&name, "hsm-name", "", "name of the HSM")
			cmd.Flags().StringVarP(&group, "resource-group", "g", "", "resource group (optional: without it the HSM is looked up among those you may read)")
			required(cmd, "hsm-name")
		},
		func(ctx context.Context, c *client) (any, error) {
			var h map[string]any
			var err error
			if group != "" {
				// As az does with -g: a direct GET, refused or found.
				sub, serr := c.subscriptionPath()
				if serr != nil {
					return nil, serr
				}
				err = c.arm(ctx, http.MethodGet, sub+"/resourceGroups/"+url.PathEscape(group)+"/providers/Microsoft.KeyVault/managedHSMs/"+url.PathEscape(name), nil, &h)
			} else {
				h, err = c.findHSM(ctx, name)
			}
			if err != nil || verb == "show" {
				return h, err
			}
			id, _ := h["id"].(string)
			if id == "" {
				return nil, fmt.Errorf("the managed HSM %s has no id", name)
			}
			err = c.arm(ctx, http.MethodDelete, id, nil, nil)
			return nil, err
		})
}

func hsmPurge(e *env) *cobra.Command {
	var name, location string
	return command(e, "purge", "Purge a deleted Managed HSM for good",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&name, "hsm-name", "", "name of the deleted HSM")
			cmd.Flags().StringVarP(&location, "location", "l", "local", "its location")
			required(cmd, "hsm-name")
		},
		func(ctx context.Context, c *client) (any, error) {
			sub, err := c.subscriptionPath()
			if err != nil {
				return nil, err
			}
			err = c.arm(ctx, http.MethodPost, sub+"/providers/Microsoft.KeyVault/locations/"+url.PathEscape(location)+"/deletedManagedHSMs/"+url.PathEscape(name)+"/purge", nil, nil)
			return nil, err
		})
}

func hsmList(e *env) *cobra.Command {
	var group string
	return command(e, "list", "List Managed HSMs",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVarP(&group, "resource-group", "g", "", "only this resource group")
			cmd.Flags().String("resource-type", "hsm", "hsm (vaults do not exist here)")
		},
		func(ctx context.Context, c *client) (any, error) {
			sub, err := c.subscriptionPath()
			if err != nil {
				return nil, err
			}
			path := sub + "/providers/Microsoft.KeyVault/managedHSMs"
			if group != "" {
				path = sub + "/resourceGroups/" + url.PathEscape(group) + "/providers/Microsoft.KeyVault/managedHSMs"
			}
			return c.armList(ctx, path)
		})
}
