package cli

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func newStorageCmd(e *env) *cobra.Command {
	st := &cobra.Command{Use: "storage", Short: "Register blob storage accounts that diagnostic settings can send logs to"}
	acct := &cobra.Command{Use: "account", Short: "Manage storage accounts"}
	acct.AddCommand(storageCreate(e), storageShow(e, "show"), storageShow(e, "delete"), storageShow(e, "update"), storageList(e))
	st.AddCommand(acct, newContainerCmd(e))
	return st
}

func storageCreate(e *env) *cobra.Command {
	var name, group, endpoint, key, sas string
	return command(e, "create", "Register a storage account (Azure Blob storage or Azurite) with its credential",
		func(cmd *cobra.Command) {
			f := cmd.Flags()
			f.StringVarP(&name, "name", "n", "", "account name")
			f.StringVarP(&group, "resource-group", "g", "keyward", "resource group")
			f.StringVar(&endpoint, "blob-endpoint", "", "blob service URL, e.g. http://127.0.0.1:10000/devstoreaccount1")
			f.StringVar(&key, "account-key", "", "shared key (default: $AZURE_STORAGE_KEY)")
			f.StringVar(&sas, "sas-token", "", "SAS token instead of the key (default: $AZURE_STORAGE_SAS_TOKEN)")
			cmd.Flags().StringP("location", "l", "local", "location")
			required(cmd, "name", "blob-endpoint")
		},
		func(ctx context.Context, c *client) (any, error) {
			sub, err := c.subscriptionPath()
			if err != nil {
				return nil, err
			}
			if key == "" && sas == "" {
				key, sas = os.Getenv("AZURE_STORAGE_KEY"), os.Getenv("AZURE_STORAGE_SAS_TOKEN")
			}
			body := map[string]any{"location": "local", "kind": "StorageV2", "properties": map[string]any{
				"primaryEndpoints":  map[string]string{"blob": endpoint},
				"keywardCredential": map[string]string{"accountKey": key, "sasToken": strings.TrimPrefix(sas, "?")}}}
			var out map[string]any
			err = c.arm(ctx, http.MethodPut, sub+"/resourceGroups/"+url.PathEscape(group)+"/providers/Microsoft.Storage/storageAccounts/"+url.PathEscape(name), body, &out)
			return storageAccountOut(out), err
		})
}

func (c *client) findAccount(ctx context.Context, nameOrID string) (map[string]any, error) {
	if strings.HasPrefix(nameOrID, "/subscriptions/") {
		var out map[string]any
		err := c.arm(ctx, http.MethodGet, nameOrID, nil, &out)
		return out, err
	}
	sub, err := c.subscriptionPath()
	if err != nil {
		return nil, err
	}
	accounts, err := c.armList(ctx, sub+"/providers/Microsoft.Storage/storageAccounts")
	if err != nil {
		return nil, err
	}
	for _, a := range accounts {
		if strings.EqualFold(a["name"].(string), nameOrID) {
			return a, nil
		}
	}
	return nil, &apiError{404, "ResourceNotFound", "no storage account is named " + nameOrID}
}

func storageShow(e *env, verb string) *cobra.Command {
	var name, id string
	var assign bool
	return command(e, verb, map[string]string{"show": "Show a storage account", "delete": "Forget a storage account",
		"update": "Update a storage account (--assign-identity gives it a system-assigned identity)"}[verb],
		func(cmd *cobra.Command) {
			cmd.Flags().StringVarP(&name, "name", "n", "", "account name")
			cmd.Flags().StringVar(&id, "id", "", "account resource id")
			cmd.Flags().StringP("resource-group", "g", "", "resource group (optional: names are unique)")
			if verb == "update" {
				cmd.Flags().BoolVar(&assign, "assign-identity", false, "give the account a system-assigned managed identity")
			}
		},
		func(ctx context.Context, c *client) (any, error) {
			if name == "" && id == "" {
				return nil, usagef("--name or --id is required")
			}
			a, err := c.findAccount(ctx, name+id)
			if err != nil {
				return nil, err
			}
			if verb == "show" {
				return storageAccountOut(a), nil
			}
			if verb == "delete" {
				err := c.arm(ctx, http.MethodDelete, a["id"].(string), nil, nil)
				return nil, err
			}
			body := map[string]any{}
			if assign {
				body["identity"] = map[string]string{"type": "SystemAssigned"}
			}
			var out map[string]any
			err = c.arm(ctx, http.MethodPatch, a["id"].(string), body, &out)
			return storageAccountOut(out), err
		})
}

