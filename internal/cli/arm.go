package cli

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/api/wire"
)

const armScope = armAudience + "/.default"

// arm sends an Azure Resource Manager request to the server, for the
// resources that have no Go SDK client here.
func (c *client) arm(ctx context.Context, method, path string, body, out any) error {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return c.call(ctx, armScope, method, strings.TrimSuffix(c.prof.managementURL(), "/")+path+sep+"api-version=2023-07-01", body, out)
}

func (c *client) subscriptionPath() (string, error) {
	if c.prof.Subscription == "" {
		return "", usagef("the profile has no subscription: run 'keyward login' again")
	}
	return "/subscriptions/" + c.prof.Subscription, nil
}

func newGroupCmd(e *env) *cobra.Command {
	g := &cobra.Command{Use: "group", Short: "Manage resource groups"}
	var name, location string
	g.AddCommand(command(e, "create", "Create a resource group",
		func(cmd *cobra.Command) {
			nameFlags(cmd, &name)
			cmd.Flags().StringVarP(&location, "location", "l", "local", "location")
		},
		func(ctx context.Context, c *client) (any, error) {
			sub, err := c.subscriptionPath()
			if err != nil {
				return nil, err
			}
			var out map[string]any
			if err = c.arm(ctx, http.MethodPut, sub+"/resourcegroups/"+url.PathEscape(name), map[string]string{"location": location}, &out); err != nil {
				return nil, err
			}
			return groupOut(out), nil
		}))
	var en string
	g.AddCommand(command(e, "exists", "Tell whether a resource group exists (true or false)",
		func(cmd *cobra.Command) { nameFlags(cmd, &en) },
		func(ctx context.Context, c *client) (any, error) {
			sub, err := c.subscriptionPath()
			if err != nil {
				return nil, err
			}
			err = c.arm(ctx, http.MethodGet, sub+"/resourcegroups/"+url.PathEscape(en), nil, nil)
			var ae *apiError
			if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
				return false, nil
			}
			return err == nil, err
		}))
	for _, verb := range []string{"show", "delete"} {
		var n string
		g.AddCommand(command(e, verb, map[string]string{"show": "Show a resource group", "delete": "Delete an empty resource group"}[verb],
			func(cmd *cobra.Command) {
				nameFlags(cmd, &n)
			},
			func(ctx context.Context, c *client) (any, error) {
				sub, err := c.subscriptionPath()
				if err != nil {
					return nil, err
				}
				path := sub + "/resourcegroups/" + url.PathEscape(n)
				if verb == "delete" {
					err := c.arm(ctx, http.MethodDelete, path, nil, nil)
					return nil, err
				}
				var out map[string]any
				if err = c.arm(ctx, http.MethodGet, path, nil, &out); err != nil {
					return nil, err
				}
				return groupOut(out), nil
			}))
	}
	g.AddCommand(tableColumns(command(e, "list", "List resource groups", func(*cobra.Command) {},
		func(ctx context.Context, c *client) (any, error) {
			sub, err := c.subscriptionPath()
			if err != nil {
				return nil, err
			}
			groups, err := c.armList(ctx, sub+"/resourcegroups")
			for _, g := range groups {
				groupOut(g)
			}
			return groups, err
		}), "name:Name", "location:Location", "properties.provisioningState:Status"))
	return g
}

// groupLocation is a resource group's location, the default of the
// resources made in it (az's get_default_location_from_resource_group).
func (c *client) groupLocation(ctx context.Context, group string) (string, error) {
	sub, err := c.subscriptionPath()
	if err != nil {
		return "", err
	}
	var g struct{ Location string }
	if err := c.arm(ctx, http.MethodGet, sub+"/resourcegroups/"+url.PathEscape(group), nil, &g); err != nil {
		return "", err
	}
	return g.Location, nil
}

// groupOut is a resource group as az prints the SDK's ResourceGroup:
// managedBy null when no one manages it.
func groupOut(m map[string]any) map[string]any {
	if _, ok := m["managedBy"]; !ok {
		m["managedBy"] = nil
	}
	return m
}

// nameFlags are a resource group's -n/--name and, as az takes either,
// -g/--resource-group; one of them is required.
func nameFlags(cmd *cobra.Command, name *string) {
	cmd.Flags().StringVarP(name, "name", "n", "", "resource group name")
	cmd.Flags().StringVarP(name, "resource-group", "g", "", "resource group name (the same as --name)")
	cmd.MarkFlagsOneRequired("name", "resource-group")
	cmd.MarkFlagsMutuallyExclusive("name", "resource-group")
}

