package cli

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/spf13/cobra"
)

const identityPath = "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"

func newIdentityCmd(e *env) *cobra.Command {
	id := &cobra.Command{Use: "identity", Short: "Manage user-assigned managed identities"}
	for _, verb := range []string{"create", "show", "delete"} {
		var name, group, location string
		id.AddCommand(command(e, verb, map[string]string{"create": "Create a managed identity", "show": "Show a managed identity",
			"delete": "Delete a managed identity"}[verb],
			func(cmd *cobra.Command) {
				cmd.Flags().StringVarP(&name, "name", "n", "", "identity name")
				cmd.Flags().StringVarP(&group, "resource-group", "g", "", "resource group")
				cmd.Flags().StringVarP(&location, "location", "l", "", "location (default: the resource group's)")
				required(cmd, "name", "resource-group")
			},
			func(ctx context.Context, c *client) (any, error) {
				sub, err := c.subscriptionPath()
				if err != nil {
					return nil, err
				}
				path := sub + "/resourceGroups/" + url.PathEscape(group) + identityPath + url.PathEscape(name)
				var out map[string]any
				switch verb {
				case "create":
					if location == "" {
						if location, err = c.groupLocation(ctx, group); err != nil {
							return nil, err
						}
					}
					if err := c.arm(ctx, http.MethodPut, path, map[string]string{"location": location}, &out); err != nil {
						return nil, err
					}
					return flattenIdentity(out), nil
				case "delete":
					err := c.arm(ctx, http.MethodDelete, path, nil, nil)
					return nil, err
				}
				if err := c.arm(ctx, http.MethodGet, path, nil, &out); err != nil {
					return nil, err
				}
				return flattenIdentity(out), nil
			}))
	}
	var lgroup string
	id.AddCommand(command(e, "list", "List managed identities",
		func(cmd *cobra.Command) { cmd.Flags().StringVarP(&lgroup, "resource-group", "g", "", "resource group") },
		func(ctx context.Context, c *client) (any, error) {
			sub, err := c.subscriptionPath()
			if err != nil {
				return nil, err
			}
			path := sub + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
			if lgroup != "" {
				path = sub + "/resourceGroups/" + url.PathEscape(lgroup) + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
			}
			ids, err := c.armList(ctx, path)
			if err != nil {
				return nil, err
			}
			out := []map[string]any{}
			for _, x := range ids {
				out = append(out, flattenIdentity(x))
			}
			return out, nil
		}))
	id.AddCommand(newFederatedCmd(e), newAgentCmd(e))
	return id
}

// flattenIdentity is an identity as az prints it (the msi SDK's model):
// principalId, clientId and tenantId at the top, no properties.
func flattenIdentity(m map[string]any) map[string]any {
	return identityModel.apply(flattenProperties(m))
}

// federatedPath is the resource path of an identity's federated
// credentials, or of one of them when name is not "".
func (c *client) federatedPath(group, ident, name string) (string, error) {
	sub, err := c.subscriptionPath()
	if err != nil {
		return "", err
	}
	path := sub + "/resourceGroups/" + url.PathEscape(group) + identityPath + url.PathEscape(ident) + "/federatedIdentityCredentials"
	if name != "" {
		path += "/" + url.PathEscape(name)
	}
	return path, nil
}

func newFederatedCmd(e *env) *cobra.Command {
	fc := &cobra.Command{Use: "federated-credential", Short: "Let tokens of an external OIDC issuer sign in as a managed identity"}
	var name, identity, group, issuer, subject string
	var audiences []string
	fc.AddCommand(command(e, "create", "Trust an issuer and subject for a managed identity",
		func(cmd *cobra.Command) {
			f := cmd.Flags()
			f.StringVarP(&name, "name", "n", "", "credential name")
			f.StringVar(&identity, "identity-name", "", "the managed identity")
			f.StringVarP(&group, "resource-group", "g", "", "resource group")
			f.StringVar(&issuer, "issuer", "", "the OIDC issuer URL (https)")
			f.StringVar(&subject, "subject", "", "the token subject, e.g. system:serviceaccount:ns:name")
			f.StringSliceVar(&audiences, "audiences", nil, "accepted audience (default api://AzureADTokenExchange)")
			required(cmd, "name", "identity-name", "resource-group", "issuer", "subject")
		},
		func(ctx context.Context, c *client) (any, error) {
			path, err := c.federatedPath(group, identity, name)
			if err != nil {
				return nil, err
			}
			body := map[string]any{"properties": map[string]any{"issuer": issuer, "subject": subject, "audiences": audiences}}
			var out map[string]any
			if err = c.arm(ctx, http.MethodPut, path, body, &out); err != nil {
				return nil, err
			}
			return flattenProperties(out), nil
		}))
	// list, show and delete, as az's (the msi SDK's model, flat).
	var lident, lgroup string
	fc.AddCommand(command(e, "list", "List a managed identity's federated credentials",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&lident, "identity-name", "", "the managed identity")
			cmd.Flags().StringVarP(&lgroup, "resource-group", "g", "", "resource group")
			required(cmd, "identity-name", "resource-group")
		},
		func(ctx context.Context, c *client) (any, error) {
			return c.federatedCredentials(ctx, lgroup, lident)
		}))
	for _, verb := range []string{"show", "delete"} {
		var n, ident, group string
		fc.AddCommand(command(e, verb, map[string]string{"show": "Show a federated credential", "delete": "Delete a federated credential"}[verb],
			func(cmd *cobra.Command) {
				cmd.Flags().StringVarP(&n, "name", "n", "", "credential name")
				cmd.Flags().StringVar(&ident, "identity-name", "", "the managed identity")
				cmd.Flags().StringVarP(&group, "resource-group", "g", "", "resource group")
				required(cmd, "name", "identity-name", "resource-group")
			},
			func(ctx context.Context, c *client) (any, error) {
				if verb == "delete" {
					path, err := c.federatedPath(group, ident, n)
					if err != nil {
						return nil, err
					}
					return nil, c.arm(ctx, http.MethodDelete, path, nil, nil)
				}
				all, err := c.federatedCredentials(ctx, group, ident)
				if err != nil {
					return nil, err
				}
				for _, f := range all {
					if strings.EqualFold(fmt.Sprint(f["name"]), n) {
						return f, nil
					}
				}
				return nil, &apiError{Status: http.StatusNotFound, Code: "NotFound", Message: fmt.Sprintf("no federated credential %s on identity %s", n, ident)}
			}))
	}
	return fc
}

