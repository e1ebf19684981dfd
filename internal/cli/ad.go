package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
)

func newADCmd(e *env) *cobra.Command {
	ad := &cobra.Command{Use: "ad", Short: "Manage the directory: users, groups, service principals"}
	signedIn := &cobra.Command{Use: "signed-in-user", Short: "The signed-in user"}
	signedIn.AddCommand(command(e, "show", "Show the signed-in user (a user's sign-in only, as az)", func(*cobra.Command) {},
		func(ctx context.Context, c *client) (any, error) {
			var out map[string]any
			err := c.graph(ctx, http.MethodGet, "/me", nil, &out)
			return out, err
		}))
	sp := &cobra.Command{Use: "sp", Short: "Manage service principals"}
	sp.AddCommand(spCreateForRBAC(e), objShow(e, "servicePrincipals", "id"), tableColumns(objList(e, "servicePrincipals"), "displayName:DisplayName", "id:Id", "appId:AppId", "createdDateTime:CreatedDateTime"),
		objDelete(e, "servicePrincipals", "id"), newSPCredentialCmd(e))
	user := &cobra.Command{Use: "user", Short: "Manage users"}
	user.AddCommand(userCreate(e), objShow(e, "users", "id"), objList(e, "users"), objDelete(e, "users", "id"), userMFACmd(e))
	group := &cobra.Command{Use: "group", Short: "Manage groups"}
	member := &cobra.Command{Use: "member", Short: "Manage group members"}
	member.AddCommand(memberCmd(e, "add"), memberCmd(e, "remove"), memberCmd(e, "check"), memberList(e))
	group.AddCommand(groupCreate(e), objShow(e, "groups", "group"), objList(e, "groups"), objDelete(e, "groups", "group"), member)
	ad.AddCommand(sp, newAppCmd(e), user, group, signedIn)
	return ad
}

// command builds a client command with -o/--query whose run returns the
// value to print.
func command(e *env, use, short string, setup func(*cobra.Command), run func(ctx context.Context, c *client) (any, error)) *cobra.Command {
	return offline(e, use, short, setup, func(ctx context.Context) (any, error) {
		c, err := e.client()
		if err != nil {
			return nil, err
		}
		return run(ctx, c)
	})
}

func required(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		cmd.MarkFlagRequired(n)
	}
}