// newARMRoleCmd is `keyward role`: control-plane (Azure RBAC) roles.
func newARMRoleCmd(e *env) *cobra.Command {
	role := &cobra.Command{Use: "role", Short: "Manage control-plane (Azure RBAC) role assignments"}
	asg := &cobra.Command{Use: "assignment", Short: "Manage control-plane role assignments"}
	var who assigneeFlags
	var roleName, scope, group string
	asg.AddCommand(command(e, "create", "Grant a control-plane role at a scope (default: the subscription)",
		func(cmd *cobra.Command) {
			who.register(cmd)
			cmd.Flags().StringVar(&roleName, "role", "", `role name or id, e.g. "Managed HSM Contributor"`)
			cmd.Flags().StringVar(&scope, "scope", "", "scope: /subscriptions/{s}[/resourceGroups/{rg}[/providers/...]]")
			cmd.Flags().StringVarP(&group, "resource-group", "g", "", "the scope is this resource group")
			required(cmd, "role")
		},
		func(ctx context.Context, c *client) (any, error) {
			principal, err := who.resolve(ctx, c)
			if err != nil {
				return nil, err
			}
			if principal == "" {
				return nil, usagef("--assignee or --assignee-object-id is required")
			}
			sc, err := c.scope(scope, group)
			if err != nil {
				return nil, err
			}
			return c.grantARM(ctx, principal, who.principalType, roleName, sc)
		}))
	var lwho assigneeFlags
	var lscope, lgroup, lrole string
	var all, inherited bool
	asg.AddCommand(tableColumns(command(e, "list", "List control-plane role assignments at a scope (default: the subscription)",
		func(cmd *cobra.Command) {
			lwho.register(cmd)
			cmd.Flags().StringVar(&lscope, "scope", "", "scope (default: the subscription)")
			cmd.Flags().StringVarP(&lgroup, "resource-group", "g", "", "the scope is this resource group")
			cmd.Flags().StringVar(&lrole, "role", "", "only this role's assignments (name or id)")
			cmd.Flags().BoolVar(&all, "all", false, "assignments at every scope")
			cmd.Flags().BoolVar(&inherited, "include-inherited", false, "also those at the scopes above, which apply here too")
		},
		func(ctx context.Context, c *client) (any, error) {
			// As az (role/custom.py, list_role_assignments and
			// _search_role_assignments): the assignments at exactly the
			// scope, unless --include-inherited (and those above it) or
			// --all (every scope).
			if all && (lscope != "" || lgroup != "") {
				return nil, usagef("--all takes no --scope or --resource-group")
			}
			sub, err := c.subscriptionPath()
			if err != nil {
				return nil, err
			}
			sc := lscope
			switch {
			case lgroup != "" && lscope != "":
				return nil, usagef("give --scope or --resource-group, not both")
			case lgroup != "":
				sc = sub + "/resourceGroups/" + lgroup
			case sc == "":
				sc = sub
			}
			sc = strings.TrimSuffix(sc, "/")
			principal, err := lwho.resolve(ctx, c)
			if err != nil {
				return nil, err
			}
			def := ""
			if lrole != "" {
				if def, err = c.armRole(ctx, lrole); err != nil {
					return nil, err
				}
			}
			// Asked at the scope (a caller may read only there), or at the
			// subscription for --all.
			base := sc
			if all {
				base = sub
			}
			path := base + "/providers/Microsoft.Authorization/roleAssignments"
			if principal != "" {
				path += "?$filter=" + url.QueryEscape("principalId eq '"+principal+"'")
			}
			var list struct {
				Value []wire.ARMRoleAssignment `json:"value"`
			}
			if err := c.arm(ctx, http.MethodGet, path, nil, &list); err != nil {
				return nil, err
			}
			keep := []wire.ARMRoleAssignment{}
			for _, a := range list.Value {
				as := strings.TrimSuffix(a.Properties.Scope, "/")
				at := strings.EqualFold(as, sc)
				above := inherited && len(as) < len(sc) && strings.EqualFold(sc[:len(as)], as) && sc[len(as)] == '/'
				if (all || at || above) && (def == "" || strings.EqualFold(a.Properties.RoleDefinitionID, def)) {
					keep = append(keep, a)
				}
			}
			return c.flattenARM(ctx, keep)
		}), "principalName:Principal", "roleDefinitionName:Role", "scope:Scope"))
	var ids []string
	var dwho assigneeFlags
	var droleName, dscope, dgroup string
	asg.AddCommand(spaceSeparated(command(e, "delete", "Delete control-plane role assignments: by id, or an assignee's (of a role) at a scope",
		func(cmd *cobra.Command) {
			cmd.Flags().StringArrayVar(&ids, "ids", nil, "assignment ids")
			dwho.register(cmd)
			cmd.Flags().StringVar(&droleName, "role", "", "only this role's assignments (name or id)")
			cmd.Flags().StringVar(&dscope, "scope", "", "scope (default: the subscription)")
			cmd.Flags().StringVarP(&dgroup, "resource-group", "g", "", "the scope is this resource group")
		},
		func(ctx context.Context, c *client) (any, error) {
			if len(ids) == 0 {
				// As az: the assignee's assignments (of --role) at exactly the scope.
				principal, err := dwho.resolve(ctx, c)
				if err != nil {
					return nil, err
				}
				if principal == "" && droleName == "" {
					return nil, usagef("give --ids, or --assignee (and --role)")
				}
				sc, err := c.scope(dscope, dgroup)
				if err != nil {
					return nil, err
				}
				def := ""
				if droleName != "" {
					if def, err = c.armRole(ctx, droleName); err != nil {
						return nil, err
					}
				}
				path := sc + "/providers/Microsoft.Authorization/roleAssignments?$filter=" + url.QueryEscape("atScope()")
				var list struct {
					Value []wire.ARMRoleAssignment `json:"value"`
				}
				if err := c.arm(ctx, http.MethodGet, path, nil, &list); err != nil {
					return nil, err
				}
				for _, a := range list.Value {
					p := a.Properties
					if (principal == "" || strings.EqualFold(p.PrincipalID, principal)) && (def == "" || strings.EqualFold(p.RoleDefinitionID, def)) &&
						strings.EqualFold(p.Scope, sc) {
						ids = append(ids, a.ID)
					}
				}
				if len(ids) == 0 {
					return nil, usagef("no role assignment matches at %s", sc)
				}
			}
			for _, id := range ids {
				if err := c.arm(ctx, http.MethodDelete, id, nil, nil); err != nil {
					return nil, err
				}
			}
			return nil, nil
		}), "ids"))
	role.AddCommand(asg, armDefinitionCmd(e))
	return role
}

