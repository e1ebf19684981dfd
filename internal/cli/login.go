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
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/spf13/cobra"
)

func newLoginCmd(e *env) *cobra.Command {
	var (
		p          profile
		sp         bool
		out        outputFlags
		caFile     string
		otp        string
		deviceCode bool
	)
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in to a Keyward server (as 'az login')",
		Example: `  keyward login --server https://127.0.0.1:8443/ --service-principal -u APPID -p SECRET --tenant TENANT --ca-file keyward-data/ca.pem
  keyward login --server https://127.0.0.1:8443/ --service-principal -u APPID --certificate APPID.pem --tenant TENANT --ca-file keyward-data/ca.pem
  keyward login --server https://127.0.0.1:8443/ -u alice@contoso.test --tenant TENANT   # password read from stdin
  keyward login --server https://127.0.0.1:8443/ -u alice@contoso.test -p PASSWORD --otp 123456
  keyward login --server https://127.0.0.1:8443/ --use-device-code   # enter the code shown in a browser`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if deviceCode {
				if sp || p.Username != "" || p.Secret != "" || p.Certificate != "" || otp != "" {
					return usagef("--use-device-code signs a user in through a browser: no --username, password, certificate or --otp")
				}
				if p.Server == "" {
					return usagef("--server is required")
				}
			} else if p.Server == "" || p.Username == "" {
				return usagef("--server and --username (-u) are required")
			}
			if deviceCode {
				// Nothing to read: the user signs in in a browser.
			} else if p.Certificate != "" {
				if !sp || p.Secret != "" {
					return usagef("--certificate is for --service-principal, instead of --password")
				}
				abs, err := filepath.Abs(p.Certificate)
				if err != nil {
					return err
				}
				p.Certificate = abs
			} else if p.Secret == "" || p.Secret == "-" {
				s, err := readSecret(e.stdin, e.stderr)
				if err != nil {
					return usagef("no password given: pass -p, or the secret on standard input")
				}
				p.Secret = s
			}
			p.Kind = "user"
			if sp {
				p.Kind = "servicePrincipal"
				if otp != "" {
					return usagef("--otp is for users: service principals have no second factor")
				}
			}
			if caFile != "" {
				abs, err := filepath.Abs(caFile)
				if err != nil {
					return err
				}
				p.CAFile = abs
			}
			if !strings.Contains(p.Server, "://") {
				p.Server = "https://" + p.Server // a bare host:port, as people type it
			}
			p.Server = strings.TrimSuffix(p.Server, "/") + "/"
			if err := discover(cmd.Context(), &p); err != nil {
				return err
			}
			if p.Kind == "user" {
				// The password signs in once; the profile keeps the
				// refresh token of that sign-in, never the password.
				hc, err := newHTTPClient(&p)
				if err != nil {
					return err
				}
				var t *tokenResponse
				if deviceCode {
					t, err = signInWithDeviceCode(cmd.Context(), hc, &p, e.stderr)
					if err == nil {
						p.Username = userOf(t.AccessToken)
					}
				} else {
					t, err = signInUser(cmd.Context(), hc, &p, p.Secret, otp)
				}
				if err != nil && guidPattern.MatchString(p.Username) {
					return fmt.Errorf("signing in: %w\n%s looks like an application id: sign in as a service principal with --service-principal", err, p.Username)
				}
				if err != nil {
					return fmt.Errorf("signing in: %w", err)
				}
				p.Secret, p.RefreshToken = "", t.RefreshToken
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
				"cloudName": "Keyward", "homeTenantId": p.TenantID, "id": p.Subscription, "managedByTenants": []any{},
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
	f.BoolVar(&deviceCode, "use-device-code", false, "sign a user in with a code entered in a browser, as az login --use-device-code")
	f.StringVar(&otp, "otp", "", "a code from the user's authenticator app (TOTP): the tokens then carry amr mfa")
	out.register(cmd)
	return cmd
}

func readLine(r io.Reader) (string, error) {
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
		Authentication  struct{ Tenant string } `json:"authentication"`
		Suffixes        map[string]string       `json:"suffixes"`
		ResourceManager string                  `json:"resourceManager"`
		Graph           string                  `json:"graph"`
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
	// The resource manager's and the directory's URLs: tokens go there, so
	// they must be https, and the CLI dials the server for their hosts
	// whatever DNS says (newHTTPClient), as it does for HSM names.
	p.Management, p.Graph = "", ""
	for _, u := range []struct {
		url  string
		dst  *string
		name string
	}{{m.ResourceManager, &p.Management, "resourceManager"}, {m.Graph, &p.Graph, "graph"}} {
		if u.url == "" || u.url == p.Server {
			continue
		}
		if pu, err := url.Parse(u.url); err != nil || pu.Scheme != "https" || pu.Host == "" || (pu.Path != "" && pu.Path != "/") {
			return fmt.Errorf("the server's metadata names %s %q: want https://host/", u.name, u.url)
		}
		*u.dst = u.url
	}
	return nil
}

// newAccountCmd is `keyward account show`, as `az account show`: the
// subscription and identity the saved profile signs in with.
func newAccountCmd(e *env) *cobra.Command {
	account := &cobra.Command{Use: "account", Short: "Show the signed-in account and subscription"}
	subscription := func() (map[string]any, error) {
		p, err := e.loadProfile()
		if err != nil {
			return nil, err
		}
		userType := map[bool]string{true: "servicePrincipal", false: "user"}[p.Kind == "servicePrincipal"]
		return map[string]any{
			"environmentName": "Keyward", "homeTenantId": p.TenantID, "id": p.Subscription, "isDefault": true, "managedByTenants": []any{},
			"name": "Keyward", "state": "Enabled", "tenantId": p.TenantID,
			"user": map[string]string{"name": p.Username, "type": userType},
		}, nil
	}
	show := offline(e, "show", "Show the subscription and identity of the saved login", func(*cobra.Command) {},
		func(context.Context) (any, error) { return subscription() })
	// There is one subscription: list shows it, and set accepts it alone
	// (by id or name), so that az scripts that select it run.
	list := tableColumns(offline(e, "list", "List the subscriptions: the one there is", func(*cobra.Command) {},
		func(context.Context) (any, error) {
			sub, err := subscription()
			if err != nil {
				return nil, err
			}
			sub["cloudName"] = "Keyward"
			delete(sub, "environmentName") // az's list says cloudName where show says environmentName
			return []map[string]any{sub}, nil
		}), "name:Name", "cloudName:CloudName", "id:SubscriptionId", "tenantId:TenantId", "state:State", "isDefault:IsDefault")
	var name string
	set := offline(e, "set", "Select the subscription: the one there is", func(cmd *cobra.Command) {
		cmd.Flags().StringVarP(&name, "name", "n", "", "the subscription's id or name (or --subscription, as az)")
	}, func(context.Context) (any, error) {
		sub, err := subscription()
		if err != nil {
			return nil, err
		}
		if name == "" {
			name = e.global.subscription
		}
		if name == "" {
			return nil, usagef("--subscription (or --name) is required")
		}
		if !strings.EqualFold(name, sub["id"].(string)) && !strings.EqualFold(name, sub["name"].(string)) {
			return nil, fmt.Errorf("The subscription of '%s' doesn't exist in cloud 'Keyward'.", name)
		}
		return nil, nil
	})
	account.AddCommand(show, list, set, newGetAccessTokenCmd(e), newMFACmd(e))
	return account
}

// newGetAccessTokenCmd is `keyward account get-access-token`, as az's.
func newGetAccessTokenCmd(e *env) *cobra.Command {
	var resource, scope string
	return command(e, "get-access-token", "Get an access token for the signed-in account",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&resource, "resource", "", "the resource the token is for (default: Azure Resource Manager)")
			cmd.Flags().StringVar(&scope, "scope", "", "the scope the token is for, such as https://managedhsm.azure.net/.default")
			cmd.MarkFlagsMutuallyExclusive("resource", "scope")
		},
		func(ctx context.Context, c *client) (any, error) {
			s := scope
			switch {
			case s == "" && resource == "":
				s = armScope
			case s == "":
				s = strings.TrimRight(resource, "/") + "/.default"
			}
			t, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{s}})
			if err != nil {
				return nil, fmt.Errorf("signing in: %w", err)
			}
			return map[string]any{
				"accessToken":  t.Token,
				"expiresOn":    t.ExpiresOn.Local().Format("2006-01-02 15:04:05.000000"),
				"expires_on":   t.ExpiresOn.Unix(),
				"subscription": c.prof.Subscription,
				"tenant":       c.prof.TenantID,
				"tokenType":    "Bearer",
			}, nil
		})
}