func spCreateForRBAC(e *env) *cobra.Command {
	var name, role, keyFile string
	var scopes []string
	var createCert bool
	return spaceSeparated(command(e, "create-for-rbac", "Create a service principal with a client secret, or a certificate with --create-cert (an existing one of that name gets a new credential)",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVarP(&name, "name", "n", "", "display name of the service principal")
			cmd.Flags().StringVar(&role, "role", "", "a control-plane role to grant it at --scopes")
			cmd.Flags().StringArrayVar(&scopes, "scopes", nil, "the scopes of --role (space-separated)")
			cmd.Flags().BoolVar(&createCert, "create-cert", false, "a self-signed certificate as its credential, instead of a client secret")
			cmd.Flags().StringVar(&keyFile, "keyfile", "", "with --create-cert, where to write it with its private key (default: <appId>.pem in the keyward config directory)")
			required(cmd, "name")
		},
		func(ctx context.Context, c *client) (any, error) {
			// As az: both or neither.
			if (role == "") != (len(scopes) == 0) {
				return nil, usagef("To create role assignments, specify both --role and --scopes.")
			}
			if role != "" {
				if _, err := c.armRole(ctx, role); err != nil { // a typo fails before anything changes
					return nil, err
				}
			}
			// As az (role/custom.py, create_service_principal_for_rbac): a
			// name already taken by one application resets that
			// application's credential — same appId, a new secret, the old
			// ones removed — rather than make a second application.
			// Applications only, by exactly this name, as az
			// (create_application keeps display names that are equal):
			// never a managed identity, nor a name that differs in case.
			var found struct {
				Value []struct{ ID, DisplayName, ServicePrincipalType string }
			}
			if err := c.graph(ctx, http.MethodGet, "/servicePrincipals?$filter="+url.QueryEscape("displayName eq '"+strings.ReplaceAll(name, "'", "''")+"'"), nil, &found); err != nil {
				return nil, err
			}
			var apps []string
			for _, f := range found.Value {
				if f.ServicePrincipalType == "Application" && f.DisplayName == name {
					apps = append(apps, f.ID)
				}
			}
			if len(apps) > 1 {
				return nil, fmt.Errorf("more than one application has the display name %q: give each a name of its own", name)
			}
			var sp struct {
				ID, AppID, DisplayName string
				PasswordCredentials    []struct{ KeyID string }
			}
			if len(apps) == 1 {
				if err := c.graph(ctx, http.MethodGet, "/servicePrincipals/"+apps[0], nil, &sp); err != nil {
					return nil, err
				}
				fmt.Fprintf(e.stderr, "Found an existing application instance: (id) %s, appId %s. We will patch it.\n", sp.ID, sp.AppID)
			} else if err := c.graph(ctx, http.MethodPost, "/servicePrincipals", map[string]string{"displayName": name}, &sp); err != nil {
				return nil, err
			}
			// The grants before the secret: a grant refused (no right at
			// the scope, no such scope) leaves an existing application's
			// credentials as they were, and a new one is removed again.
			for _, sc := range scopes {
				if _, err := c.grantARM(ctx, sp.ID, "ServicePrincipal", role, strings.TrimSuffix(sc, "/")); err != nil {
					what := "its credentials are unchanged"
					if len(apps) == 0 {
						what = "the new service principal is deleted again"
						if derr := c.graph(ctx, http.MethodDelete, "/servicePrincipals/"+sp.ID, nil, nil); derr != nil {
							what = fmt.Sprintf("the new service principal %s (appId %s) could not be deleted: %v", sp.ID, sp.AppID, derr)
						}
					}
					return nil, fmt.Errorf("granting %s at %s to %s: %v; %s", role, sc, sp.AppID, err, what)
				}
			}
			if createCert {
				// As az: the certificate is the credential, written with
				// its key to a file; no secret is made.
				if keyFile == "" {
					keyFile = filepath.Join(e.configDir, sp.AppID+".pem")
				}
				der, err := createCertificate(sp.DisplayName, keyFile)
				if err != nil {
					return nil, err
				}
				if err := c.setCertificate(ctx, sp.ID, der, false); err != nil {
					return nil, err
				}
				return map[string]any{"appId": sp.AppID, "displayName": sp.DisplayName, "fileWithCertAndPrivateKey": keyFile,
					"password": nil, "tenant": c.prof.TenantID}, nil
			}
			secret, err := c.resetPassword(ctx, sp.ID, false)
			if err != nil {
				return nil, err
			}
			return map[string]string{"appId": sp.AppID, "displayName": sp.DisplayName, "password": secret, "tenant": c.prof.TenantID}, nil
		}), "scopes")
}

// resetPassword gives the service principal spID a new client secret and,
// unless keep, removes the ones it had (az's credential reset without
// --append). It returns the new secret, shown this once.
func (c *client) resetPassword(ctx context.Context, spID string, keep bool) (string, error) {
	var sp struct {
		PasswordCredentials []struct{ KeyID string }
	}
	if err := c.graph(ctx, http.MethodGet, "/servicePrincipals/"+spID, nil, &sp); err != nil {
		return "", err
	}
	var pw struct {
		SecretText string `json:"secretText"`
	}
	body := map[string]any{"passwordCredential": map[string]string{"displayName": "rbac"}}
	if err := c.graph(ctx, http.MethodPost, "/servicePrincipals/"+spID+"/addPassword", body, &pw); err != nil {
		return "", err
	}
	if keep {
		return pw.SecretText, nil
	}
	for _, old := range sp.PasswordCredentials {
		if err := c.graph(ctx, http.MethodPost, "/servicePrincipals/"+spID+"/removePassword", map[string]string{"keyId": old.KeyID}, nil); err != nil {
			return "", err
		}
	}
	return pw.SecretText, nil
}

func userCreate(e *env) *cobra.Command {
	var name, upn, password string
	return command(e, "create", "Create a user",
		func(cmd *cobra.Command) {
			f := cmd.Flags()
			f.StringVar(&name, "display-name", "", "display name")
			f.StringVar(&upn, "user-principal-name", "", "user principal name, e.g. alice@contoso.test")
			f.StringVar(&password, "password", "", "the user's password")
			required(cmd, "display-name", "user-principal-name", "password")
		},
		func(ctx context.Context, c *client) (any, error) {
			var out map[string]any
			body := map[string]any{"displayName": name, "userPrincipalName": upn, "accountEnabled": true,
				"passwordProfile": map[string]string{"password": password}}
			err := c.graph(ctx, http.MethodPost, "/users", body, &out)
			return out, err
		})
}