// federatedCredentials lists an identity's federated credentials, flat.
func (c *client) federatedCredentials(ctx context.Context, group, ident string) ([]map[string]any, error) {
	path, err := c.federatedPath(group, ident, "")
	if err != nil {
		return nil, err
	}
	list, err := c.armList(ctx, path)
	for _, f := range list {
		flattenProperties(f)
	}
	return list, err
}

// newAgentCmd is `keyward identity agent`: a loopback sidecar that serves
// the App Service managed-identity protocol for one identity, so that
// azidentity.ManagedIdentityCredential in an unchanged application gets
// tokens without any secret in its configuration.
func newAgentCmd(e *env) *cobra.Command {
	var name, group, ids, listen string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Serve managed-identity tokens for one identity to workloads on this machine (loopback only)",
		Example: `  keyward identity agent --name app-vm --resource-group app-rg --listen 127.0.0.1:50342
  keyward identity agent --ids "$(keyward storage account show -n contosologs --query id -o tsv)"   # a system-assigned identity`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			if (name == "" || group == "") == (ids == "") {
				return usagef("give --name and --resource-group of a user-assigned identity, or --ids of a resource with a system-assigned identity")
			}
			host, _, err := net.SplitHostPort(listen)
			if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
				return usagef("--listen must be a loopback address, such as 127.0.0.1:0")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := e.client()
			if err != nil {
				return err
			}
			resource := ids
			if resource == "" {
				sub, err := c.subscriptionPath()
				if err != nil {
					return err
				}
				resource = sub + "/resourceGroups/" + url.PathEscape(group) + identityPath + url.PathEscape(name)
			}
			idc := &agentCredential{c: c, path: strings.TrimSuffix(resource, "/") + "/keywardAgentSecret"}
			clientID, err := idc.renew(ctx)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			header := make([]byte, 16)
			rand.Read(header)
			secretHeader := hex.EncodeToString(header)
			srv := &http.Server{Handler: agentHandler(idc, clientID, secretHeader), ReadHeaderTimeout: 5 * time.Second}
			fmt.Fprintf(e.stdout, "IDENTITY_ENDPOINT=http://%s/msi/token\nIDENTITY_HEADER=%s\n", ln.Addr(), secretHeader)
			if f, ok := e.stdout.(interface{ Sync() error }); ok {
				f.Sync()
			}
			go func() { <-ctx.Done(); srv.Close() }()
			if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "the user-assigned managed identity")
	cmd.Flags().StringVarP(&group, "resource-group", "g", "", "its resource group")
	cmd.Flags().StringVar(&ids, "ids", "", "resource id of a storage account whose system-assigned identity to serve")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "loopback address to serve on")
	return cmd
}

// agentCredential is the agent's credential for its identity: a
// short-lived secret fetched from the server and fetched again an hour
// before it expires, so the agent runs for as long as it is needed.
type agentCredential struct {
	c    *client
	path string

	mu      sync.Mutex
	cred    azcore.TokenCredential
	expires time.Time
}

func (a *agentCredential) renew(ctx context.Context) (clientID string, err error) {
	var s struct {
		ClientID, TenantID, Secret string
		Expires                    time.Time
	}
	if err := a.c.arm(ctx, http.MethodPost, a.path, nil, &s); err != nil {
		return "", err
	}
	cred, err := azidentity.NewClientSecretCredential(s.TenantID, s.ClientID, s.Secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            azcore.ClientOptions{Cloud: credCloud(a.c.prof), Transport: a.c.http},
		DisableInstanceDiscovery: true})
	if err != nil {
		return "", err
	}
	a.cred, a.expires = cred, s.Expires
	return s.ClientID, nil
}

func (a *agentCredential) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	a.mu.Lock()
	if time.Until(a.expires) < time.Hour {
		if _, err := a.renew(ctx); err != nil {
			a.mu.Unlock()
			return azcore.AccessToken{}, fmt.Errorf("renewing the identity's secret: %w", err)
		}
	}
	cred := a.cred
	a.mu.Unlock()
	return cred.GetToken(ctx, o)
}

// agentHandler answers GET /msi/token?resource=R&api-version=2019-08-01
// with header X-IDENTITY-HEADER, as App Service does.
func agentHandler(cred azcore.TokenCredential, clientID, header string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-IDENTITY-HEADER")), []byte(header)) != 1 || r.URL.Path != "/msi/token" {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": "missing or wrong X-IDENTITY-HEADER"})
			return
		}
		resource := strings.TrimSuffix(r.URL.Query().Get("resource"), "/.default")
		if resource == "" {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": "resource is required"})
			return
		}
		tok, err := cred.GetToken(r.Context(), policy.TokenRequestOptions{Scopes: []string{resource + "/.default"}})
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid_resource", "error_description": "the token service refused the request"})
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"access_token": tok.Token, "expires_on": strconv.FormatInt(tok.ExpiresOn.Unix(), 10),
			"resource": resource, "token_type": "Bearer", "client_id": clientID})
	})
}