// newMFACmd is `keyward account mfa`: the signed-in user's TOTP
// authenticator.
func newMFACmd(e *env) *cobra.Command {
	mfa := &cobra.Command{Use: "mfa", Short: "Manage the signed-in user's authenticator app (TOTP)"}
	enroll := command(e, "enroll", "Start a new authenticator: prints its secret and otpauth URI once",
		func(*cobra.Command) {},
		func(ctx context.Context, c *client) (any, error) {
			var m struct{ ID, SecretKey, OtpauthURI string }
			if err := c.graph(ctx, http.MethodPost, "/me/authentication/softwareOathMethods", map[string]any{}, &m); err != nil {
				return nil, err
			}
			return map[string]string{"id": m.ID, "secret": m.SecretKey, "otpauthUri": m.OtpauthURI}, nil
		})
	var code string
	confirm := command(e, "confirm", "Put the new authenticator in force with a code from it",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&code, "code", "", "a code the authenticator app shows")
			required(cmd, "code")
		},
		func(ctx context.Context, c *client) (any, error) {
			ms, err := c.graphList(ctx, "/me/authentication/softwareOathMethods")
			if err != nil {
				return nil, err
			}
			if len(ms) == 0 {
				return nil, usagef("no authenticator to confirm: run 'keyward account mfa enroll' first")
			}
			id, _ := ms[0]["id"].(string)
			if err := c.graph(ctx, http.MethodPost, "/me/authentication/softwareOathMethods/"+url.PathEscape(id)+"/confirm",
				map[string]string{"code": code}, nil); err != nil {
				return nil, err
			}
			return map[string]any{"id": id, "confirmed": true}, nil
		})
	mfa.AddCommand(enroll, confirm)
	return mfa
}

// newLogoutCmd is `keyward logout`, as `az logout`: it forgets the saved
// profile (and with it the secret it holds). A user's refresh token is
// revoked at the server first (RFC 7009), which az does not do.
func newLogoutCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Forget the saved login and revoke its refresh token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if p, err := e.loadProfile(); err == nil && p.RefreshToken != "" {
				if err := revokeRefreshToken(cmd.Context(), p); err != nil {
					fmt.Fprintf(e.stderr, "WARNING: the refresh token could not be revoked at the server (%v); it ends by itself within 24 hours\n", err)
				}
			}
			err := os.Remove(filepath.Join(e.configDir, profileFile))
			if errors.Is(err, fs.ErrNotExist) {
				return usagef("not logged in")
			}
			return err
		},
	}
}

// revokeRefreshToken revokes the profile's refresh token at the server.
func revokeRefreshToken(ctx context.Context, p *profile) error {
	hc, err := newHTTPClient(p)
	if err != nil {
		return err
	}
	form := url.Values{"token": {p.RefreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {cliClientID}}
	u := strings.TrimSuffix(p.Server, "/") + "/" + p.TenantID + "/oauth2/v2.0/revoke"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the server answered %s", resp.Status)
	}
	return nil
}