func groupCreate(e *env) *cobra.Command {
	var name, nick string
	var force bool
	return command(e, "create", "Create a security group (the existing one, if a group has this name and nickname)",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&name, "display-name", "", "display name")
			cmd.Flags().StringVar(&nick, "mail-nickname", "", "mail nickname")
			cmd.Flags().BoolVar(&force, "force", false, "create a new group even if one of this name and nickname exists")
			required(cmd, "display-name", "mail-nickname")
		},
		func(ctx context.Context, c *client) (any, error) {
			// As az (role/custom.py, create_group): idempotent unless
			// --force, so that a set-up script can run twice.
			if !force {
				var found struct{ Value []map[string]any }
				q := "displayName eq '" + strings.ReplaceAll(name, "'", "''") + "'"
				if err := c.graph(ctx, http.MethodGet, "/groups?$filter="+url.QueryEscape(q), nil, &found); err != nil {
					return nil, err
				}
				var same []map[string]any
				for _, g := range found.Value {
					if n, _ := g["mailNickname"].(string); strings.EqualFold(n, nick) {
						same = append(same, g)
					}
				}
				switch len(same) {
				case 1:
					return same[0], nil
				case 0:
				default:
					return nil, fmt.Errorf("there is more than one group with the same display and nick names: %q; use --force to create a new one", name)
				}
			}
			var out map[string]any
			err := c.graph(ctx, http.MethodPost, "/groups", map[string]string{"displayName": name, "mailNickname": nick}, &out)
			return out, err
		})
}

var guidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// resolve returns the object id of a collection member named by id, or
// (for groups) by display name, as az's -g NAME_OR_ID.
func (c *client) resolve(ctx context.Context, coll, ref string) (map[string]any, error) {
	var out map[string]any
	if guidPattern.MatchString(ref) || coll != "groups" {
		err := c.graph(ctx, http.MethodGet, "/"+coll+"/"+url.PathEscape(ref), nil, &out)
		return out, err
	}
	// As az (role/_validators.py, validate_group): the group of exactly
	// that display name, and only if there is none, the one whose name
	// starts with ref; either must be the only match.
	esc := strings.ReplaceAll(ref, "'", "''")
	groups, err := c.graphList(ctx, "/groups?$filter="+url.QueryEscape("displayName eq '"+esc+"'"))
	if err == nil && len(groups) == 0 {
		groups, err = c.graphList(ctx, "/groups?$filter="+url.QueryEscape("startswith(displayName,'"+esc+"')"))
	}
	if err != nil {
		return nil, err
	}
	switch len(groups) {
	case 0:
		return nil, fmt.Errorf("No group matches the name of '%s'", ref)
	case 1:
		return groups[0], nil
	}
	return nil, fmt.Errorf("More than 1 group objects has the display name of %s", ref)
}

// objShow is "show" with the flag az uses: --id for users and service
// principals, -g/--group for groups.
func objShow(e *env, coll, flag string) *cobra.Command {
	var ref string
	return command(e, "show", "Show one object",
		func(cmd *cobra.Command) { refFlag(cmd, &ref, flag) },
		func(ctx context.Context, c *client) (any, error) {
			o, err := c.resolve(ctx, coll, ref)
			if err != nil || o["@odata.context"] != nil {
				return o, err
			}
			// As az (role/custom.py, get_group): a group found by its
			// name is then read by its id, as Graph answers one object.
			var out map[string]any
			id, _ := o["id"].(string)
			err = c.graph(ctx, http.MethodGet, "/"+coll+"/"+url.PathEscape(id), nil, &out)
			return out, err
		})
}

func objDelete(e *env, coll, flag string) *cobra.Command {
	var ref string
	return command(e, "delete", "Delete one object",
		func(cmd *cobra.Command) { refFlag(cmd, &ref, flag) },
		func(ctx context.Context, c *client) (any, error) {
			o, err := c.resolve(ctx, coll, ref)
			if err != nil {
				return nil, err
			}
			err = c.graph(ctx, http.MethodDelete, "/"+coll+"/"+o["id"].(string), nil, nil)
			return nil, err
		})
}

func refFlag(cmd *cobra.Command, ref *string, flag string) {
	if flag == "group" {
		cmd.Flags().StringVarP(ref, "group", "g", "", "group's object id or display name")
	} else {
		cmd.Flags().StringVar(ref, "id", "", "object id (or app id / user principal name)")
	}
	required(cmd, flag)
}

