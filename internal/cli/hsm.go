package cli

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"
	"github.com/spf13/cobra"
)

// armAudience is the resource ARM tokens are issued for, as on Azure.
const armAudience = "https://management.azure.com"

// hsms returns an armkeyvault client for the server's resource manager,
// as the azkeys clients: the CLI's transport (which trusts the server's CA
// and dials the server), the profile's credential.
func (c *client) hsms() (*armkeyvault.ManagedHsmsClient, error) {
	if c.prof.Subscription == "" {
		return nil, usagef("the profile has no subscription: run 'keyward login' again")
	}
	cfg := credCloud(c.prof)
	cfg.Services = map[cloud.ServiceName]cloud.ServiceConfiguration{cloud.ResourceManager: {
		Endpoint: strings.TrimSuffix(c.prof.managementURL(), "/"), Audience: armAudience}}
	return armkeyvault.NewManagedHsmsClient(c.prof.Subscription, signingIn{c.cred}, &arm.ClientOptions{
		ClientOptions: azcore.ClientOptions{Transport: c.http, Cloud: cfg},
		// Keyward has every resource provider registered.
		DisableRPRegistration: true,
	})
}

// signingIn says that a token request failed, as c.token does for the
// requests the CLI builds itself.
type signingIn struct{ cred azcore.TokenCredential }

func (s signingIn) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	t, err := s.cred.GetToken(ctx, o)
	if err != nil {
		return t, fmt.Errorf("signing in: %w", err)
	}
	return t, nil
}

// untilDone waits for a long-running operation; the server completes
// them before its first answer, so this polls once.
func untilDone[T any](ctx context.Context, p *runtime.Poller[T], err error) (T, error) {
	if err != nil {
		var zero T
		return zero, explain(err)
	}
	res, err := p.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: time.Second})
	return res, explain(err)
}

// findHSM returns the HSM called name, among those the caller may read.
func (c *client) findHSM(ctx context.Context, hc *armkeyvault.ManagedHsmsClient, name string) (*armkeyvault.ManagedHsm, error) {
	for pg := hc.NewListBySubscriptionPager(nil); pg.More(); {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, explain(err)
		}
		for _, h := range page.Value {
			if h != nil && h.Name != nil && strings.EqualFold(*h.Name, name) {
				return h, nil
			}
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
			f.StringVarP(&group, "resource-group", "g", "", "resource group")
			f.StringVarP(&location, "location", "l", "", "location (default: the resource group's, as az)")
			f.StringArrayVar(&admins, "administrators", nil, "object ids of the initial administrators (space-separated)")
			f.IntVar(&retention, "retention-days", 90, "days a deleted key can be recovered (7 to 90)")
			f.BoolVar(&purgeProtection, "enable-purge-protection", false, "refuse purges until the retention ends")
			required(cmd, "hsm-name", "resource-group", "administrators")
		},
		func(ctx context.Context, c *client) (any, error) {
			hc, err := c.hsms()
			if err != nil {
				return nil, err
			}
			if location == "" {
				if location, err = c.groupLocation(ctx, group); err != nil {
					return nil, err
				}
			}
			ids := make([]*string, len(admins))
			for i := range admins {
				ids[i] = &admins[i]
			}
			p, err := hc.BeginCreateOrUpdate(ctx, group, name, armkeyvault.ManagedHsm{
				Location: &location,
				SKU:      &armkeyvault.ManagedHsmSKU{Family: to.Ptr(armkeyvault.ManagedHsmSKUFamilyB), Name: to.Ptr(armkeyvault.ManagedHsmSKUNameStandardB1)},
				Properties: &armkeyvault.ManagedHsmProperties{TenantID: &c.prof.TenantID, InitialAdminObjectIDs: ids,
					SoftDeleteRetentionInDays: to.Ptr(int32(retention)), EnablePurgeProtection: &purgeProtection},
			}, nil)
			res, err := untilDone(ctx, p, err)
			if err != nil {
				return nil, err
			}
			return asModel(res.ManagedHsm, managedHSMModel)
		})
	return spaceSeparated(cmd, "administrators")
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
			hc, err := c.hsms()
			if err != nil {
				return nil, err
			}
			var h *armkeyvault.ManagedHsm
			if group != "" {
				// As az does with -g: a direct GET, refused or found.
				resp, gerr := hc.Get(ctx, group, name, nil)
				if gerr != nil {
					return nil, explain(gerr)
				}
				h = &resp.ManagedHsm
			} else if h, err = c.findHSM(ctx, hc, name); err != nil {
				return nil, err
			}
			if verb == "show" {
				return asModel(h, managedHSMModel)
			}
			if h.ID == nil {
				return nil, fmt.Errorf("the managed HSM %s has no id", name)
			}
			id, err := arm.ParseResourceID(*h.ID)
			if err != nil {
				return nil, fmt.Errorf("the managed HSM %s has the id %q: %w", name, *h.ID, err)
			}
			p, err := hc.BeginDelete(ctx, id.ResourceGroupName, id.Name, nil)
			_, err = untilDone(ctx, p, err)
			return nil, err
		})
}

