package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// containerFlags name a blob container as az's backup commands do: a URI,
// or an account and container (the account's endpoint comes from the
// server when it is registered there).
type containerFlags struct {
	uri, account, container, sas string
	managedIdentity, noWait      bool
}

func (f *containerFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.uri, "storage-resource-uri", "", "URL of the blob container")
	fl.StringVar(&f.account, "storage-account-name", "", "storage account (with --blob-container-name)")
	fl.StringVar(&f.container, "blob-container-name", "", "blob container")
	fl.StringVarP(&f.sas, "storage-container-SAS-token", "t", "", "SAS token for the container")
	fl.StringVar(&f.sas, "token", "", "SAS token for the container (alias)")
	fl.BoolVar(&f.managedIdentity, "use-managed-identity", false, "use the HSM's managed identity (not supported yet)")
	fl.BoolVar(&f.noWait, "no-wait", false, "return once the job started")
}

func (f *containerFlags) resolve(ctx context.Context, c *client) (map[string]any, error) {
	uri := f.uri
	if uri == "" {
		if f.account == "" || f.container == "" {
			return nil, usagef("give --storage-resource-uri, or --storage-account-name and --blob-container-name")
		}
		endpoint := "https://" + f.account + ".blob.core.windows.net"
		if a, err := c.findAccount(ctx, f.account); err == nil {
			props, _ := a["properties"].(map[string]any)
			eps, _ := props["primaryEndpoints"].(map[string]any)
			if b, ok := eps["blob"].(string); ok && b != "" {
				endpoint = strings.TrimSuffix(b, "/")
			}
		}
		uri = endpoint + "/" + url.PathEscape(f.container)
	}
	if f.sas == "" && !f.managedIdentity {
		return nil, usagef("--storage-container-SAS-token is required")
	}
	return map[string]any{"storageResourceUri": uri, "token": strings.TrimPrefix(f.sas, "?"), "useManagedIdentity": f.managedIdentity}, nil
}

// runJob starts a backup or restore and, unless --no-wait, polls it to the end.
func (c *client) runJob(ctx context.Context, hsm, method, path, pending string, body any, noWait bool) (map[string]any, error) {
	var job map[string]any
	if err := c.hsm(ctx, hsm, method, path, body, &job); err != nil {
		return nil, err
	}
	for !noWait && job["status"] == "InProgress" {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		if err := c.hsm(ctx, hsm, http.MethodGet, "/"+pending+"/"+fmt.Sprint(job["jobId"])+"/pending", nil, &job); err != nil {
			return nil, err
		}
	}
	if job["status"] == "Failed" {
		e, _ := job["error"].(map[string]any)
		return nil, &apiError{Code: fmt.Sprint(e["code"]), Message: fmt.Sprint(e["message"])}
	}
	return job, nil
}

func newBackupCmd(e *env) *cobra.Command {
	b := &cobra.Command{Use: "backup", Short: "Full backups of a Managed HSM"}
	var h hsmFlags
	var cf containerFlags
	b.AddCommand(command(e, "start", "Back up the whole HSM into a blob container",
		func(cmd *cobra.Command) { h.register(cmd); cf.register(cmd) },
		func(ctx context.Context, c *client) (any, error) {
			hsm, err := h.url(c)
			if err != nil {
				return nil, err
			}
			body, err := cf.resolve(ctx, c)
			if err != nil {
				return nil, err
			}
			job, err := c.runJob(ctx, hsm, http.MethodPost, "/backup", "backup", body, cf.noWait)
			if err != nil || cf.noWait {
				return nil, err
			}
			// As az (keyvault/custom.py, full_backup: the poller's
			// KeyVaultBackupResult): the folder's URL, which restore start
			// --backup-folder takes.
			return map[string]any{"folderUrl": job["azureStorageBlobContainerUri"]}, nil
		}))
	return b
}

func newRestoreCmd(e *env) *cobra.Command {
	r := &cobra.Command{Use: "restore", Short: "Restore a Managed HSM, or one key, from a full backup"}
	var h hsmFlags
	var cf containerFlags
	var folder, key string
	r.AddCommand(command(e, "start", "Restore from a backup folder (the whole HSM, or one key with --key-name)",
		func(cmd *cobra.Command) {
			h.register(cmd)
			cf.register(cmd)
			cmd.Flags().StringVar(&folder, "backup-folder", "", "the backup's folder name (or its URL)")
			cmd.Flags().StringVar(&key, "key-name", "", "restore only this key")
			cmd.Flags().StringVar(&key, "key", "", "the same as --key-name")
			required(cmd, "backup-folder")
		},
		func(ctx context.Context, c *client) (any, error) {
			hsm, err := h.url(c)
			if err != nil {
				return nil, err
			}
			sas, err := cf.resolve(ctx, c)
			if err != nil {
				return nil, err
			}
			folder = folder[strings.LastIndex(strings.TrimSuffix(folder, "/"), "/")+1:]
			// As az (full_restore: the poller's result is None), a
			// restore prints nothing; it fails with the job's error.
			if key != "" {
				body := map[string]any{"sasTokenParameters": sas, "folder": folder}
				_, err := c.runJob(ctx, hsm, http.MethodPut, "/keys/"+url.PathEscape(key)+"/restore", "restore", body, cf.noWait)
				return nil, err
			}
			body := map[string]any{"sasTokenParameters": sas, "folderToRestore": folder}
			_, err = c.runJob(ctx, hsm, http.MethodPut, "/restore", "restore", body, cf.noWait)
			return nil, err
		}))
	return r
}