// objList is "list" with az's filters (role/custom.py, list_users,
// list_sps, list_groups): --display-name matches a prefix, --upn (users)
// and --spn (service principals) a name, --filter is an OData filter
// passed as is.
func objList(e *env, coll string) *cobra.Command {
	var name, upn, spn, filter string
	return command(e, "list", "List objects",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&name, "display-name", "", "only objects whose display name starts with this")
			cmd.Flags().StringVar(&filter, "filter", "", "an OData filter, e.g. \"displayName eq 'x'\"")
			switch coll {
			case "users":
				cmd.Flags().StringVar(&upn, "upn", "", "only the user of this principal name")
			case "servicePrincipals":
				cmd.Flags().StringVar(&spn, "spn", "", "only the service principal of this name (its appId)")
			}
		},
		func(ctx context.Context, c *client) (any, error) {
			q := func(s string) string { return strings.ReplaceAll(s, "'", "''") }
			var filters []string
			if name != "" {
				filters = append(filters, "startswith(displayName,'"+q(name)+"')")
			}
			if upn != "" {
				filters = append(filters, "userPrincipalName eq '"+q(upn)+"'")
			}
			if spn != "" {
				filters = append(filters, "appId eq '"+q(spn)+"'")
			}
			if filter != "" {
				filters = append(filters, filter)
			}
			path := "/" + coll
			switch len(filters) {
			case 0:
			case 1:
				path += "?$filter=" + url.QueryEscape(filters[0])
			default:
				return nil, usagef("give one of --display-name, --upn, --spn and --filter (the directory takes one filter)")
			}
			return c.graphList(ctx, path)
		})
}

func memberCmd(e *env, verb string) *cobra.Command {
	var group, member string
	return command(e, verb, verb+" a member of a group",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVarP(&group, "group", "g", "", "group's object id or display name")
			cmd.Flags().StringVar(&member, "member-id", "", "the member's object id")
			required(cmd, "group", "member-id")
		},
		func(ctx context.Context, c *client) (any, error) {
			g, err := c.resolve(ctx, "groups", group)
			if err != nil {
				return nil, err
			}
			gid := g["id"].(string)
			switch verb {
			case "add":
				ref := map[string]string{"@odata.id": strings.TrimSuffix(c.prof.graphURL(), "/") + "/v1.0/directoryObjects/" + member}
				err := c.graph(ctx, http.MethodPost, "/groups/"+gid+"/members/$ref", ref, nil)
				return nil, err
			case "remove":
				err := c.graph(ctx, http.MethodDelete, "/groups/"+gid+"/members/"+url.PathEscape(member)+"/$ref", nil, nil)
				return nil, err
			}
			var res struct{ Value []string }
			if err := c.graph(ctx, http.MethodPost, "/directoryObjects/"+url.PathEscape(member)+"/checkMemberGroups",
				map[string][]string{"groupIds": {gid}}, &res); err != nil {
				return nil, err
			}
			return map[string]bool{"value": len(res.Value) > 0}, nil
		})
}

func memberList(e *env) *cobra.Command {
	var group string
	return command(e, "list", "List the direct members of a group",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVarP(&group, "group", "g", "", "group's object id or display name")
			required(cmd, "group")
		},
		func(ctx context.Context, c *client) (any, error) {
			g, err := c.resolve(ctx, "groups", group)
			if err != nil {
				return nil, err
			}
			return c.graphList(ctx, "/groups/"+g["id"].(string)+"/members")
		})
}

// userMFACmd is `keyward ad user mfa`: an administrator's view of a user's
// authenticator app.
func userMFACmd(e *env) *cobra.Command {
	mfa := &cobra.Command{Use: "mfa", Short: "Manage a user's authenticator app (TOTP)"}
	var id string
	reset := command(e, "reset", "Remove a user's authenticator and revoke the user's refresh tokens (Global Administrator)",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVar(&id, "id", "", "the user's object id or user principal name")
			required(cmd, "id")
		},
		func(ctx context.Context, c *client) (any, error) {
			base := "/users/" + url.PathEscape(id) + "/authentication/softwareOathMethods"
			ms, err := c.graphList(ctx, base)
			if err != nil {
				return nil, err
			}
			if len(ms) == 0 {
				return nil, &apiError{404, "Request_ResourceNotFound", "the user has no authenticator"}
			}
			for _, m := range ms {
				mid, _ := m["id"].(string)
				if err := c.graph(ctx, http.MethodDelete, base+"/"+url.PathEscape(mid), nil, nil); err != nil {
					return nil, err
				}
			}
			return nil, nil
		})
	mfa.AddCommand(reset)
	return mfa
}