// deletedHSMCommand is a command on a deleted HSM, named as az names it:
// --hsm-name and --location.
func deletedHSMCommand(e *env, use, short string, setup func(*cobra.Command),
	run func(ctx context.Context, hc *armkeyvault.ManagedHsmsClient, name, location string) (any, error)) *cobra.Command {
	var name, location string
	return command(e, use, short,
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&name, "hsm-name", "", "name of the deleted HSM")
			cmd.Flags().StringVarP(&location, "location", "l", "", "its location (default: found among the deleted HSMs)")
			required(cmd, "hsm-name")
			if setup != nil {
				setup(cmd)
			}
		},
		func(ctx context.Context, c *client) (any, error) {
			hc, err := c.hsms()
			if err != nil {
				return nil, err
			}
			if location == "" {
				// As az (keyvault/_validators.py,
				// validate_deleted_vault_or_hsm_name): the location is the
				// deleted HSM's, found by its name.
				if location, err = deletedLocation(ctx, hc, name); err != nil {
					return nil, err
				}
			}
			return run(ctx, hc, name, location)
		})
}

// deletedLocation is the location of the deleted HSM called name.
func deletedLocation(ctx context.Context, hc *armkeyvault.ManagedHsmsClient, name string) (string, error) {
	for pg := hc.NewListDeletedPager(nil); pg.More(); {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return "", explain(err)
		}
		for _, d := range page.Value {
			if d.Name != nil && strings.EqualFold(*d.Name, name) && d.Properties != nil && d.Properties.Location != nil {
				return *d.Properties.Location, nil
			}
		}
	}
	return "", &apiError{http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("No deleted managed HSM is named %s.", name)}
}

func hsmPurge(e *env) *cobra.Command {
	return deletedHSMCommand(e, "purge", "Purge a deleted Managed HSM for good", nil,
		func(ctx context.Context, hc *armkeyvault.ManagedHsmsClient, name, location string) (any, error) {
			p, err := hc.BeginPurgeDeleted(ctx, name, location, nil)
			_, err = untilDone(ctx, p, err)
			return nil, err
		})
}

// hsmShowDeleted is `keyward keyvault show-deleted`, as `az keyvault
// show-deleted --hsm-name`: a deleted HSM until it is purged.
func hsmShowDeleted(e *env) *cobra.Command {
	return deletedHSMCommand(e, "show-deleted", "Show a deleted Managed HSM", nil,
		func(ctx context.Context, hc *armkeyvault.ManagedHsmsClient, name, location string) (any, error) {
			resp, err := hc.GetDeleted(ctx, name, location, nil)
			if err != nil {
				return nil, explain(err)
			}
			return asModel(resp.DeletedManagedHsm, deletedHSMModel)
		})
}

// hsmListDeleted is `az keyvault list-deleted --resource-type hsm`.
func hsmListDeleted(e *env) *cobra.Command {
	return command(e, "list-deleted", "List deleted Managed HSMs (until they are purged)",
		func(cmd *cobra.Command) {
			cmd.Flags().String("resource-type", "hsm", "hsm (vaults do not exist here)")
		},
		func(ctx context.Context, c *client) (any, error) {
			hc, err := c.hsms()
			if err != nil {
				return nil, err
			}
			out := []*armkeyvault.DeletedManagedHsm{}
			for pg := hc.NewListDeletedPager(nil); pg.More(); {
				page, err := pg.NextPage(ctx)
				if err != nil {
					return nil, explain(err)
				}
				out = append(out, page.Value...)
			}
			return asModel(out, deletedHSMModel)
		})
}

// hsmRecover is `az keyvault recover --hsm-name`: a deleted HSM back, in
// its resource group and location (az's recover_hsm: createMode recover).
func hsmRecover(e *env) *cobra.Command {
	return deletedHSMCommand(e, "recover", "Recover a deleted Managed HSM, with its keys",
		func(cmd *cobra.Command) {
			cmd.Flags().StringP("resource-group", "g", "", "accepted as az's; the deleted HSM names its group")
		},
		func(ctx context.Context, hc *armkeyvault.ManagedHsmsClient, name, location string) (any, error) {
			d, err := hc.GetDeleted(ctx, name, location, nil)
			if err != nil {
				return nil, explain(err)
			}
			if d.Properties == nil || d.Properties.MhsmID == nil {
				return nil, fmt.Errorf("the deleted managed HSM %s does not name its resource", name)
			}
			id, err := arm.ParseResourceID(*d.Properties.MhsmID)
			if err != nil {
				return nil, fmt.Errorf("the deleted managed HSM %s has the id %q: %w", name, *d.Properties.MhsmID, err)
			}
			if d.Properties.Location != nil {
				location = *d.Properties.Location
			}
			p, err := hc.BeginCreateOrUpdate(ctx, id.ResourceGroupName, id.Name, armkeyvault.ManagedHsm{Location: &location,
				Properties: &armkeyvault.ManagedHsmProperties{CreateMode: to.Ptr(armkeyvault.CreateModeRecover)}}, nil)
			resp, err := untilDone(ctx, p, err)
			if err != nil {
				return nil, err
			}
			return asModel(resp.ManagedHsm, managedHSMModel)
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
			hc, err := c.hsms()
			if err != nil {
				return nil, err
			}
			out := []*armkeyvault.ManagedHsm{}
			if group != "" {
				for pg := hc.NewListByResourceGroupPager(group, nil); pg.More(); {
					page, err := pg.NextPage(ctx)
					if err != nil {
						return nil, explain(err)
					}
					out = append(out, page.Value...)
				}
				return asModel(out, managedHSMModel)
			}
			for pg := hc.NewListBySubscriptionPager(nil); pg.More(); {
				page, err := pg.NextPage(ctx)
				if err != nil {
					return nil, explain(err)
				}
				out = append(out, page.Value...)
			}
			return asModel(out, managedHSMModel)
		})
}