func storageList(e *env) *cobra.Command {
	var group string
	return command(e, "list", "List storage accounts",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVarP(&group, "resource-group", "g", "", "only this resource group's")
		},
		func(ctx context.Context, c *client) (any, error) {
			sub, err := c.subscriptionPath()
			if err != nil {
				return nil, err
			}
			path := sub + "/providers/Microsoft.Storage/storageAccounts"
			if group != "" {
				path = sub + "/resourceGroups/" + url.PathEscape(group) + "/providers/Microsoft.Storage/storageAccounts"
			}
			accounts, err := c.armList(ctx, path)
			for _, a := range accounts {
				storageAccountOut(a)
			}
			return accounts, err
		})
}

func newMonitorCmd(e *env) *cobra.Command {
	mon := &cobra.Command{Use: "monitor", Short: "Manage diagnostic settings (where audit logs go)"}
	ds := &cobra.Command{Use: "diagnostic-settings", Short: "Manage an HSM's diagnostic settings"}
	ds.AddCommand(diagCreate(e), diagByName(e, "show"), diagByName(e, "delete"), diagList(e))
	mon.AddCommand(ds)
	return mon
}

const diagPath = "/providers/Microsoft.Insights/diagnosticSettings"

func diagCreate(e *env) *cobra.Command {
	var name, resource, logs, storage string
	return command(e, "create", "Send an HSM's AuditEvent logs to a storage account",
		func(cmd *cobra.Command) {
			f := cmd.Flags()
			f.StringVarP(&name, "name", "n", "", "setting name")
			f.StringVar(&resource, "resource", "", "the HSM's resource id (keyward keyvault show --query id)")
			f.StringVar(&logs, "logs", "", `JSON list, e.g. '[{"category": "AuditEvent","enabled": true}]' (or @file)`)
			f.StringVar(&storage, "storage-account", "", "the storage account's resource id or name")
			required(cmd, "name", "resource", "logs", "storage-account")
		},
		func(ctx context.Context, c *client) (any, error) {
			var l []map[string]any
			if err := readJSONArg(logs, &l); err != nil {
				return nil, err
			}
			if !strings.HasPrefix(storage, "/subscriptions/") {
				a, err := c.findAccount(ctx, storage)
				if err != nil {
					return nil, err
				}
				storage = a["id"].(string)
			}
			body := map[string]any{"properties": map[string]any{"storageAccountId": storage, "logs": l}}
			var out map[string]any
			err := c.arm(ctx, http.MethodPut, strings.TrimSuffix(resource, "/")+diagPath+"/"+url.PathEscape(name), body, &out)
			return flattenProperties(out), err
		})
}

func diagByName(e *env, verb string) *cobra.Command {
	var name, resource string
	return command(e, verb, map[string]string{"show": "Show a diagnostic setting", "delete": "Delete a diagnostic setting"}[verb],
		func(cmd *cobra.Command) {
			cmd.Flags().StringVarP(&name, "name", "n", "", "setting name")
			cmd.Flags().StringVar(&resource, "resource", "", "the HSM's resource id")
			required(cmd, "name", "resource")
		},
		func(ctx context.Context, c *client) (any, error) {
			path := strings.TrimSuffix(resource, "/") + diagPath + "/" + url.PathEscape(name)
			if verb == "delete" {
				err := c.arm(ctx, http.MethodDelete, path, nil, nil)
				return nil, err
			}
			var out map[string]any
			err := c.arm(ctx, http.MethodGet, path, nil, &out)
			return flattenProperties(out), err
		})
}

func diagList(e *env) *cobra.Command {
	var resource string
	return command(e, "list", "List an HSM's diagnostic settings",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&resource, "resource", "", "the HSM's resource id")
			required(cmd, "resource")
		},
		func(ctx context.Context, c *client) (any, error) {
			settings, err := c.armList(ctx, strings.TrimSuffix(resource, "/")+diagPath)
			for _, d := range settings {
				flattenProperties(d)
			}
			return settings, err
		})
}

// storageAccountOut is a storage account as az prints the SDK's model.
func storageAccountOut(m map[string]any) map[string]any {
	return storageAccountModel.apply(flattenProperties(m))
}

// flattenProperties lifts an ARM resource's properties to its top, as
// az prints the SDK models of storage accounts and diagnostic settings
// (primaryEndpoints, provisioningState, storageAccountId, logs at the top;
// no properties object).
func flattenProperties(m map[string]any) map[string]any {
	p, ok := m["properties"].(map[string]any)
	if !ok {
		return m
	}
	for k, v := range p {
		if _, taken := m[k]; !taken {
			m[k] = v
		}
	}
	delete(m, "properties")
	return m
}