// armDefinitionCmd is `role definition list`: the control-plane roles, as
// az prints azure-mgmt-authorization's RoleDefinition (flattened: roleName,
// roleType, permissions, assignableScopes at the top) and its table
// (role/commands.py, transform_definition_list: Name, Type, Description).
func armDefinitionCmd(e *env) *cobra.Command {
	def := &cobra.Command{Use: "definition", Short: "Control-plane role definitions"}
	var name string
	var custom bool
	def.AddCommand(tableColumns(command(e, "list", "List control-plane role definitions",
		func(cmd *cobra.Command) {
			cmd.Flags().StringVarP(&name, "name", "n", "", "only the role of this name or id")
			cmd.Flags().BoolVar(&custom, "custom-role-only", false, "only custom roles")
			cmd.Flags().String("scope", "", "accepted as az's: the roles are the subscription's")
		},
		func(ctx context.Context, c *client) (any, error) {
			defs, err := c.armRoleDefinitions(ctx)
			if err != nil {
				return nil, err
			}
			out := []map[string]any{}
			for _, d := range defs {
				p := d.Properties
				if name != "" && !strings.EqualFold(p.RoleName, name) && !strings.EqualFold(d.Name, name) ||
					custom && p.Type != "CustomRole" {
					continue
				}
				out = append(out, armDefinitionModel.apply(map[string]any{"id": d.ID, "name": d.Name, "type": d.Type,
					"roleName": p.RoleName, "description": p.Description, "roleType": p.Type, "permissions": p.Permissions,
					"assignableScopes": p.AssignableScopes}))
			}
			return out, nil
		}), "roleName:Name", "type:Type", "description:Description"))
	return def
}

