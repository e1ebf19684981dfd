package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

func newLoginCmd(e *env) *cobra.Command {
	var (
		p      profile
		sp     bool
		out    outputFlags
		caFile string
	)
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in to a Keyward server (as 'az login')",
		Example: `  keyward login --server https://127.0.0.1:8443/ --service-principal -u APPID -p SECRET --tenant TENANT --ca-file keyward-data/ca.pem
  keyward login --server https://127.0.0.1:8443/ --service-principal -u APPID --certificate APPID.pem --tenant TENANT --ca-file keyward-data/ca.pem
  keyward login --server https://127.0.0.1:8443/ -u alice@contoso.test --tenant TENANT   # password read from stdin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if p.Server == "" || p.Username == "" {
				return usagef("--server and --username (-u) are required")
			}
			if p.Certificate != "" {
				if !sp || p.Secret != "" {
					return usagef("--certificate is for --service-principal, instead of --password")
				}
				abs, err := filepath.Abs(p.Certificate)
				if err != nil {
					return err
				}
				p.Certificate = abs
			} else if p.Secret == "" || p.Secret == "-" {
				s, err := readSecret(e.stdin)
				if err != nil {
					return usagef("no password given: pass -p, or the secret on standard input")
				}
				p.Secret = s
			}
			p.Kind = "user"
			if sp {
				p.Kind = "servicePrincipal"
			}
			if caFile != "" {
				abs, err := filepath.Abs(caFile)
				if err != nil {
					return err
				}
				p.CAFile = abs
			}
			p.Server = strings.TrimSuffix(p.Server, "/") + "/"
			if err := discover(cmd.Context(), &p); err != nil {
				return err
			}
			c, err := newClient(&p)
			if err != nil {
				return err
			}
			if _, err := c.token(cmd.Context(), graphScope); err != nil {
				return err
			}
			var subs struct {
				Value []struct{ SubscriptionID string }
			}
			if err := c.arm(cmd.Context(), http.MethodGet, "/subscriptions", nil, &subs); err == nil && len(subs.Value) > 0 {
				p.Subscription = subs.Value[0].SubscriptionID
			}
			if err := e.saveProfile(&p); err != nil {
				return err
			}
			userType := map[bool]string{true: "servicePrincipal", false: "user"}[sp]
			return out.print(e.stdout, []map[string]any{{
				"cloudName": "Keyward", "environmentName": "Keyward", "homeTenantId": p.TenantID, "id": p.Subscription,
				"isDefault": true, "name": "Keyward", "state": "Enabled", "tenantId": p.TenantID,
				"user": map[string]string{"name": p.Username, "type": userType},
			}})
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.Server, "server", "", "the Keyward server URL, e.g. https://127.0.0.1:8443/")
	f.BoolVar(&sp, "service-principal", false, "sign in as a service principal with a client secret or certificate")
	f.StringVarP(&p.Username, "username", "u", "", "user principal name, or the app id of a service principal")
	f.StringVarP(&p.Secret, "password", "p", "", "password or client secret; omit or '-' to read it from standard input")
	f.StringVar(&p.Certificate, "certificate", "", "PEM file with a service principal's certificate and private key (see 'ad sp credential reset --create-cert')")
	f.StringVarP(&p.TenantID, "tenant", "t", "", "the tenant id (default: the server's)")
	f.StringVar(&caFile, "ca-file", "", "PEM file of the CA to trust (the server's data dir has ca.pem)")
	out.register(cmd)
	return cmd
}

func readSecret(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "" {
		if err == nil {
			err = io.EOF
		}
		return "", err
	}
	return line, nil
}

// discover reads the server's cloud metadata for the HSM DNS suffix.
func discover(ctx context.Context, p *profile) error {
	hc, err := newHTTPClient(p)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.Server+"metadata/endpoints?api-version=2022-09-01", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("reaching %s: %w", p.Server, err)
	}
	defer resp.Body.Close()
	var m struct {
		Authentication struct{ Tenant string } `json:"authentication"`
		Suffixes       map[string]string       `json:"suffixes"`
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s does not look like a Keyward server: metadata answered %s", p.Server, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&m); err != nil {
		return fmt.Errorf("reading server metadata: %w", err)
	}
	switch {
	case p.TenantID == "" && m.Authentication.Tenant == "":
		return usagef("the server does not name its tenant: pass --tenant")
	case p.TenantID == "":
		// As az: the tenant is optional and learned from the server.
		p.TenantID = m.Authentication.Tenant
	case m.Authentication.Tenant != "" && !strings.EqualFold(m.Authentication.Tenant, p.TenantID):
		return usagef("the server's tenant is %s, not %s", m.Authentication.Tenant, p.TenantID)
	}
	p.MHSMDNS = m.Suffixes["mhsmDns"]
	return nil
}

// newAccountCmd is `keyward account show`, as `az account show`: the
// subscription and identity the saved profile signs in with.
func newAccountCmd(e *env) *cobra.Command {
	account := &cobra.Command{Use: "account", Short: "Show the signed-in account and subscription"}
	var out outputFlags
	show := &cobra.Command{
		Use:   "show",
		Short: "Show the subscription and identity of the saved login",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := e.loadProfile()
			if err != nil {
				return err
			}
			userType := map[bool]string{true: "servicePrincipal", false: "user"}[p.Kind == "servicePrincipal"]
			return out.print(e.stdout, map[string]any{
				"environmentName": "Keyward", "homeTenantId": p.TenantID, "id": p.Subscription, "isDefault": true,
				"name": "Keyward", "state": "Enabled", "tenantId": p.TenantID,
				"user": map[string]string{"name": p.Username, "type": userType},
			})
		},
	}
	out.register(show)
	account.AddCommand(show)
	return account
}

// newLogoutCmd is `keyward logout`, as `az logout`: it forgets the saved
// profile (and with it the secret it holds).
func newLogoutCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Forget the saved login",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := os.Remove(filepath.Join(e.configDir, profileFile))
			if errors.Is(err, fs.ErrNotExist) {
				return usagef("not logged in")
			}
			return err
		},
	}
}
