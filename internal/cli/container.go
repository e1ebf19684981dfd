package cli

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/spf13/cobra"
)

// newContainerCmd is `keyward storage container create|generate-sas`, as
// az's: the storage side of the backup step, talking to the storage
// account directly with its key (--account-key or $AZURE_STORAGE_KEY).
func newContainerCmd(e *env) *cobra.Command {
	ctr := &cobra.Command{Use: "container", Short: "Create blob containers and their SAS tokens (for backups)"}
	var account, name, key, endpoint, permissions, expiry string
	accountFlags := func(cmd *cobra.Command) {
		f := cmd.Flags()
		f.StringVar(&account, "account-name", "", "the storage account (registered with 'keyward storage account create')")
		f.StringVarP(&name, "name", "n", "", "the container")
		f.StringVar(&key, "account-key", "", "the account's shared key (default $AZURE_STORAGE_KEY)")
		required(cmd, "account-name", "name")
	}
	credential := func() (*azblob.SharedKeyCredential, error) {
		if key == "" {
			key = os.Getenv("AZURE_STORAGE_KEY")
		}
		if key == "" {
			return nil, usagef("--account-key (or $AZURE_STORAGE_KEY) is required")
		}
		return azblob.NewSharedKeyCredential(account, key)
	}
	ctr.AddCommand(command(e, "create", "Create a blob container",
		func(cmd *cobra.Command) {
			accountFlags(cmd)
			cmd.Flags().StringVar(&endpoint, "blob-endpoint", "", "the account's blob endpoint (default: as registered)")
		},
		func(ctx context.Context, c *client) (any, error) {
			cred, err := credential()
			if err != nil {
				return nil, err
			}
			if endpoint == "" {
				if endpoint, err = c.blobEndpoint(ctx, account); err != nil {
					return nil, err
				}
			}
			bc, err := azblob.NewClientWithSharedKeyCredential(endpoint, cred, nil)
			if err != nil {
				return nil, err
			}
			_, err = bc.CreateContainer(ctx, name, nil)
			if bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
				return map[string]bool{"created": false}, nil
			}
			if err != nil {
				return nil, fmt.Errorf("creating container %s: %w", name, err)
			}
			return map[string]bool{"created": true}, nil
		}))
	ctr.AddCommand(offline(e, "generate-sas", "Make a SAS token for a container, signed with the account key (no server call)",
		func(cmd *cobra.Command) {
			accountFlags(cmd)
			cmd.Flags().StringVar(&permissions, "permissions", "racwdl", "permissions, from (r)ead (a)dd (c)reate (w)rite (d)elete (l)ist")
			cmd.Flags().StringVar(&expiry, "expiry", "", "when the token expires (UTC)")
			required(cmd, "expiry")
		},
		func(context.Context) (any, error) {
			cred, err := credential()
			if err != nil {
				return nil, err
			}
			until, err := parseUTC(expiry)
			if err != nil {
				return nil, usagef("--expiry: %v", err)
			}
			perms, err := containerPermissions(permissions)
			if err != nil {
				return nil, err
			}
			qp, err := sas.BlobSignatureValues{Protocol: sas.ProtocolHTTPSandHTTP, ExpiryTime: until.UTC(), ContainerName: name,
				Permissions: perms.String()}.SignWithSharedKey(cred)
			if err != nil {
				return nil, err
			}
			return qp.Encode(), nil
		}))
	return ctr
}

// containerPermissions reads az's permission letters.
func containerPermissions(letters string) (*sas.ContainerPermissions, error) {
	p := &sas.ContainerPermissions{}
	for _, r := range letters {
		switch r {
		case 'r':
			p.Read = true
		case 'a':
			p.Add = true
		case 'c':
			p.Create = true
		case 'w':
			p.Write = true
		case 'd':
			p.Delete = true
		case 'l':
			p.List = true
		default:
			return nil, usagef("--permissions: unknown permission %q (use r, a, c, w, d, l)", r)
		}
	}
	return p, nil
}

// blobEndpoint is a registered account's blob endpoint.
func (c *client) blobEndpoint(ctx context.Context, account string) (string, error) {
	a, err := c.findAccount(ctx, account)
	if err != nil {
		return "", err
	}
	props, _ := a["properties"].(map[string]any)
	eps, _ := props["primaryEndpoints"].(map[string]any)
	if ep, _ := eps["blob"].(string); ep != "" {
		return ep, nil
	}
	return "", errors.New("the storage account has no blob endpoint")
}