// grantARM assigns the control-plane role roleName to principal at scope
// sc, as az's role assignment create: the principal's type read from the
// directory when not given (role/custom.py, _create_role_assignment), and
// granting what is already granted answers the existing assignment.
func (c *client) grantARM(ctx context.Context, principal, ptype, roleName, sc string) (map[string]any, error) {
	def, err := c.armRole(ctx, roleName)
	if err != nil {
		return nil, err
	}
	if ptype == "" {
		if _, types, err := c.principalNames(ctx, []string{principal}); err == nil {
			ptype = types[principal]
		}
	}
	var body wire.ARMRoleAssignmentCreate
	body.Properties.RoleDefinitionID, body.Properties.PrincipalID, body.Properties.PrincipalType = def, principal, ptype
	var out wire.ARMRoleAssignment
	err = c.arm(ctx, http.MethodPut, sc+"/providers/Microsoft.Authorization/roleAssignments/"+uuid.NewString(), body, &out)
	var ae *apiError
	if errors.As(err, &ae) && ae.Code == "RoleAssignmentExists" {
		filter := "?$filter=" + url.QueryEscape("principalId eq '"+principal+"'")
		var existing struct {
			Value []wire.ARMRoleAssignment `json:"value"`
		}
		if c.arm(ctx, http.MethodGet, sc+"/providers/Microsoft.Authorization/roleAssignments"+filter, nil, &existing) == nil {
			for _, a := range existing.Value {
				if strings.EqualFold(a.Properties.RoleDefinitionID, def) && strings.EqualFold(a.Properties.Scope, sc) {
					return flatAssignment(a)
				}
			}
		}
	}
	if err != nil {
		return nil, err
	}
	return flatAssignment(out)
}

// flatAssignment is a control-plane assignment as az's create prints the
// SDK's RoleAssignment: its properties at the top.
func flatAssignment(a wire.ARMRoleAssignment) (map[string]any, error) {
	g, err := toGeneric(a)
	if err != nil {
		return nil, err
	}
	m, _ := g.(map[string]any)
	return armAssignmentModel.apply(flattenProperties(m)), nil
}

// flattenARM renders control-plane assignments as az does: properties at
// the top, with the role's and the principal's names.
func (c *client) flattenARM(ctx context.Context, arms []wire.ARMRoleAssignment) ([]map[string]any, error) {
	as := make([]wire.RoleAssignment, len(arms))
	for i, a := range arms {
		p := a.Properties
		as[i] = wire.RoleAssignment{ID: a.ID, Name: a.Name, Type: a.Type,
			Properties: wire.RoleAssignmentProperties{Scope: p.Scope, RoleDefinitionID: p.RoleDefinitionID, PrincipalID: p.PrincipalID}}
	}
	defs, err := c.armRoleDefinitions(ctx)
	if err != nil {
		return nil, err
	}
	roleNames := map[string]string{}
	for _, d := range defs {
		// Assignments name definitions by their subscription-level id.
		roleNames[strings.ToLower(d.ID)] = d.Properties.RoleName
	}
	out, err := c.flattenAssignments(ctx, as, roleNames, "roleDefinitionName")
	for i, a := range out {
		if on := arms[i].Properties.CreatedOn; on != "" {
			a["createdOn"] = on
		}
		armAssignmentModel.apply(a)
	}
	return out, err
}

// scope is a control-plane scope as az's --scope and -g give it
// (role/custom.py, _build_role_scope): --scope as written, -g its resource
// group, neither the subscription.
func (c *client) scope(s, group string) (string, error) {
	sub, err := c.subscriptionPath()
	if err != nil {
		return "", err
	}
	switch {
	case group != "" && s != "":
		return "", usagef("give --scope or --resource-group, not both")
	case group != "":
		return sub + "/resourceGroups/" + group, nil
	case s == "":
		return sub, nil
	}
	return strings.TrimSuffix(s, "/"), nil
}

// armRoleDefinitions lists the control-plane role definitions.
func (c *client) armRoleDefinitions(ctx context.Context) ([]wire.RoleDefinition, error) {
	sub, err := c.subscriptionPath()
	if err != nil {
		return nil, err
	}
	var list struct{ Value []wire.RoleDefinition }
	if err := c.arm(ctx, http.MethodGet, sub+"/providers/Microsoft.Authorization/roleDefinitions", nil, &list); err != nil {
		return nil, err
	}
	return list.Value, nil
}

// armRole resolves a control-plane role name (any case) or id.
func (c *client) armRole(ctx context.Context, role string) (string, error) {
	defs, err := c.armRoleDefinitions(ctx)
	if err != nil {
		return "", err
	}
	for _, d := range defs {
		if strings.EqualFold(d.Properties.RoleName, role) || strings.EqualFold(d.Name, role) || strings.EqualFold(d.ID, role) {
			return d.ID, nil
		}
	}
	return "", usagef("role '%s' doesn't exist", role)
}
